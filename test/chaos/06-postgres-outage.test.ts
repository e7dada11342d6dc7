/**
 * RELIABILITY.md scenario 6: Postgres outage under load. Its backends are terminated, then it is
 * stopped for 10 s. The gate keeps admitting from Redis (jobs produced during the outage execute);
 * what happens meanwhile and belongs in Postgres (a breaker transition, the counters) is kept in
 * Redis and written once Postgres is back; operators' changes answer 503 with a message naming
 * Postgres and change nothing (no half-applied change without its audit entry); no process crashes.
 * (Alerts are not implemented in tollgate yet: nothing to check for them.)
 */
import { chaosConfigInput, expectConserved, startCluster } from './support/cluster';
import { alive, apiClient, pgQuery, sleep } from './support/ops';
import { waitFor } from '../support/services';

jest.setTimeout(60_000);

const OUTAGE_MS = 10_000;
const BOOM = 'tenant-boom';

it('Postgres terminated then stopped 10 s: admission goes on, changes answer 503, transitions and counters written when back', async () => {
  const started = Date.now();
  // The attestor's breaker stays open for the whole scenario (the default 10 s ± jitter would let it
  // reach half-open right around the end of the 10 s outage, and the snapshot checked below with it).
  const base = chaosConfigInput();
  const c = await startCluster(
    'pg-outage',
    chaosConfigInput({ downstreams: base.downstreams.map((d) => (d.name === 'attestor' ? { ...d, breaker: { openMs: 60_000 } } : d)) }),
  );
  const api = await apiClient();
  try {
    const all = c.spawn('all', api.env);
    await waitFor(async () => (await api.get('/readyz')).status === 200, '/readyz 200 at start', 20_000, 100);
    // The attestor fails every job of one tenant (a downstream error: its breaker counts it).
    const exec = c.startExec({
      work: async (job, d) => {
        if (d === 'attestor' && (job.data as { tenantId?: string }).tenantId === BOOM) throw new Error('attestor answered 503');
      },
    });

    // Backends terminated under load: the pool reconnects, nothing stops.
    const a = await c.produce(c.goodJobs(900));
    await sleep(300);
    expect(await c.pg.terminateBackends()).toBeGreaterThan(0);
    await c.settleIngress(a);
    await waitFor(() => exec.runs.size >= a.length || undefined, 'the first load executed', 20_000, 50);

    // Postgres stopped.
    await c.pg.stop();
    const stoppedAt = Date.now();
    const readyz = await api.get('/readyz');
    expect(readyz.status).toBe(503);
    expect(readyz.body.checks.postgres).toMatchObject({ ok: false, detail: expect.stringContaining('DATABASE_URL') });
    expect(readyz.body.checks.redis).toEqual({ ok: true });

    // The gate admits from Redis: jobs produced during the outage execute during the outage.
    const b = await c.produce(c.goodJobs(900));
    await c.settleIngress(b);
    await waitFor(() => exec.runs.size >= a.length + b.length || undefined, 'the outage load executed', 8_000, 50);
    expect(Date.now() - stoppedAt).toBeLessThan(OUTAGE_MS);

    // A breaker transition during the outage: the attestor fails 8 jobs in a row and its breaker opens.
    const boom = await c.produce(Array.from({ length: 8 }, (_, i) => ({ name: 'attest.sbom', data: { tenantId: BOOM, seq: i }, opts: { attempts: 1 } })));
    await waitFor(async () => (await api.get('/api/v1/breakers/attestor')).body?.state === 'open' || undefined, 'the attestor breaker open', 8_000, 50);

    // Operators' changes answer 503 naming Postgres, and change nothing.
    const force = await api.send('POST', '/api/v1/breakers/policy/open', undefined, 'scenario 6: maintenance');
    const quota = await api.send('PUT', '/api/v1/quotas/tenant-x', { maxConcurrent: 3 }, 'scenario 6: cap');
    process.stdout.write(`[chaos] during the outage: force ${force.status} ${JSON.stringify(force.body)}; quota ${quota.status} ${JSON.stringify(quota.body)}\n`);
    for (const r of [force, quota]) {
      expect(r.status).toBe(503);
      expect(r.body.error).toBe('TG_ERR_UNAVAILABLE');
      expect(r.body.message).toMatch(/Postgres|DATABASE_URL/);
      expect(r.ms).toBeLessThan(5000);
    }
    const policyBreaker = await api.get('/api/v1/breakers/policy');
    expect({ state: policyBreaker.body.state, forced: policyBreaker.body.forced }).toEqual({ state: 'closed', forced: null });
    expect(await c.conn.sismember(c.keys.quotaTenants(), 'tenant-x')).toBe(0);

    await sleep(Math.max(0, OUTAGE_MS - (Date.now() - stoppedAt)));
    await c.pg.start();
    const backAt = Date.now();
    await waitFor(async () => (await api.get('/readyz')).status === 200, '/readyz 200 once Postgres is back', 15_000, 100);

    // What happened during the outage is written now: the transition, the snapshot, the counters.
    const transitions = await waitFor(async () => {
      const rows = await pgQuery<{ from_state: string; to_state: string; at: Date }>(
        c.dbUrl,
        `SELECT from_state, to_state, at FROM breaker_transitions WHERE downstream = 'attestor' ORDER BY gen`,
      );
      return rows.length > 0 ? rows : undefined;
    }, 'the outage transition in Postgres', 10_000, 100);
    expect(transitions[0]).toMatchObject({ from_state: 'closed', to_state: 'open' });
    expect(new Date(transitions[0]!.at).getTime()).toBeGreaterThanOrEqual(stoppedAt);
    expect(new Date(transitions[0]!.at).getTime()).toBeLessThan(backAt);
    const [snap] = await pgQuery<{ state: { state: string } }>(c.dbUrl, `SELECT state FROM breaker_snapshots WHERE downstream = 'attestor'`);
    expect(snap?.state.state).toBe('open');
    const ids = [...a, ...b, ...boom];
    await waitFor(async () => {
      const rows = await pgQuery<{ downstream: string; counters: Record<string, number> }>(c.dbUrl, 'SELECT downstream, counters FROM downstream_counters');
      return rows.reduce((n, r) => n + Number(r.counters.admitted ?? 0), 0) >= ids.length || undefined;
    }, 'counters of the outage admissions snapshotted', 10_000, 100);

    // Changes work again, audited.
    const again = await api.send('PUT', '/api/v1/quotas/tenant-x', { maxConcurrent: 3 }, 'scenario 6: cap, after');
    expect(again.status).toBe(201);
    const audit = await pgQuery<{ action: string; reason: string }>(c.dbUrl, `SELECT action, reason FROM audit_log ORDER BY id`);
    expect(audit).toEqual([{ action: 'quota.create', reason: 'scenario 6: cap, after' }]);

    await sleep(500); // a late duplicate would show up
    expectConserved('postgres outage', await c.conservation(ids, exec), { exec: ids.length, ingress: 0, waiting: 0, 'dead-letter': 0 });
    expect(alive(all)).toBe(true);
    expect(all.logs.filter((l) => l.level === 'fatal' || l.level === 60)).toEqual([]);
    process.stdout.write(`[chaos] scenario ${Date.now() - started} ms\n`);
  } finally {
    await c.close();
  }
});
