/**
 * The allocation scheduler exists twice: src/core/fair-queue.ts with src/core/policy.ts (pure, what the
 * simulator and the what-if endpoint run) and the Lua scheduler in Redis (what admits jobs). This test
 * replays random workloads (enqueues, completions, clock jumps) under random policies of every kind
 * through both, and requires the same admissions in the same order after every step.
 */
import { POLICY_KINDS, type Policy, type TenantPolicy } from '../../src/core/policy';
import { FairQueue, type QueuedJob } from '../../src/core/fair-queue';
import { Governance } from '../../src/redis/governance';
import { Keys } from '../../src/redis/keys';
import { cleanupPrefix, testRedis, uniquePrefix } from '../support/services';
import { rng } from '../support/rng';

jest.setTimeout(120_000);

const redis = testRedis();
const prefix = uniquePrefix('sdiff');
afterAll(async () => {
  await cleanupPrefix(redis, prefix);
  redis.disconnect();
});


it('admits the same jobs in the same order as the reference scheduler, under every policy', async () => {
  const rand = rng(42);
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(rand() * xs.length)]!;
  const tenants = ['t0', 't1', 't2', 't3', 't4'];
  let total = 0;
  let refusals = 0;
  const perKind: Record<string, number> = {};
  for (let scenario = 0; scenario < 60; scenario++) {
    const kind = POLICY_KINDS[scenario % POLICY_KINDS.length]!;
    const capacity = 2 + Math.floor(rand() * 9);
    const params: Record<string, TenantPolicy> = {};
    let reserves = 0;
    for (const t of tenants) {
      const tp: TenantPolicy = {};
      if (rand() < 0.6) tp.weight = pick([0.5, 1, 2, 3, 5]);
      if (kind === 'priority' && rand() < 0.7) tp.tier = Math.floor(rand() * 4);
      if (kind === 'reserved' && rand() < 0.5) {
        const r = Math.min(capacity - reserves, 1 + Math.floor(rand() * 4));
        if (r > 0) {
          tp.reserve = r;
          reserves += r;
        }
      }
      if (kind === 'reserved' && rand() < 0.3) tp.borrowLimit = Math.floor(rand() * 4);
      if ((kind === 'max-limit' || rand() < 0.15) && rand() < 0.7) tp.maxShare = pick([0.2, 0.25, 0.5, 0.75]);
      params[t] = tp;
    }
    const policy: Policy = {
      kind,
      capacity,
      defaultWeight: pick([1, 2]),
      defaultTier: 1,
      ...(kind === 'priority' && rand() < 0.5 ? { agingMs: pick([500, 2000]) } : {}),
      tenants: params,
    };
    const ds = `d${scenario}`;
    let now = Date.UTC(2026, 10, 27, 12, 0, 0);
    const gov = new Governance(redis, new Keys(prefix), 3_600_000, [ds], () => now);
    await gov.mirror.writePolicy(ds, policy, 'runtime');
    const model = new FairQueue<string>(policy);
    const inflight: Array<{ id: string; tenant: string; cost: number }> = [];
    const tenantOf = new Map<string, string>();
    let nextId = 0;

    for (let step = 0; step < 50; step++) {
      const op = rand();
      if (op < 0.45) {
        const tenant = pick(tenants);
        const n = 1 + Math.floor(rand() * 4);
        const items = [];
        for (let k = 0; k < n; k++) {
          const id = `s${scenario}-${nextId++}`;
          // Now and then a cost the policy could never admit (above the capacity or a max share).
          const cost = rand() < 0.03 ? capacity + 1 : rand() < 0.8 ? 1 : 1 + Math.floor(rand() * 3);
          tenantOf.set(id, tenant);
          items.push({ key: id, stamp: '1', tenantId: tenant, name: 'job', cost, priority: 0, payload: '{}' });
          model.add(tenant, { cost, item: id }, now);
        }
        await gov.waiting.store(ds, `exec.${ds}`, items);
      } else if (op < 0.8 && inflight.length > 0) {
        const done = inflight.splice(Math.floor(rand() * inflight.length), 1)[0]!;
        await gov.release(ds, [{ key: done.id, outcome: 'completed' }]);
        model.release(done.tenant, done.cost, now);
      } else {
        now += Math.floor(rand() * 1500);
      }
      const lua = await gov.waiting.admit(ds, { capacity, maxAdmit: 1000, leaseMs: 3_600_000, maxEvaluations: 10_000 });
      const refusedRef: Array<{ tenant: string; job: QueuedJob<string> }> = [];
      const ref = model.drain(now, Infinity, refusedRef);
      const got = lua.admitted.map((a) => a.id);
      const want = ref.map((r) => r.job.item);
      expect({ scenario, step, kind, admitted: got, refused: lua.refused.map((r) => r.id) }).toEqual({
        scenario,
        step,
        kind,
        admitted: want,
        refused: refusedRef.map((r) => r.job.item),
      });
      refusals += refusedRef.length;
      for (const r of ref) inflight.push({ id: r.job.item, tenant: r.tenant, cost: r.job.cost });
      total += got.length;
      perKind[kind] = (perKind[kind] ?? 0) + got.length;
    }
  }
  process.stdout.write(`scheduler differential: ${total} admissions and ${refusals} refusals compared (${JSON.stringify(perKind)})\n`);
  expect(refusals).toBeGreaterThan(5);
  for (const k of POLICY_KINDS) expect(perKind[k]).toBeGreaterThan(50);
});
