/**
 * RELIABILITY.md scenario 12: tollgate started with Redis and Postgres both absent. It says so in a
 * log line naming REDIS_URL / DATABASE_URL, retries with backoff, answers /healthz 200 and /readyz
 * 503 naming what is missing. Once Redis appears (empty) while Postgres is still absent, the gate
 * cannot know the tenants' quotas: it holds intake (jobs stay in ingress, none admitted blind, none
 * lost) and says so; once Postgres appears too it restores the definitions, is ready, and every job
 * flows.
 */
import { chaosConfigInput, expectConserved, startCluster } from './support/cluster';
import { alive, apiClient, logsMatching, sleep } from './support/ops';
import { waitFor } from '../support/services';

jest.setTimeout(60_000);

it('starts without Redis and Postgres, says which variable to fix, retries, then works once they appear', async () => {
  const started = Date.now();
  const c = await startCluster('absent', chaosConfigInput());
  const api = await apiClient();
  try {
    await c.redis.stop();
    await c.pg.stop();
    const all = c.spawn('all', api.env);

    // Alive at once, not ready, and the reasons name the variables.
    await waitFor(async () => (await api.get('/healthz', 2000)).status === 200, '/healthz 200 with no services', 20_000, 100);
    const notReady = await api.get('/readyz');
    expect(notReady.status).toBe(503);
    expect(notReady.body.checks.redis).toMatchObject({ ok: false, detail: expect.stringContaining('REDIS_URL') });
    expect(notReady.body.checks.postgres).toMatchObject({ ok: false, detail: expect.stringContaining('DATABASE_URL') });
    await waitFor(() => logsMatching(all, /REDIS_URL/).length > 0, 'a log line naming REDIS_URL', 10_000);
    // Postgres is retried with growing waits (backoff), each attempt logged with its wait.
    const pgRetries = await waitFor(() => {
      const lines = logsMatching(all, /DATABASE_URL/);
      return lines.length >= 3 ? lines : undefined;
    }, 'three Postgres retries logged', 10_000);
    const waits = pgRetries.map((l) => Number(l.retryInMs));
    process.stdout.write(`[chaos] Postgres retry waits: ${waits.join(', ')} ms; Redis: ${JSON.stringify(logsMatching(all, /REDIS_URL/).map((l) => l.msg))}\n`);
    for (let i = 1; i < waits.length; i++) expect(waits[i]!).toBeGreaterThan(waits[i - 1]!);
    // The Redis outage is logged once per client, not once per attempt.
    const redisLines = logsMatching(all, /REDIS_URL/).length;
    await sleep(1000);
    expect(logsMatching(all, /REDIS_URL/).length).toBe(redisLines);

    // Redis appears, empty, with Postgres still absent: quotas unknown, so intake holds.
    await c.redis.restart();
    const exec = c.startExec();
    const first = await c.produce(c.goodJobs(300));
    await waitFor(() => logsMatching(all, /intake waits/).length > 0 || undefined, 'a log line saying intake waits for the definitions', 20_000, 50);
    await sleep(1500);
    expect(exec.runs.size).toBe(0);
    expectConserved('absent Postgres, empty Redis', await c.conservation(first, exec), { ingress: first.length, exec: 0 });
    const halfReady = await api.get('/readyz');
    expect(halfReady.status).toBe(503);
    expect(halfReady.body.checks.redis).toEqual({ ok: true });
    expect(halfReady.body.checks.postgres).toMatchObject({ ok: false, detail: expect.stringContaining('DATABASE_URL') });

    // Postgres appears: ready (migrations applied in the background), and everything works.
    await c.pg.start();
    await waitFor(async () => (await api.get('/readyz')).status === 200, '/readyz 200 once both are there', 20_000, 100);
    const put = await api.send('PUT', '/api/v1/quotas/tenant-late', { maxConcurrent: 2 }, 'scenario 12: after start');
    expect(put.status).toBe(201);
    const second = await c.produce(c.goodJobs(300));
    const ids = [...first, ...second];
    await c.settleIngress(ids, 20_000);
    await waitFor(() => exec.runs.size >= ids.length || undefined, 'every job executed', 20_000, 50);
    await sleep(300);
    expectConserved('absent services', await c.conservation(ids, exec), { exec: ids.length, ingress: 0, waiting: 0, 'dead-letter': 0 });
    expect(alive(all)).toBe(true);
    expect(all.logs.filter((l) => l.level === 'fatal' || l.level === 60 || l.level === 'error' || l.level === 50)).toEqual([]);
    process.stdout.write(`[chaos] scenario ${Date.now() - started} ms\n`);
  } finally {
    await c.close();
  }
});
