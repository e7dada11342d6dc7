/**
 * What keeps /metrics linear at thousands of tenants: `entitlements` (every active tenant in one pass)
 * gives what `entitlementOf` gives tenant by tenant, on random policies of every kind; `topK` picks
 * what a full sort would.
 */
import { topK } from '../../src/api/cluster-snapshot';
import { entitlementOf, entitlements, POLICY_KINDS, type Policy, type TenantPolicy } from '../../src/core/policy';
import { rng } from '../support/rng';

it('matches entitlementOf for every tenant on 500 random policies', () => {
  const r = rng(18);
  for (let world = 0; world < 500; world++) {
    const kind = POLICY_KINDS[world % POLICY_KINDS.length]!;
    const active = Array.from({ length: 1 + Math.floor(r() * 12) }, (_, i) => `t${i}`);
    const tenants: Record<string, TenantPolicy> = {};
    for (const t of active) {
      if (r() < 0.5) continue;
      tenants[t] = {
        ...(r() < 0.7 ? { weight: 0.5 + Math.floor(r() * 8) } : {}),
        ...(r() < 0.5 ? { tier: Math.floor(r() * 3) } : {}),
        ...(r() < 0.3 ? { reserve: Math.floor(r() * 5) } : {}),
        ...(r() < 0.3 ? { maxShare: Math.round(r() * 100) / 100 } : {}),
      };
    }
    const policy: Policy = { kind, capacity: 1 + Math.floor(r() * 100), defaultWeight: 1, defaultTier: 1, tenants };
    const all = entitlements(policy, active);
    expect(all.size).toBe(active.length);
    for (const t of active) {
      const one = entitlementOf(policy, t, active);
      if (one === null) expect(all.get(t)).toBeNull();
      else expect(all.get(t)).toBeCloseTo(one, 9);
    }
  }
});

it('topK picks the k first of a full sort, in order, ties included', () => {
  const r = rng(7);
  for (let world = 0; world < 300; world++) {
    const items = Array.from({ length: Math.floor(r() * 200) }, (_, i) => ({ id: i, w: Math.floor(r() * 10) }));
    const cmp = (a: { id: number; w: number }, b: { id: number; w: number }) => b.w - a.w || a.id - b.id;
    const k = Math.floor(r() * 60);
    expect(topK(items, k, cmp)).toEqual([...items].sort(cmp).slice(0, k));
  }
});
