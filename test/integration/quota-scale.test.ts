/**
 * Quotas under pressure: two real gate processes racing on one tenant's concurrency and period
 * limits; a tenant with 50,000 waiting jobs not delaying another tenant; period usage surviving a
 * Redis that lost its governance state.
 */
import { Keys } from '../../src/redis/keys';
import { parseApiTokens } from '../../src/config/tokens';
import { deleteKeysWithPrefix } from '../../src/redis/maintenance';
import { createHarness, type Harness } from '../support/harness';
import { startPrivateRedis } from '../support/private-redis';
import { spawnWorker, writeConfigFile, type Child } from '../support/processes';
import { REDIS_URL, testConfigInput, testRedis, waitFor } from '../support/services';

jest.setTimeout(120_000);

const ADMIN = 'admin-secret-0123456789';
let h: Harness;

beforeEach(async () => {
  h = await createHarness('qscale', {
    env: { apiTokens: parseApiTokens(`ops:${ADMIN}:admin`) },
    config: { downstreams: [{ name: 'scanner', capacity: 10_000 }, { name: 'attestor', capacity: 10_000 }, { name: 'policy', capacity: 10_000 }] },
  });
});
afterEach(async () => {
  await h.close();
});

async function twoGates(): Promise<Child[]> {
  const file = writeConfigFile({ ...testConfigInput(), downstreams: h.config.downstreams.map((d) => ({ name: d.name, capacity: d.capacity })) });
  const env = { REDIS_URL, DATABASE_URL: h.db.url, TOLLGATE_PREFIX: h.prefix, TOLLGATE_CONFIG: file };
  return [spawnWorker('gate', env), spawnWorker('gate', env)];
}

async function stopAll(children: Child[]) {
  children.forEach((c) => c.kill('SIGKILL'));
  await Promise.all(children.map((c) => c.exited));
}

it('two gate processes sharing 2,000 jobs never exceed a tenant\'s max concurrent', async () => {
  await h.start(['api', 'observer']);
  expect((await h.api('PUT', '/api/v1/quotas/racer', { body: { maxConcurrent: 5 }, token: ADMIN })).status).toBe(201);
  const gates = await twoGates();
  let running = 0;
  let maxRunning = 0;
  let done = 0;
  h.worker(
    'exec.scanner',
    async () => {
      running++;
      maxRunning = Math.max(maxRunning, running);
      await new Promise((r) => setTimeout(r, 2 + Math.random() * 6));
      running--;
      done++;
    },
    { concurrency: 100 },
  );
  // Sample the admitted-but-unfinished count in Redis too: it is what the limit bounds.
  let maxInflight = 0;
  const stateKey = new Keys(h.prefix).quotaState('q1', 'racer');
  const sampler = setInterval(async () => {
    maxInflight = Math.max(maxInflight, Number((await h.redis.hget(stateKey, 'inf')) ?? 0));
  }, 5);
  try {
    await h.ingress.addBulk(Array.from({ length: 2000 }, (_, i) => ({ name: 'scan.image', data: { tenantId: 'racer', i } })));
    await waitFor(() => done === 2000, 'all 2,000 executed', 90_000, 100);
    process.stdout.write(`max concurrent 5, two gates, 2,000 jobs: max running ${maxRunning}, max admitted-unfinished ${maxInflight}\n`);
    expect(maxRunning).toBeLessThanOrEqual(5);
    expect(maxInflight).toBeLessThanOrEqual(5);
    expect(maxRunning).toBe(5); // the limit was actually reached, so the test could have failed
  } finally {
    clearInterval(sampler);
    await stopAll(gates);
  }
});

it('a quota change applies on every running gate process within 1 s', async () => {
  await h.start(['api', 'observer']);
  await h.api('PUT', '/api/v1/quotas/retuned', { body: { rate: 0.5, burst: 1 }, token: ADMIN });
  const gates = await twoGates();
  const admittedAt: number[] = [];
  h.worker('exec.attestor', async (job) => void admittedAt.push(job.timestamp), { concurrency: 50 });
  try {
    await h.ingress.addBulk(Array.from({ length: 400 }, (_, i) => ({ name: 'attest.sbom', data: { tenantId: 'retuned', i } })));
    await waitFor(async () => (await h.ingress.count()) === 0 && admittedAt.length >= 1, 'intake done, the backlog waiting on the rate');
    await new Promise((r) => setTimeout(r, 500));
    const before = admittedAt.length;
    const t0 = Date.now();
    expect((await h.api('PUT', '/api/v1/quotas/retuned', { body: { rate: 2000, burst: 500 }, token: ADMIN })).status).toBe(200);
    await waitFor(() => admittedAt.length === 400, 'the whole backlog at the new rate', 10_000, 10);
    const lastAt = Math.max(...admittedAt);
    process.stdout.write(`two gates: ${400 - before} waiting jobs admitted within ${lastAt - t0} ms of the change\n`);
    expect(lastAt - t0).toBeLessThan(1000);
  } finally {
    await stopAll(gates);
  }
});

it('two gate processes never exceed a period total', async () => {
  await h.start(['api', 'observer']);
  await h.api('PUT', '/api/v1/quotas/metered', { body: { periods: { day: 700 }, onPeriodExceeded: 'reject' }, token: ADMIN });
  const gates = await twoGates();
  let done = 0;
  h.worker('exec.policy', async () => void done++, { concurrency: 100 });
  try {
    await h.ingress.addBulk(Array.from({ length: 1500 }, (_, i) => ({ name: 'policy.eval', data: { tenantId: 'metered', i } })));
    const dl = h.queue('dead-letter');
    await waitFor(async () => done + (await dl.count()) === 1500, 'every job decided', 60_000, 100);
    await new Promise((r) => setTimeout(r, 300));
    process.stdout.write(`day total 700, two gates, 1,500 jobs: ${done} executed, ${await dl.count()} dead-lettered\n`);
    expect(done).toBe(700);
    expect(await dl.count()).toBe(800);
  } finally {
    await stopAll(gates);
  }
});

it('does not delay a quiet tenant behind another tenant\'s 50,000 waiting jobs, and costs no more per job than behind 1,000', async () => {
  // A Redis of its own: INFO commandstats counts the whole server, and other test files run in parallel.
  const redis = await startPrivateRedis();
  const own = await createHarness('qbacklog', {
    env: { redisUrl: redis.url, apiTokens: parseApiTokens(`ops:${ADMIN}:admin`) },
    config: { downstreams: [{ name: 'scanner', capacity: 10_000 }, { name: 'attestor', capacity: 10_000 }, { name: 'policy', capacity: 10_000 }] },
  });
  try {
    await backlogScenario(own);
  } finally {
    await own.close();
    await redis.stop();
  }
});

async function backlogScenario(h: Harness) {
  const commandStats = async (): Promise<Map<string, number>> => {
    const text = await h.redis.info('commandstats');
    const out = new Map<string, number>();
    for (const m of text.matchAll(/^cmdstat_([a-z|_-]+):calls=(\d+)/gm)) if (m[1] !== 'info') out.set(m[1]!, Number(m[2]));
    return out;
  };
  const commandCount = async () => [...(await commandStats()).values()].reduce((a, b) => a + b, 0);
  await h.start();
  await h.api('PUT', '/api/v1/quotas/flood', { body: { rate: 5, burst: 5 }, token: ADMIN });
  let latencies: number[] = [];
  let floodDone = 0;
  h.worker(
    'exec.scanner',
    async (job) => {
      if (job.data.tenantId === 'quiet') latencies.push(job.timestamp - job.data.sentAt);
      else floodDone++;
    },
    { concurrency: 50 },
  );
  const flood = async (n: number) => {
    for (let i = 0; i < n; i += 5000) {
      await h.ingress.addBulk(Array.from({ length: Math.min(5000, n - i) }, (_, k) => ({ name: 'scan.image', data: { tenantId: 'flood', k: i + k } })));
    }
    // The flood is in the waiting place (intake is done) before the quiet tenant sends anything.
    await waitFor(() => h.intakeDone(), 'intake of the flood', 60_000, 200);
  };
  const quietRound = async (backlog: number) => {
    latencies = [];
    const before = await commandCount();
    const statsBefore = await commandStats();
    const floodBefore = floodDone;
    for (let i = 0; i < 100; i++) {
      await h.ingress.add('scan.image', { tenantId: 'quiet', i, sentAt: Date.now() });
      await new Promise((r) => setTimeout(r, 20));
    }
    await waitFor(() => latencies.length === 100, 'the quiet tenant\'s 100 jobs', 30_000);
    const commands = (await commandCount()) - before;
    if (process.env.DEBUG_COMMANDS) {
      const after = await commandStats();
      const delta = [...after].map(([k, v]) => [k, v - (statsBefore.get(k) ?? 0)] as const).sort((a, b) => b[1] - a[1]).slice(0, 15);
      process.stdout.write(`${JSON.stringify(delta)}\n`);
    }
    const admitted = 100 + (floodDone - floodBefore);
    const sorted = [...latencies].sort((a, b) => a - b);
    const r = { backlog, p50: sorted[49]!, p99: sorted[98]!, admitted, perJob: commands / admitted };
    process.stdout.write(
      `quiet tenant behind ${backlog} waiting: p50 ${r.p50} ms, p99 ${r.p99} ms; ${admitted} jobs admitted meanwhile; ` +
        `${r.perJob.toFixed(1)} Redis commands per admitted job (every process, BullMQ's own included)\n`,
    );
    return r;
  };

  await flood(1000);
  const small = await quietRound(1000);
  await flood(50_000);
  const usage = await h.api('GET', '/api/v1/quotas/flood/usage', { token: ADMIN });
  expect(usage.body.waiting.total).toBeGreaterThanOrEqual(50_000);
  const large = await quietRound(usage.body.waiting.total);

  expect(large.p99).toBeLessThan(1000);
  // Waiting work is not polled: the cost per admission does not grow with the backlog.
  expect(large.perJob).toBeLessThan(small.perJob * 1.5);
}

it('keeps period usage when Redis loses the governance state (restored from the ledger)', async () => {
  await h.start();
  await h.api('PUT', '/api/v1/quotas/ledgered', { body: { periods: { day: 100 }, onPeriodExceeded: 'reject' }, token: ADMIN });
  let done = 0;
  h.worker('exec.attestor', async () => void done++, { concurrency: 50 });
  await h.ingress.addBulk(Array.from({ length: 40 }, (_, i) => ({ name: 'attest.sbom', data: { tenantId: 'ledgered', i } })));
  await waitFor(() => done === 40, 'the first 40');
  // Let the sync write the ledger (it runs every 500 ms in tests), then lose every governance key.
  await new Promise((r) => setTimeout(r, 1200));
  await h.stop();
  const redis = testRedis();
  await deleteKeysWithPrefix(redis, `${h.prefix}:gov`);
  redis.disconnect();
  await h.start();
  const restored = await waitFor(async () => {
    const u = (await h.api('GET', '/api/v1/quotas/ledgered/usage', { token: ADMIN })).body;
    return u?.quotas?.[0]?.periods?.day?.used === 40 ? u : undefined;
  }, 'usage restored from the ledger');
  expect(restored.quotas[0].periods.day).toMatchObject({ used: 40, limit: 100 });
  await h.ingress.addBulk(Array.from({ length: 80 }, (_, i) => ({ name: 'attest.sbom', data: { tenantId: 'ledgered', i: 100 + i } })));
  await waitFor(async () => done + (await h.queue('dead-letter').count()) === 120, 'every job decided');
  expect(done).toBe(100);
});



it('re-counts running jobs as in flight when Redis loses the governance state but not the queues', async () => {
  await h.start();
  await h.api('PUT', '/api/v1/quotas/adoptee', { body: { maxConcurrent: 2 }, token: ADMIN });
  const starts: Array<{ i: number; at: number }> = [];
  const ends: Array<{ i: number; at: number }> = [];
  // The two long jobs run until the test lets them end (a barrier, not a duration): however long the
  // restart takes under load, they are still running when the new process adopts them.
  let letLongJobsEnd!: () => void;
  const longJobsMayEnd = new Promise<void>((r) => (letLongJobsEnd = r));
  h.worker(
    'exec.policy',
    async (job) => {
      starts.push({ i: job.data.i, at: Date.now() });
      if (job.data.i < 2) await longJobsMayEnd;
      else await new Promise((r) => setTimeout(r, 10));
      ends.push({ i: job.data.i, at: Date.now() });
    },
    { concurrency: 10 },
  );
  await h.ingress.addBulk([0, 1].map((i) => ({ name: 'policy.eval', data: { tenantId: 'adoptee', i } })));
  await waitFor(() => starts.length === 2, 'two long jobs running');
  await h.stop();
  const redis = testRedis();
  await deleteKeysWithPrefix(redis, `${h.prefix}:gov`);
  redis.disconnect();
  await h.start();
  await waitFor(async () => (await h.api('GET', '/api/v1/quotas/adoptee/usage', { token: ADMIN })).body.quotas[0].inFlight === 2, 'the running jobs adopted');
  await h.ingress.addBulk([2, 3].map((i) => ({ name: 'policy.eval', data: { tenantId: 'adoptee', i } })));
  // Both new jobs are decided (waiting behind the adopted slots) before the long ones may end.
  await waitFor(async () => (await h.intakeDone()) || undefined, 'the new jobs taken in');
  await new Promise((r) => setTimeout(r, 500));
  expect(starts.filter((x) => x.i >= 2)).toEqual([]);
  letLongJobsEnd();
  await waitFor(() => ends.length === 4, 'all four done', 20_000);
  // The two new jobs started only after the adopted ones finished: the limit held across the loss.
  const firstEnd = Math.min(...ends.filter((e) => e.i < 2).map((e) => e.at));
  for (const s of starts.filter((x) => x.i >= 2)) expect(s.at).toBeGreaterThanOrEqual(firstEnd);
});
