/**
 * Load shedding and backpressure on real Redis: the lowest priorities go first past the high mark,
 * a reserve owner is never shed below its reserve, delayed shedding puts jobs back, and producers can
 * read the pressure (REST and the producer helper) before they flood.
 */
import { createBackpressureClient } from '../../src/client';
import { parseApiTokens } from '../../src/config/tokens';
import type { DeadLetterData } from '../../src/queues/dead-letter';
import { Keys } from '../../src/redis/keys';
import { createHarness, type Harness } from '../support/harness';
import { waitFor } from '../support/services';

jest.setTimeout(60_000);

const ADMIN = 'admin-secret-0123456789';
let h: Harness;

beforeEach(async () => {
  h = await createHarness('shedding', {
    env: { apiTokens: parseApiTokens(`ops:${ADMIN}:admin`) },
    config: {
      downstreams: [
        { name: 'scanner', capacity: 2, shedding: { high: 20, low: 10 } },
        {
          name: 'attestor',
          capacity: 4,
          policy: { kind: 'reserved', tenants: { owner: { reserve: 2 } } },
          shedding: { high: 10, low: 5 },
        },
        { name: 'policy', capacity: 1, shedding: { high: 5, low: 2, action: 'delay', delayMs: 1500 } },
      ],
    },
  });
  await h.start();
});
afterEach(async () => {
  await h.close();
});

const dead = async () => (await h.queue('dead-letter').getJobs(['waiting'])).map((j) => j.data as DeadLetterData);
const blocker = () => new Promise<void>((r) => setTimeout(r, 2000));

it('sheds the lowest priorities first past the high mark, and stops below the low mark', async () => {
  let holdMs = 2000;
  h.worker('exec.scanner', () => new Promise<void>((r) => setTimeout(r, holdMs)), { concurrency: 5 });
  await h.ingress.addBulk([
    ...Array.from({ length: 12 }, (_, i) => ({ name: 'scan.image', data: { tenantId: 'a', i, priority: 1 } })),
    ...Array.from({ length: 20 }, (_, i) => ({ name: 'scan.image', data: { tenantId: 'b', i, priority: 9 } })),
  ]);
  await waitFor(async () => (await h.ingress.count()) === 0 && (await dead()).length === 10, '10 shed', 15_000);
  const shed = await dead();
  expect(new Set(shed.map((d) => d.reason))).toEqual(new Set(['shed']));
  // Only the low-priority tenant's jobs, and of those the newest.
  expect(new Set(shed.map((d) => d.tenantId))).toEqual(new Set(['b']));
  expect(shed.map((d) => (d.job.data as { i: number }).i).sort((x, y) => x - y)).toEqual([10, 11, 12, 13, 14, 15, 16, 17, 18, 19]);

  const bp = (await h.api('GET', '/api/v1/backpressure', { token: ADMIN })).body;
  expect(bp.downstreams.find((d: { downstream: string }) => d.downstream === 'scanner')).toMatchObject({ level: 'shed', shedding: true, waiting: 20, shedAt: 20 });
  const helper = createBackpressureClient({ redis: h.redis, prefix: h.prefix, config: h.config });
  const check = await helper.check('b', 'scan.image');
  expect(check).toMatchObject({ level: 'shed', downstream: 'scanner' });
  expect(check.retryAfterMs).toBeGreaterThan(0);

  // The downstream speeds up; below the low mark (10 waiting) shedding stops, and nothing more is shed.
  holdMs = 20;
  await waitFor(async () => (await h.api('GET', '/api/v1/backpressure', { token: ADMIN })).body.downstreams[0].shedding === false, 'shedding off', 15_000);
  await h.ingress.addBulk(Array.from({ length: 5 }, (_, i) => ({ name: 'scan.image', data: { tenantId: 'b', i: 100 + i, priority: 9 } })));
  await waitFor(async () => (await h.queue('exec.scanner').getJobCounts('completed')).completed === 27, 'the rest run', 15_000);
  expect(await dead()).toHaveLength(10);
});

it('never sheds a reserve owner below its reserve, whatever its priority', async () => {
  // The owner is held by a throttle, so it stays below its reserve of 2 while its jobs wait.
  await h.api('POST', '/api/v1/throttles', { body: { tenantId: 'owner', action: 'pause' }, token: ADMIN });
  h.worker('exec.attestor', blocker, { concurrency: 5 });
  await h.ingress.addBulk(Array.from({ length: 6 }, (_, i) => ({ name: 'attest.sbom', data: { tenantId: 'owner', i, priority: 50 } })));
  await h.ingress.addBulk(Array.from({ length: 12 }, (_, i) => ({ name: 'attest.sbom', data: { tenantId: 'other', i, priority: 1 } })));
  await waitFor(async () => (await h.ingress.count()) === 0 && (await dead()).length >= 1, 'shedding', 15_000);
  await new Promise((r) => setTimeout(r, 300));
  const shed = await dead();
  expect(shed.length).toBeGreaterThan(0);
  expect(shed.every((d) => d.tenantId === 'other')).toBe(true);
});

it('with the delay action, sets jobs aside and puts them back later; none is lost', async () => {
  const startedAt = new Map<number, number>();
  h.worker('exec.policy', async (job) => {
    startedAt.set(job.data.i, Date.now());
    await new Promise((r) => setTimeout(r, 100));
  });
  const added = await h.ingress.addBulk(Array.from({ length: 12 }, (_, i) => ({ name: 'policy.eval', data: { tenantId: 'c', i } })));
  const iOf = new Map(added.map((j) => [j.id!, j.data.i as number]));
  // Past the high mark (5) with capacity 1, some jobs are set aside: seen in the downstream's shed set,
  // each with the time it is due back.
  const shedKey = new Keys(h.prefix).downstream('policy', 'shed');
  const setAside = new Map<number, number>();
  await waitFor(async () => {
    const raw = await h.redis.zrange(shedKey, '0', '-1', 'WITHSCORES');
    for (let k = 0; k < raw.length; k += 2) setAside.set(iOf.get(raw[k]!)!, Number(raw[k + 1]));
    return setAside.size > 0 || undefined;
  }, 'jobs set aside');
  await waitFor(async () => (await h.intakeDone()) || undefined, 'intake');
  await waitFor(() => startedAt.size === 12, 'all 12 run, the shed ones after their delay', 30_000);
  expect(await dead()).toEqual([]);
  // A job set aside runs only once its delay is over, not before.
  for (const [i, due] of setAside) expect(startedAt.get(i)!).toBeGreaterThanOrEqual(due - 5);
});

it('tells a producer to slow down while its job type waits on a rate, with when to retry', async () => {
  await h.api('PUT', '/api/v1/quotas/metered', { body: { rate: 0.5, burst: 1 }, token: ADMIN });
  h.worker('exec.scanner', async () => undefined);
  await h.ingress.addBulk(Array.from({ length: 3 }, (_, i) => ({ name: 'scan.image', data: { tenantId: 'metered', i } })));
  const helper = createBackpressureClient({ redis: h.redis, prefix: h.prefix, config: h.config });
  const check = await waitFor(async () => {
    const c = await helper.check('metered', 'scan.image');
    return c.level === 'slow-down' ? c : undefined;
  }, 'slow-down');
  expect(check).toMatchObject({ level: 'slow-down', reason: 'rate', downstream: 'scanner' });
  expect(check.retryAfterMs).toBeGreaterThan(0);
  expect(check.retryAfterMs).toBeLessThanOrEqual(2000);
  expect(await helper.check('someone-else', 'scan.image')).toMatchObject({ level: 'ok' });
});
