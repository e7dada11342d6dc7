/**
 * Allocation policies on real Redis with real execution workers: weighted shares, reserved capacity
 * reclaimed without preemption, priority tiers, and the policies API (read, change, what-if).
 */
import { Keys } from '../../src/redis/keys';
import { Client } from 'pg';
import { parseApiTokens } from '../../src/config/tokens';
import { jainIndex } from '../../src/core/simulate';
import { createHarness, type Harness } from '../support/harness';
import { waitFor } from '../support/services';

jest.setTimeout(120_000);

const ADMIN = 'admin-secret-0123456789';
let h: Harness;

beforeEach(async () => {
  h = await createHarness('policies', {
    env: { apiTokens: parseApiTokens(`ops:${ADMIN}:admin`) },
    config: {
      observer: { blockMs: 200, reconcileIntervalMs: 500, reconcileMinAgeMs: 1000, claimIdleMs: 1000, syncIntervalMs: 500, starvationMs: 800 },
      downstreams: [
        { name: 'scanner', capacity: 20, policy: { kind: 'proportional', tenants: { a: { weight: 1 }, b: { weight: 2 }, c: { weight: 5 } } } },
        { name: 'attestor', capacity: 20, policy: { kind: 'reserved', tenants: { owner: { reserve: 10 } } } },
        { name: 'policy', capacity: 2, policy: { kind: 'priority', tenants: { gold: { tier: 0 }, bronze: { tier: 2 } } } },
      ],
    },
  });
  await h.start();
});
afterEach(async () => {
  await h.close();
});

/** Decision times of the given ingress jobs, from their records. */
async function admissionTimes(ids: string[]): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (let i = 0; i < ids.length; i += 1000) {
    const pipe = h.redis.pipeline();
    for (const id of ids.slice(i, i + 1000)) pipe.hget(new Keys(h.prefix).record(id), 'at');
    (await pipe.exec())!.forEach(([, v], k) => {
      if (v) out.set(ids[i + k]!, Number(v));
    });
  }
  return out;
}

it('shares a saturated downstream 1:2:5 by weight over 30 s', async () => {
  h.worker('exec.scanner', async () => new Promise((r) => setTimeout(r, 50)), { concurrency: 40 });
  const ids: Record<string, string[]> = { a: [], b: [], c: [] };
  for (const [tenant, n] of [['a', 2500], ['b', 4500], ['c', 10_000]] as const) {
    for (let i = 0; i < n; i += 2500) {
      const jobs = await h.ingress.addBulk(Array.from({ length: Math.min(2500, n - i) }, (_, k) => ({ name: 'scan.image', data: { tenantId: tenant, k: i + k } })));
      ids[tenant]!.push(...jobs.map((j) => j.id!));
    }
  }
  // Measure once all three are waiting (saturated), for 30 s.
  await waitFor(() => h.intakeDone(), 'intake', 60_000, 200);
  const start = Date.now();
  await new Promise((r) => setTimeout(r, 30_000));
  const end = start + 30_000;
  const admitted: Record<string, number> = {};
  for (const t of ['a', 'b', 'c']) {
    const times = await admissionTimes(ids[t]!);
    admitted[t] = [...times.values()].filter((at) => at >= start && at < end).length;
  }
  const total = admitted.a! + admitted.b! + admitted.c!;
  const weights = { a: 1, b: 2, c: 5 };
  const jain = jainIndex(['a', 'b', 'c'].map((t) => admitted[t]! / weights[t as 'a']));
  process.stdout.write(
    `proportional 1:2:5, capacity 20, 30 s: admitted ${JSON.stringify(admitted)} (${total}); shares ${['a', 'b', 'c']
      .map((t) => ((admitted[t]! / total) * 100).toFixed(1))
      .join(' / ')} % vs 12.5 / 25.0 / 62.5 %; Jain's index ${jain.toFixed(4)}\n`,
  );
  for (const t of ['a', 'b', 'c'] as const) {
    const entitled = weights[t] / 8;
    expect(Math.abs(admitted[t]! / total - entitled)).toBeLessThanOrEqual(entitled * 0.05);
  }
  expect(jain).toBeGreaterThan(0.99);
  // Every tenant still had work at the end: the shares were measured under saturation.
  for (const t of ['a', 'b', 'c']) expect((await admissionTimes(ids[t]!)).size).toBeLessThan(ids[t]!.length);
});

it('lends an idle reserve and gives it back as soon as the borrowed jobs finish', async () => {
  const running = new Map<string, number>();
  const started: Array<{ tenant: string; at: number }> = [];
  h.worker(
    'exec.attestor',
    async (job) => {
      const t = job.data.tenantId as string;
      running.set(t, (running.get(t) ?? 0) + 1);
      started.push({ tenant: t, at: Date.now() });
      await new Promise((r) => setTimeout(r, 1000));
      running.set(t, running.get(t)! - 1);
    },
    { concurrency: 40 },
  );
  await h.ingress.addBulk(Array.from({ length: 200 }, (_, i) => ({ name: 'attest.sbom', data: { tenantId: 'flood', i } })));
  // The flood borrows the owner's idle reserve: 20 running.
  await waitFor(() => (running.get('flood') ?? 0) === 20, 'the flood to use all 20 slots');
  const sent = Date.now();
  await h.ingress.addBulk(Array.from({ length: 10 }, (_, i) => ({ name: 'attest.sbom', data: { tenantId: 'owner', i } })));
  await waitFor(() => (running.get('owner') ?? 0) === 10, 'the owner to have its 10 slots', 10_000, 10);
  const reclaimed = Date.now() - sent;
  process.stdout.write(`reserved 10 of 20: the owner had its 10 slots ${reclaimed} ms after sending work (borrowed jobs run 1 s each)\n`);
  // No preemption (the borrowed jobs ran to completion) and no refill: back within one job's run time.
  expect(reclaimed).toBeLessThan(1500);
  expect(running.get('flood')).toBeLessThanOrEqual(10);
  // While the owner waited, the flood started nothing new.
  const ownerFirst = Math.min(...started.filter((s) => s.tenant === 'owner').map((s) => s.at));
  const floodStartsWhileOwnerWaited = started.filter((s) => s.tenant === 'flood' && s.at > sent + 50 && s.at < ownerFirst);
  expect(floodStartsWhileOwnerWaited).toEqual([]);
});

it('lets a higher tier go first at the very next release', async () => {
  const order: string[] = [];
  h.worker(
    'exec.policy',
    async (job) => {
      order.push(job.data.tenantId);
      await new Promise((r) => setTimeout(r, 300));
    },
    { concurrency: 10 },
  );
  await h.ingress.addBulk(Array.from({ length: 20 }, (_, i) => ({ name: 'policy.eval', data: { tenantId: 'bronze', i } })));
  await waitFor(() => order.length === 2, 'bronze to fill capacity 2');
  await h.ingress.add('policy.eval', { tenantId: 'gold' });
  await waitFor(() => order.includes('gold'), 'gold admitted', 5000, 10);
  // Bronze's queue was ahead by 18 jobs; gold took the first slot that freed.
  expect(order.indexOf('gold')).toBe(2);
});

it("orders a tenant's own waiting jobs by priority (BullMQ option or data.priority), then arrival", async () => {
  const order: number[] = [];
  h.worker('exec.policy', async (job) => {
    order.push(job.data.n);
    await new Promise((r) => setTimeout(r, 50));
  });
  // Capacity 2: the first two run at once; the rest wait and leave by priority (lower first; 0 = none, first).
  await h.ingress.addBulk([
    { name: 'policy.eval', data: { tenantId: 'solo', n: 1 } },
    { name: 'policy.eval', data: { tenantId: 'solo', n: 2 } },
    { name: 'policy.eval', data: { tenantId: 'solo', n: 3, priority: 5 } },
    { name: 'policy.eval', data: { tenantId: 'solo', n: 4 }, opts: { priority: 1 } },
    { name: 'policy.eval', data: { tenantId: 'solo', n: 5, priority: 9 } },
    { name: 'policy.eval', data: { tenantId: 'solo', n: 6 } },
    { name: 'policy.eval', data: { tenantId: 'solo', n: 7, priority: 2 } },
  ]);
  await waitFor(() => order.length === 7, 'all seven');
  expect(order.slice(2)).toEqual([6, 4, 7, 3, 5]);
});

it('explains a waiting job: what holds it, its place in line, an estimate; and reports fairness and starvation', async () => {
  h.worker('exec.policy', async () => new Promise((r) => setTimeout(r, 100)), { concurrency: 10 });
  const bronze = await h.ingress.addBulk(Array.from({ length: 30 }, (_, i) => ({ name: 'policy.eval', data: { tenantId: 'bronze', i } })));
  await waitFor(async () => (await h.queue('exec.policy').getJobCounts('completed')).completed! >= 4, 'a few admissions (for the rate)');
  const last = bronze.at(-1)!.id!;
  const loc = (await h.api('GET', `/api/v1/jobs/${last}`, { token: ADMIN })).body;
  expect(loc).toMatchObject({ place: 'waiting', tenantId: 'bronze', waiting: { reason: 'capacity' } });
  expect(loc.waiting.position).toBeGreaterThan(10);
  expect(loc.waiting.position).toBeLessThanOrEqual(26);
  const eta = Date.parse(loc.waiting.estimatedAdmissionAt);
  expect(eta).toBeGreaterThan(Date.now());
  expect(eta).toBeLessThan(Date.now() + 30_000);

  // Gold (tier 0) floods: bronze, still waiting, gets nothing and is reported starving.
  await h.ingress.addBulk(Array.from({ length: 200 }, (_, i) => ({ name: 'policy.eval', data: { tenantId: 'gold', i } })));
  const metrics = await waitFor(async () => {
    const text = (await (await fetch(`${h.tollgate!.url}/metrics`, { headers: { authorization: `Bearer ${ADMIN}` } })).text());
    return /tollgate_starving_tenants\{downstream="policy"\} 1/.test(text) ? text : undefined;
  }, 'bronze reported starving', 10_000, 200);
  expect(metrics).toMatch(/tollgate_fairness_jain\{downstream="policy"\} 0\.\d+/);
  expect(metrics).toMatch(/tollgate_tenant_entitlement_units\{downstream="policy",tenant="gold"\} 2/);
  expect(metrics).toMatch(/tollgate_tenant_entitlement_units\{downstream="policy",tenant="bronze"\} 0/);
  const usage = (await h.api('GET', '/api/v1/quotas/bronze/usage', { token: ADMIN })).body;
  expect(usage.allocation.policy).toMatchObject({ policy: 'priority', entitlement: 0, inFlight: 0 });
  expect(usage.allocation.policy.waiting).toBeGreaterThan(0);
  expect(usage.allocation.policy.waitP99Ms).toBeGreaterThan(0);
});

describe('the policies API', () => {
  it('lists policies, replaces one (audited), and applies it to waiting work', async () => {
    const list = await h.api('GET', '/api/v1/policies', { token: ADMIN });
    expect(list.body.items.map((p: { downstream: string; kind: string; source: string }) => [p.downstream, p.kind, p.source])).toEqual([
      ['scanner', 'proportional', 'config'],
      ['attestor', 'reserved', 'config'],
      ['policy', 'priority', 'config'],
    ]);
    const bad = await h.api('PUT', '/api/v1/policies/attestor', { body: { kind: 'reserved', tenants: { x: { reserve: 15 }, y: { reserve: 15 } } }, token: ADMIN });
    expect(bad).toMatchObject({ status: 400, body: { details: [{ field: 'body.tenants' }] } });
    const put = await h.api('PUT', '/api/v1/policies/policy', { body: { kind: 'max-limit', capacity: 8, tenants: { capped: { maxShare: 0.25 } } }, token: ADMIN, reason: 'cap the noisy one' });
    expect(put).toMatchObject({ status: 200, body: { kind: 'max-limit', capacity: 8, effectiveCapacity: 8, source: 'runtime' } });

    let running = 0;
    let maxRunning = 0;
    h.worker(
      'exec.policy',
      async () => {
        maxRunning = Math.max(maxRunning, ++running);
        await new Promise((r) => setTimeout(r, 200));
        running--;
      },
      { concurrency: 20 },
    );
    await h.ingress.addBulk(Array.from({ length: 20 }, (_, i) => ({ name: 'policy.eval', data: { tenantId: 'capped', i } })));
    await waitFor(async () => (await h.queue('exec.policy').getJobCounts('completed')).completed === 20, 'all 20 through the cap', 20_000);
    expect(maxRunning).toBe(2); // 25 % of 8

    const pg = new Client({ connectionString: h.db.url });
    await pg.connect();
    try {
      const { rows } = await pg.query(`SELECT actor, action, reason, after FROM audit_log WHERE resource_type = 'policy'`);
      expect(rows).toEqual([{ actor: 'ops', action: 'policy.create', reason: 'cap the noisy one', after: expect.objectContaining({ kind: 'max-limit' }) }]);
    } finally {
      await pg.end();
    }
  });

  it('simulates a candidate policy on the current waiting work without touching it', async () => {
    // The first 20 jobs hold the capacity for 5 s: nothing else moves while the simulation runs.
    h.worker('exec.scanner', async () => new Promise((r) => setTimeout(r, 5000)), { concurrency: 40 });
    await h.ingress.addBulk(Array.from({ length: 300 }, (_, i) => ({ name: 'scan.image', data: { tenantId: i % 3 === 0 ? 'a' : 'c', i } })));
    // Intake done includes the gate's claims: jobs it is still deciding are out of ingress's counts.
    await waitFor(async () => (await h.intakeDone()) && (await h.queue('exec.scanner').getJobCounts('active')).active === 20, 'intake');
    const before = await h.api('GET', '/api/v1/quotas/summary', { token: ADMIN });
    const sim = await h.api('POST', '/api/v1/policies/scanner/simulate', {
      body: { policy: { kind: 'proportional', tenants: { a: { weight: 1 }, c: { weight: 1 } } }, horizonMs: 10_000, serviceMs: 1000 },
      token: ADMIN,
    });
    expect(sim.status).toBe(200);
    expect(sim.body.current.tenants.c.share).toBeGreaterThan(0.7); // weight 5 vs 1 now
    expect(sim.body.candidate.tenants.c.share).toBeCloseTo(0.5, 1); // equal weights
    const after = await h.api('GET', '/api/v1/quotas/summary', { token: ADMIN });
    expect(after.body.waiting).toEqual(before.body.waiting);
    expect(before.body.waiting.total).toBe(280);
  });
});
