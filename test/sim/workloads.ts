/**
 * Scripted workloads for the allocation policies, replayed by the deterministic simulator
 * (src/core/simulate.ts). `npm run simulate` prints each one's allocation.
 */
import type { Policy } from '../../src/core/policy';
import type { SimTenant } from '../../src/core/simulate';

const policy = (over: Partial<Policy>): Policy => ({ kind: 'proportional', capacity: 20, defaultWeight: 1, defaultTier: 1, tenants: {}, ...over });
const flood = (id: string, opts: { at?: number; count?: number; serviceMs?: number } = {}): SimTenant => ({
  id,
  arrivals: [{ at: opts.at ?? 0, count: opts.count ?? 1_000_000, serviceMs: opts.serviceMs ?? 100 }],
});
const trickle = (id: string, every: number, from: number, count: number): SimTenant => ({
  id,
  arrivals: Array.from({ length: count }, (_, i) => ({ at: from + i * every, count: 1, serviceMs: 100 })),
});

export interface Workload {
  name: string;
  what: string;
  policy: Policy;
  tenants: SimTenant[];
  durationMs: number;
}

export const WORKLOADS: Workload[] = [
  {
    name: 'proportional 1:2:5',
    what: 'three saturated tenants weighted 1, 2 and 5 share capacity 20 for 30 s',
    policy: policy({ tenants: { a: { weight: 1 }, b: { weight: 2 }, c: { weight: 5 } } }),
    tenants: [flood('a'), flood('b'), flood('c')],
    durationMs: 30_000,
  },
  {
    name: 'proportional, noisy neighbour',
    what: 'one tenant floods; a quiet one sends a job every 300 ms',
    policy: policy({}),
    tenants: [flood('noisy'), trickle('quiet', 300, 500, 90)],
    durationMs: 30_000,
  },
  {
    name: 'priority tiers',
    what: 'gold (tier 0) and bronze (tier 2) both saturate; bronze gets nothing',
    policy: policy({ kind: 'priority', tenants: { gold: { tier: 0 }, bronze: { tier: 2 } } }),
    tenants: [flood('gold'), flood('bronze')],
    durationMs: 10_000,
  },
  {
    name: 'priority tiers with aging 2 s',
    what: 'as above, but a tenant eligible for 2 s without service jumps ahead',
    policy: policy({ kind: 'priority', agingMs: 2000, tenants: { gold: { tier: 0 }, bronze: { tier: 2 } } }),
    tenants: [flood('gold'), flood('bronze')],
    durationMs: 10_000,
  },
  {
    name: 'reserved 10 of 20, reclaimed',
    what: 'owner reserves 10, idles 5 s while a flood borrows everything, then saturates',
    policy: policy({ kind: 'reserved', tenants: { owner: { reserve: 10 } } }),
    tenants: [flood('flood', { serviceMs: 1000 }), flood('owner', { at: 5000, serviceMs: 1000 })],
    durationMs: 15_000,
  },
  {
    name: 'max-limit 25 %',
    what: 'a tenant capped at 25 % of capacity 20, alone',
    policy: policy({ kind: 'max-limit', tenants: { capped: { maxShare: 0.25 } } }),
    tenants: [flood('capped', { serviceMs: 1000 })],
    durationMs: 10_000,
  },
];
