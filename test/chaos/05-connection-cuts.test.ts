/**
 * RELIABILITY.md scenario 5: connections cut without a restart. Under load, `CLIENT KILL TYPE normal`
 * cuts every ordinary client connection (tollgate's and the execution workers') again and again; then
 * `CLIENT PAUSE 3000 ALL` freezes every client for 3 s. No job is lost or promoted twice (a command
 * resent after a cut must not promote again), capacity holds, and the API answers 503 quickly during
 * the pause instead of hanging.
 */
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { chaosConfigInput, expectConserved, sampleInflight, startCluster } from './support/cluster';
import { alive, apiClient, sleep } from './support/ops';
import { expectWithinCapacity } from './support/observe';
import { waitFor } from '../support/services';

jest.setTimeout(60_000);

/** The API must not hang on a frozen Redis: an answer, 503, within this. */
const QUICK_MS = 2000;

it('CLIENT KILL under load and CLIENT PAUSE: nothing lost or duplicated, the API answers 503 quickly', async () => {
  const started = Date.now();
  const c = await startCluster('conn-cuts', chaosConfigInput());
  const api = await apiClient();
  const killer = new Redis(c.redis.url, { maxRetriesPerRequest: null });
  killer.on('error', () => undefined);
  let cutting = false;
  let sampler: ReturnType<typeof sampleInflight> | undefined;
  try {
    const all = c.spawn('all', api.env);
    const gate2 = c.spawn('gate');
    await waitFor(async () => (await api.get('/readyz')).status === 200, '/readyz 200 at start', 20_000, 100);
    // The execution workers are cut too: one whose move to active lost its reply leaves the job active
    // until BullMQ's stalled check (their lock, short here) gives it back; that is theirs, not tollgate's.
    const exec = c.startExec({ concurrency: 100, work: () => new Promise((r) => setTimeout(r, 2)), worker: { lockDuration: 4000, stalledInterval: 1000 } });
    sampler = sampleInflight(c);

    // Load, then every 150 ms every normal connection cut (the killer's own is skipped). The test
    // produces before cutting: ioredis aborts a pipeline cut mid-way, and the producer is not under test.
    const first = await c.produce(c.goodJobs(2000));
    cutting = true;
    let cuts = 0;
    let killed = 0;
    const cutter = (async () => {
      while (cutting) {
        await sleep(150);
        killed += Number(await killer.call('CLIENT', 'KILL', 'TYPE', 'normal').catch(() => 0));
        cuts++;
      }
    })();
    await waitFor(() => exec.runs.size >= 1000 || undefined, 'half the jobs executed while cutting', 30_000, 50);
    cutting = false;
    await cutter;
    process.stdout.write(`[chaos] ${cuts} CLIENT KILL rounds, ${killed} connections cut\n`);
    expect(cuts).toBeGreaterThanOrEqual(5);

    // More load, and every client frozen for 3 s: the API answers 503 quickly, for reads and /readyz.
    const second = await c.produce(c.goodJobs(1000));
    // The API's connection is up again after the cuts (else it would fail at once, not wait on a pause).
    await waitFor(async () => (await api.get('/api/v1/breakers')).status === 200, 'the API reading Redis again', 10_000, 50);
    await killer.call('CLIENT', 'PAUSE', '3000', 'ALL');
    const pausedAt = Date.now();
    const [breakers, readyz] = await Promise.all([api.get('/api/v1/breakers', 10_000), api.get('/readyz', 10_000)]);
    process.stdout.write(`[chaos] during CLIENT PAUSE: GET /api/v1/breakers ${breakers.status} in ${Math.round(breakers.ms)} ms, /readyz ${readyz.status} in ${Math.round(readyz.ms)} ms\n`);
    expect(Date.now() - pausedAt).toBeLessThan(3000); // answered while the pause still held
    expect({ status: breakers.status, error: breakers.body?.error }).toEqual({ status: 503, error: 'TG_ERR_UNAVAILABLE' });
    expect(breakers.ms).toBeLessThan(QUICK_MS);
    expect(readyz.status).toBe(503);
    expect(readyz.body.checks.redis).toMatchObject({ ok: false, detail: expect.stringContaining('REDIS_URL') });
    expect(readyz.ms).toBeLessThan(QUICK_MS);
    // Liveness does not depend on Redis.
    const healthz = await api.get('/healthz');
    expect(healthz.status).toBe(200);
    expect(healthz.ms).toBeLessThan(500);

    // After the pause everything flows again, exactly once.
    const ids = [...first, ...second];
    await c.settleIngress(ids, 30_000);
    await waitFor(() => exec.runs.size >= ids.length || undefined, 'every job executed', 30_000, 100).catch(async (err) => {
      // Where the unexecuted ones are (e.g. active in an execution queue), for the failure report.
      const counts: Record<string, unknown> = {};
      for (const d of ['scanner', 'attestor', 'policy']) {
        const q = new Queue(`exec.${d}`, { connection: c.conn, prefix: c.prefix });
        counts[d] = { ...(await q.getJobCounts('active', 'waiting', 'delayed', 'failed')), inflight: await c.conn.zcard(c.keys.inflight(d)) };
        await q.close();
      }
      process.stdout.write(`[chaos] not all executed: runs ${exec.runs.size} of ${ids.length}, exec queues ${JSON.stringify(counts)}\n`);
      throw err;
    });
    await sleep(1000); // a late duplicate would show up
    const peaks = await sampler.stop();
    expectConserved('connection cuts', await c.conservation(ids, exec), { exec: ids.length, ingress: 0, waiting: 0, 'dead-letter': 0 });
    expectWithinCapacity(exec, peaks);
    expect((await api.get('/readyz')).status).toBe(200);
    expect({ all: alive(all), gate: alive(gate2) }).toEqual({ all: true, gate: true });
    process.stdout.write(`[chaos] scenario ${Date.now() - started} ms\n`);
  } finally {
    cutting = false;
    await sampler?.stop();
    killer.disconnect();
    await c.close();
  }
});
