/** Policy contract input → the scheduler's Policy (src/core/policy.ts). */
import { PolicyInputSchema, type PolicyInput } from '../contracts/policies';
import type { Policy } from '../core/policy';

export function toPolicy(input: PolicyInput, downstreamCapacity: number): Policy {
  const p = PolicyInputSchema.parse(input);
  return {
    kind: p.kind,
    capacity: p.capacity ?? downstreamCapacity,
    defaultWeight: p.defaultWeight,
    defaultTier: p.defaultTier,
    ...(p.agingMs !== undefined ? { agingMs: p.agingMs } : {}),
    tenants: p.tenants,
  };
}
