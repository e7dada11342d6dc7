/**
 * Allocation policies on scripted workloads, with the simulator's clock (no timers, no I/O).
 */
import { admissible, tierOf, type Policy } from '../../src/core/policy';
import { jainIndex, simulate, type SimTenant } from '../../src/core/simulate';

const base = (over: Partial<Policy>): Policy => ({ kind: 'proportional', capacity: 20, defaultWeight: 1, defaultTier: 1, tenants: {}, ...over });
const flood = (id: string, count = 100_000, serviceMs = 100, at = 0): SimTenant => ({ id, arrivals: [{ at, count, serviceMs }] });

describe('proportional', () => {
  it('shares a saturated downstream 1:2:5 by weight, perfectly fairly', () => {
    const policy = base({ tenants: { a: { weight: 1 }, b: { weight: 2 }, c: { weight: 5 } } });
    const r = simulate(policy, [flood('a'), flood('b'), flood('c')], 30_000);
    expect(r.tenants.a!.share).toBeCloseTo(1 / 8, 2);
    expect(r.tenants.b!.share).toBeCloseTo(2 / 8, 2);
    expect(r.tenants.c!.share).toBeCloseTo(5 / 8, 2);
    expect(r.jain).toBeGreaterThan(0.999);
    expect(r.tenants.a!.admitted + r.tenants.b!.admitted + r.tenants.c!.admitted).toBe(20 * 300); // capacity always full
  });

  it('gives an idle tenant\'s share to the others, and none of it back as credit', () => {
    const policy = base({ tenants: { a: { weight: 1 }, b: { weight: 1 }, late: { weight: 2 } } });
    const early = simulate(policy, [flood('a'), flood('b'), flood('late', 100_000, 100, 10_000)], 10_000);
    expect(early.tenants.a!.share).toBeCloseTo(0.5, 2);
    // After `late` arrives it gets its weight share from then on, not a catch-up burst.
    const after = simulate(policy, [flood('a'), flood('b'), flood('late', 100_000, 100, 10_000)], 20_000);
    const lateAdmitted = after.tenants.late!.admitted;
    expect(lateAdmitted / (after.tenants.a!.admitted - early.tenants.a!.admitted + after.tenants.b!.admitted - early.tenants.b!.admitted + lateAdmitted)).toBeCloseTo(0.5, 1);
  });

  it('keeps a quiet tenant\'s wait short behind a flood', () => {
    const policy = base({});
    const r = simulate(policy, [flood('noisy'), { id: 'quiet', arrivals: Array.from({ length: 20 }, (_, i) => ({ at: 1000 + i * 500, count: 1, serviceMs: 100 })) }], 15_000);
    expect(r.tenants.quiet!.admitted).toBe(20);
    expect(r.tenants.quiet!.waitP99Ms!).toBeLessThanOrEqual(100); // at most one service time
  });
});

describe('priority', () => {
  it('serves a lower tier only when higher tiers have nothing waiting', () => {
    const policy = base({ kind: 'priority', tenants: { gold: { tier: 0 }, bronze: { tier: 2 } } });
    const r = simulate(policy, [flood('gold', 200), flood('bronze', 200)], 5_000, 400);
    const firstBronze = r.order.indexOf('bronze');
    expect(r.order.slice(0, firstBronze).every((t) => t === 'gold')).toBe(true);
    expect(firstBronze).toBe(200); // all of gold's 200 first
  });

  it('preempts admission order within one release', () => {
    const policy = base({ kind: 'priority', capacity: 2, tenants: { gold: { tier: 0 } } });
    // Bronze saturates; gold's job arrives at 50 ms and takes the very next free slot (at 100 ms).
    const r = simulate(policy, [flood('bronze', 100), { id: 'gold', arrivals: [{ at: 50, count: 1, serviceMs: 100 }] }], 1000);
    expect(r.order.slice(0, 3)).toEqual(['bronze', 'bronze', 'gold']);
    expect(r.tenants.gold!.waitP50Ms).toBe(50);
  });

  it('with aging, serves a starving lower tier within the bound', () => {
    const policy = base({ kind: 'priority', agingMs: 1000, tenants: { gold: { tier: 0 } } });
    const r = simulate(policy, [flood('gold'), flood('bronze')], 10_000);
    expect(r.tenants.bronze!.admitted).toBeGreaterThan(0);
    const noAging = simulate(base({ kind: 'priority', tenants: { gold: { tier: 0 } } }), [flood('gold'), flood('bronze')], 10_000);
    expect(noAging.tenants.bronze!.admitted).toBe(0);
  });
});

describe('reserved', () => {
  const policy = base({ kind: 'reserved', capacity: 20, tenants: { owner: { reserve: 10 } } });

  it('lends an idle reserve and reclaims it as borrowed jobs finish, without preemption', () => {
    // The flood borrows all 20 slots while the owner is idle (0-5 s: 5 rounds of 20).
    const idle = simulate(policy, [flood('flood', 100_000, 1000)], 5_000);
    expect(idle.tenants.flood!.admitted).toBe(100);
    // The owner sends its 10 jobs at 5.5 s: borrowed slots are not refilled while it waits, so it has
    // all 10 by the time the borrowed jobs running then finish (6 s), not later.
    const r = simulate(policy, [flood('flood', 100_000, 1000), { id: 'owner', arrivals: [{ at: 5_500, count: 10, serviceMs: 1000 }] }], 6_001);
    expect(r.tenants.owner!.admitted).toBe(10);
    expect(r.tenants.owner!.waitP99Ms).toBe(500);
  });

  it('keeps the owner at its reserve while the flood shares the rest', () => {
    const r = simulate(policy, [flood('flood', 100_000, 1000), flood('owner', 100_000, 1000, 5_000)], 15_000);
    // 0-5 s: flood alone (100); 5-15 s: 10 each per second.
    expect(r.tenants.owner!.admitted).toBe(100);
    expect(r.tenants.flood!.admitted).toBe(200);
  });

  it('limits borrowing to borrowLimit', () => {
    const limited = base({ kind: 'reserved', capacity: 20, tenants: { owner: { reserve: 10 }, flood: { borrowLimit: 4 } } });
    const r = simulate(limited, [flood('flood', 100_000, 1000)], 10_000);
    expect(r.tenants.flood!.admitted).toBe(4 * 10); // 4 at a time, 1 s each, 10 s
  });

  it('holds back reserve owed to a waiting owner from borrowers', () => {
    expect(admissible(policy, { tenant: 'flood', vt: 0, inflight: 9, headCost: 1, since: 0 }, 10, 10)).toBe('capacity');
    expect(admissible(policy, { tenant: 'flood', vt: 0, inflight: 9, headCost: 1, since: 0 }, 10, 0)).toBe('yes');
    expect(admissible(policy, { tenant: 'owner', vt: 0, inflight: 3, headCost: 1, since: 0 }, 19, 0)).toBe('yes');
    expect(tierOf(policy, 'owner', 3, 0, 0)).toBe(0);
    expect(tierOf(policy, 'owner', 10, 0, 0)).toBe(1);
  });
});

describe('max-limit and unlimited', () => {
  it('caps a tenant at its share of capacity even when alone', () => {
    const policy = base({ kind: 'max-limit', capacity: 20, tenants: { capped: { maxShare: 0.25 } } });
    const r = simulate(policy, [flood('capped', 100_000, 1000)], 10_000);
    expect(r.tenants.capped!.admitted).toBe(5 * 10);
  });

  it('admits everything at once when unlimited', () => {
    const r = simulate(base({ kind: 'unlimited', capacity: 1 }), [flood('a', 500), flood('b', 500)], 1000);
    expect(r.tenants.a!.admitted + r.tenants.b!.admitted).toBe(1000);
    expect(r.tenants.a!.waitP99Ms).toBe(0);
  });
});

describe("Jain's index", () => {
  it('is 1 for equal values and 1/n for one taker', () => {
    expect(jainIndex([3, 3, 3])).toBe(1);
    expect(jainIndex([1, 0, 0, 0])).toBe(0.25);
  });
});
