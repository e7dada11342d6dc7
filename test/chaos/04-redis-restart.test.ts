/**
 * RELIABILITY.md scenario 4: Redis killed and restarted (empty: its data is lost, as after FLUSHALL)
 * on the same port, after more than the workers' block timeout (BullMQ's drainDelay, 5 s). The gate,
 * observer and API processes are not restarted: they reconnect, the observer notices the loss and its
 * sync restores the governance state from Postgres (a quota set over the REST API before the crash
 * applies again, the downstream counters come back), `/readyz` answers 503 "restoring" until that is
 * done, and jobs produced after the restart are promoted and executed under the restored rules.
 *
 * Jobs that were in Redis at the kill are gone with it; the invariant is checked on those produced
 * before the kill (before it) and on those produced after the restart.
 *
 * The observer is held with SIGSTOP across the outage (and let go with SIGCONT once `/readyz` has
 * said "restoring"): otherwise whether the API reconnects before the observer restores is a race of
 * two reconnect backoffs, and the restoring state could be missed. It is still the same process.
 */
import { chaosConfigInput, expectConserved, startCluster, type ExecTracker } from './support/cluster';
import { alive, apiClient, logsMatching, pgQuery, sleep } from './support/ops';
import { waitFor } from '../support/services';

jest.setTimeout(60_000);

const HELD = 'tenant-held';
const BLOCK_TIMEOUT_MS = 5000; // BullMQ Worker drainDelay default (seconds 5): the gate's blocking wait

it('Redis lost and restarted: roles resume without a restart, governance restored from Postgres, /readyz says restoring', async () => {
  const started = Date.now();
  const c = await startCluster('redis-restart', chaosConfigInput());
  const api = await apiClient();
  let exec: ExecTracker | undefined;
  try {
    const gate = c.spawn('gate');
    const observer = c.spawn('observer');
    const apiProc = c.spawn('api', api.env);
    await waitFor(async () => (await api.get('/readyz')).status === 200, '/readyz 200 at start', 20_000, 100);

    // A quota over the REST API: the held tenant is paused (its jobs wait, none is admitted).
    const put = await api.send('PUT', `/api/v1/quotas/${HELD}`, { paused: true }, 'scenario 4: hold this tenant');
    expect(put.status).toBe(201);

    exec = c.startExec();
    const good = (n: number) => c.goodJobs(n);
    const held = (n: number) => Array.from({ length: n }, (_, i) => ({ name: 'scan.image', data: { tenantId: HELD, seq: i }, opts: { removeOnComplete: true } }));
    const before = [...(await c.produce(good(600))), ...(await c.produce(held(25)))];
    await c.settleIngress(before);
    await waitFor(() => exec!.runs.size >= 600, '600 jobs executed before the kill', 20_000, 50);
    expectConserved('before the Redis kill', await c.conservation(before, exec), { exec: 600, waiting: 25, ingress: 0, 'dead-letter': 0 });

    // The observer snapshots the counters to Postgres (every 500 ms): wait until they hold the 600.
    const admittedOf = (rows: Array<{ downstream: string; counters: Record<string, number> }>) =>
      rows.filter((r) => r.downstream !== '~').reduce((n, r) => n + Number(r.counters.admitted ?? 0), 0);
    const savedRows = await waitFor(async () => {
      const rows = await pgQuery<{ downstream: string; counters: Record<string, number> }>(c.dbUrl, 'SELECT downstream, counters FROM downstream_counters');
      return admittedOf(rows) >= 600 ? rows : undefined;
    }, 'counters snapshotted to Postgres', 10_000, 100);
    const savedAdmitted = admittedOf(savedRows);
    await exec.close();

    // The kill. The observer is held still so the restore window stays open for /readyz to be seen.
    observer.proc.kill('SIGSTOP');
    await c.redis.stop();
    const killedAt = Date.now();
    await sleep(BLOCK_TIMEOUT_MS + 1000);
    const downDuring = await api.get('/readyz', 5000);
    expect(downDuring.status).toBe(503);
    expect(downDuring.body.checks.redis).toMatchObject({ ok: false, detail: expect.stringContaining('REDIS_URL') });
    await c.redis.restart();
    const restartedAt = Date.now();
    expect(restartedAt - killedAt).toBeGreaterThan(BLOCK_TIMEOUT_MS);
    // Empty: everything Redis had is lost (here: the held jobs' records and the mirrored quota).
    expect(await c.conn.exists(c.keys.record(before[before.length - 1]!), c.keys.mirrorVersion())).toBe(0);

    // Redis answers again, the definitions and counters are not back: "restoring", not ready.
    const restoring = await waitFor(async () => {
      const r = await api.get('/readyz', 5000);
      return r.status === 503 && r.body.checks.redis.ok && /restoring/.test(String(r.body.checks.governance?.detail)) ? r : undefined;
    }, '/readyz to report restoring', 15_000, 50);
    process.stdout.write(`[chaos] readyz while restoring: ${JSON.stringify(restoring.body)}\n`);
    expect(restoring.body.checks.governance.detail).toMatch(/quota and throttle definitions/);
    expect(restoring.body.checks.governance.detail).toMatch(/counters/);

    observer.proc.kill('SIGCONT');
    await waitFor(async () => (await api.get('/readyz', 5000)).status === 200, '/readyz 200 once restored', 15_000, 50);
    const restoredAt = Date.now();

    // The counters came back from Postgres (added to whatever was counted since the restart).
    const stats = await Promise.all(['scanner', 'attestor', 'policy'].map((d) => c.conn.hget(c.keys.stats(d), 'admitted')));
    expect(stats.reduce((n, v) => n + Number(v ?? 0), 0)).toBeGreaterThanOrEqual(savedAdmitted);
    // The quota set before the crash is readable and mirrored again.
    const q = await api.get(`/api/v1/quotas/${HELD}`);
    expect(q.body.quotas).toEqual([expect.objectContaining({ paused: true })]);

    // Jobs produced after the restart: promoted and executed by the same gate, the held tenant's wait.
    exec = c.startExec();
    const after = [...(await c.produce(good(600))), ...(await c.produce(held(25)))];
    await c.settleIngress(after, 20_000);
    await waitFor(() => exec!.runs.size >= 600, '600 jobs executed after the restart', 20_000, 50);
    await sleep(500); // a late duplicate would show up
    const result = await c.conservation(after, exec);
    expectConserved('after the Redis restart', result, { exec: 600, waiting: 25, ingress: 0, 'dead-letter': 0 });
    const usage = await api.get(`/api/v1/quotas/${HELD}/usage`);
    expect(usage.status).toBe(200);
    expect(usage.body.waiting.total).toBe(25);

    // Nobody was restarted or crashed.
    for (const [role, child] of [['gate', gate], ['observer', observer], ['api', apiProc]] as const) {
      expect({ role, alive: alive(child) }).toEqual({ role, alive: true });
    }
    process.stdout.write(
      `[chaos] redis down ${restartedAt - killedAt} ms, restored ${restoredAt - restartedAt} ms after restart, scenario ${Date.now() - started} ms\n`,
    );
  } finally {
    await c.close();
  }
});

/**
 * Between Redis coming back empty and the definitions being restored, the gate must not admit under
 * no quota at all: its intake holds while Redis's mirror is missing or behind the version Postgres is
 * at, and the gate restores the mirror itself (the observer, frozen here, would only do it a sync
 * round later).
 *
 * The gate is frozen (SIGSTOP) too while Redis is replaced and the jobs are produced, so that nobody
 * can restore the mirror before the gate's intake meets the jobs: the window is held open, not raced.
 * Its start-up mirror check (200 ms grace, then a Postgres read) has long finished by then; the
 * gate's "intake waits" warning proves its intake met the missing mirror rather than a restored one.
 */
it('jobs produced while governance is being restored are not admitted under missing quotas', async () => {
  const c = await startCluster('redis-restore-window', chaosConfigInput());
  const api = await apiClient();
  try {
    const gate = c.spawn('gate');
    const observer = c.spawn('observer');
    c.spawn('api', api.env);
    await waitFor(async () => (await api.get('/readyz')).status === 200, '/readyz 200 at start', 20_000, 100);
    expect((await api.send('PUT', `/api/v1/quotas/${HELD}`, { paused: true })).status).toBe(201);
    await waitFor(async () => Number(await c.conn.get(c.keys.mirrorVersion())) === 1, 'the quota mirrored to Redis', 5000, 50);
    await sleep(1000); // the gate's start-up mirror check is done
    observer.proc.kill('SIGSTOP'); // the restore window held open
    gate.proc.kill('SIGSTOP');
    await c.redis.stop();
    await c.redis.restart();
    await waitFor(async () => /restoring/.test(String((await api.get('/readyz', 5000)).body?.checks?.governance?.detail)), '/readyz restoring', 15_000, 50);
    expect(await c.conn.exists(c.keys.mirrorVersion())).toBe(0);
    const exec = c.startExec();
    const ids = await c.produce(Array.from({ length: 5 }, (_, i) => ({ name: 'scan.image', data: { tenantId: HELD, seq: i } })));
    gate.proc.kill('SIGCONT');
    await waitFor(() => logsMatching(gate, /intake waits while they are restored/).length > 0, "the gate's intake to meet the missing mirror", 15_000, 50);
    await sleep(2000);
    const ran = ids.filter((id) => exec.runs.has(`tg-${id}`)).length;
    process.stdout.write(`[chaos] paused tenant's jobs produced during the restore window that ran: ${ran} of ${ids.length}\n`);
    expect(ran).toBe(0);
    // Held by the restored pause, in the waiting place: none lost while intake waited.
    await waitFor(async () => (await c.conservation(ids, exec)).byPlace.waiting === ids.length, 'the paused jobs to wait', 10_000, 100);
    expectConserved('restore window', await c.conservation(ids, exec), { waiting: ids.length });
    expect(alive(gate)).toBe(true);
  } finally {
    await c.close();
  }
});
