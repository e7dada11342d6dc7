/** The allocation policy contract (zod): config file, API bodies and responses. */
import { z } from 'zod';
import { MAX_CAPACITY, MAX_DURATION_MS, MAX_WEIGHT, MIN_WEIGHT } from '../core/limits';
import { POLICY_KINDS } from '../core/policy';

/** A share weight: from 0.001 to a million (src/core/limits.ts). */
const weight = z.number().min(MIN_WEIGHT).max(MAX_WEIGHT);

const TENANT = /^[A-Za-z0-9._:@-]{1,128}$/;

export const TenantPolicySchema = z.strictObject({
  weight: weight.optional().describe(`Share weight (proportional; fair share inside a tier), ${MIN_WEIGHT} to ${MAX_WEIGHT}`),
  tier: z.number().int().min(0).max(9).optional().describe('Priority tier, 0 (first) to 9 (priority policy)'),
  reserve: z.number().int().min(0).max(MAX_CAPACITY).optional().describe('Capacity units always available to this tenant (reserved policy)'),
  borrowLimit: z.number().int().min(0).max(MAX_CAPACITY).optional().describe('Units it may use beyond its reserve (reserved policy); default unbounded'),
  maxShare: z.number().gt(0).max(1).optional().describe('Hard cap as a share of capacity (max-limit policy)'),
});

export const PolicyInputSchema = z
  .strictObject({
    kind: z.enum(POLICY_KINDS).describe('unlimited | proportional | priority | reserved | max-limit'),
    capacity: z.number().int().min(1).max(MAX_CAPACITY).optional().describe("Max admitted, unfinished cost units (default: the downstream's capacity)"),
    defaultWeight: weight.default(1),
    defaultTier: z.number().int().min(0).max(9).default(1),
    agingMs: z.number().int().min(1).max(MAX_DURATION_MS).optional().describe('priority: a tenant eligible this long without service is served before any tier'),
    tenants: z
      .record(z.string().regex(TENANT, 'tenant ids are 1-128 characters from [A-Za-z0-9._:@-]'), TenantPolicySchema)
      .default({}),
  })
  .superRefine((p, ctx) => {
    if (p.kind === 'reserved' && p.capacity !== undefined) {
      const total = Object.values(p.tenants).reduce((s, t) => s + (t.reserve ?? 0), 0);
      if (total > p.capacity) ctx.addIssue({ code: 'custom', path: ['tenants'], message: `reserves add up to ${total}, over the capacity of ${p.capacity}` });
    }
    if (p.agingMs !== undefined && p.kind !== 'priority') ctx.addIssue({ code: 'custom', path: ['agingMs'], message: 'agingMs applies to the priority policy only' });
  });

export type PolicyInput = z.input<typeof PolicyInputSchema>;
export type PolicyParsed = z.output<typeof PolicyInputSchema>;

export const PolicyViewSchema = z
  .object({
    downstream: z.string(),
    kind: z.enum(POLICY_KINDS),
    capacity: z.number().describe('Configured capacity'),
    effectiveCapacity: z.number().describe('Capacity in force now (adaptive capacity may lower it)'),
    defaultWeight: z.number(),
    defaultTier: z.number(),
    agingMs: z.number().optional(),
    tenants: z.record(z.string(), TenantPolicySchema),
    source: z.enum(['config', 'runtime']).describe('runtime: set over the API, overriding the config file'),
    updatedAt: z.string().optional(),
  })
  .meta({ id: 'Policy' });
