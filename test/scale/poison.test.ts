/**
 * RELIABILITY.md scenario 13 under load: one hostile or careless job per second in ingress (a cost
 * no downstream can admit, a cost over its quota, an execution add BullMQ refuses, an id reused by
 * another tenant, an absurd deadline) and a job scheduler whose id holds ':', while a quiet tenant
 * sends a job every 50 ms to the same downstream. The quiet tenant's ingress → exec latency is
 * measured while the poison arrives; every slot comes back. Runs serially (npm test's last phase),
 * tollgate's gate, observer and API as child processes on a private Redis and Postgres.
 */
import { chaosConfigInput, startCluster, type Cluster } from '../chaos/support/cluster';
import { errorLines } from '../chaos/support/lifecycle';
import { apiClient, waitReady } from '../chaos/support/ops';
import { waitFor } from '../support/services';

jest.setTimeout(120_000);

const SECONDS = 30;

/** One poison job of each kind in turn; returns the reason its dead-letter job should carry, if any. */
async function addPoison(c: Cluster, n: number): Promise<string | undefined> {
  switch (n % 5) {
    case 0:
      await c.ingress.add('scan.image', { tenantId: 'hostile', cost: 51, n });
      return 'cost-over-capacity';
    case 1:
      await c.ingress.add('scan.image', { tenantId: 'tight', cost: 3, n });
      return 'cost-over-quota';
    case 2: {
      // Options a producer on another client could leave: a size limit below the job's data.
      const job = await c.ingress.add('scan.image', { tenantId: 'hostile', blob: 'x'.repeat(100), n }, { delay: 60_000 });
      const key = c.keys.bullJob(c.ingress.name, job.id!);
      await c.conn.hset(key, 'opts', JSON.stringify({ ...JSON.parse((await c.conn.hget(key, 'opts'))!), sizeLimit: 10 }));
      await job.promote();
      return 'exec-refused';
    }
    case 3:
      // The id of a job another tenant ran earlier in this test.
      await c.ingress.add('scan.image', { tenantId: 'reuser', n }, { jobId: `shared-${n - 3}` });
      return undefined;
    default:
      await c.ingress.add('scan.image', { tenantId: 'hostile', deadline: 1e300, n });
      return 'invalid-deadline';
  }
}

it("keeps a quiet tenant's p99 ingress → exec under 100 ms with a poison job every second", async () => {
  const c = await startCluster('poison', chaosConfigInput());
  try {
    const api = await apiClient();
    const procs = [c.spawn('gate'), c.spawn('observer'), c.spawn('api', api.env)];
    await waitReady(api.port, 'api');
    expect((await api.send('PUT', '/api/v1/quotas/tight', { maxConcurrent: 2 })).status).toBe(201);
    const quiet: number[] = [];
    const reused: number[] = [];
    const exec = c.startExec({
      concurrency: 100,
      work: async (job) => {
        if (job.data.tenantId === 'quiet') quiet.push(job.timestamp - job.data.sentAt);
        if (job.data.tenantId === 'reuser') reused.push(job.data.n);
        await new Promise((r) => setTimeout(r, 5));
      },
    });
    await c.ingress.upsertJobScheduler('hostile:every:second', { every: 1000 }, { name: 'scan.image', data: { tenantId: 'hostile-scheduled' } });

    const expected: Record<string, number> = {};
    let sent = 0;
    let reusedSent = 0;
    const started = Date.now();
    const quietLoop = (async () => {
      while (Date.now() - started < SECONDS * 1000) {
        await c.ingress.add('scan.image', { tenantId: 'quiet', sentAt: Date.now() });
        sent++;
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    for (let n = 0; Date.now() - started < SECONDS * 1000; n++) {
      // Every fifth second a job with a custom id that a later poison job reuses for another tenant.
      if (n % 5 === 0) await c.ingress.add('scan.image', { tenantId: 'owner', n }, { jobId: `shared-${n}` });
      const reason = await addPoison(c, n);
      if (n % 5 === 3) reusedSent++;
      if (reason) expected[reason] = (expected[reason] ?? 0) + 1;
      await new Promise((r) => setTimeout(r, 1000));
    }
    await quietLoop;
    await c.ingress.removeJobScheduler('hostile:every:second');
    await waitFor(() => quiet.length === sent || undefined, `every quiet job run (${sent})`, 20_000);

    quiet.sort((a, b) => a - b);
    const p = (q: number) => quiet[Math.min(quiet.length - 1, Math.ceil(q * quiet.length) - 1)]!;
    const dead = await c.conn.hgetall(c.keys.stats('scanner'));
    const unrouted = await c.conn.hgetall(c.keys.stats(undefined));
    process.stdout.write(
      `poison, one a second for ${SECONDS} s: quiet tenant ${quiet.length} jobs, ingress → exec p50 ${p(0.5)} ms, p99 ${p(0.99)} ms, max ${quiet[quiet.length - 1]} ms; ` +
        `dead-lettered ${JSON.stringify({ ...dead, ...unrouted })}; expected ${JSON.stringify(expected)}\n`,
    );
    for (const [reason, n] of Object.entries(expected)) expect({ reason, n: Number(dead[`dead:${reason}`] ?? unrouted[`dead:${reason}`] ?? 0) }).toEqual({ reason, n });
    // Each id reused by another tenant ran as a job of its own.
    await waitFor(() => reused.length === reusedSent || undefined, `every reused id run (${reusedSent})`);
    expect(p(0.99)).toBeLessThan(100);

    // Nothing kept a slot.
    await waitFor(async () => (await c.conn.zcard(c.keys.inflight('scanner'))) === 0 || undefined, 'every slot back', 15_000);
    for (const proc of procs) expect(errorLines(proc)).toEqual([]);
    await exec.close();
  } finally {
    await c.close();
  }
});
