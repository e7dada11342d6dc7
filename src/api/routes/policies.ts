/**
 * `/api/v1/policies`: each downstream's allocation policy (who goes next when capacity binds), changes
 * to it (admin, audited), and a what-if simulation of a candidate policy on the current waiting work.
 */
import { z } from 'zod';
import { PolicyInputSchema, PolicyViewSchema } from '../../contracts/policies';
import { toPolicy } from '../../config/policies';
import type { Policy } from '../../core/policy';
import { simulate, type SimResult } from '../../core/simulate';
import { TollgateError } from '../../errors';
import { requireGlobalReader } from '../auth';
import type { ApiContext } from '../context';
import { operatorOf } from '../operator';
import { defineRoute, ErrorBody, type RouteDef } from '../route';

const SimulationSchema = z
  .object({
    downstream: z.string(),
    horizonMs: z.number(),
    serviceMs: z.number().describe('Service time assumed for each job'),
    waiting: z.record(z.string(), z.number()).describe('Waiting jobs per tenant now'),
    inFlight: z.record(z.string(), z.number()).describe('Cost units in flight per tenant now'),
    current: z.unknown().describe('The simulation under the policy in force'),
    candidate: z.unknown().describe('The simulation under the candidate policy'),
  })
  .meta({ id: 'PolicySimulation' });

export function policyRoutes(ctx: ApiContext): RouteDef[] {
  const Downstream = z.strictObject({
    downstream: z.string().refine((d) => ctx.config.downstreams.some((x) => x.name === d), 'not a declared downstream'),
  });
  const view = async (d: { downstream: string; policy: Policy; source: 'config' | 'runtime'; updatedAt?: Date }) => ({
    downstream: d.downstream,
    kind: d.policy.kind,
    capacity: d.policy.capacity,
    effectiveCapacity: (await ctx.governance.effectiveCapacity(d.downstream)) ?? d.policy.capacity,
    defaultWeight: d.policy.defaultWeight,
    defaultTier: d.policy.defaultTier,
    ...(d.policy.agingMs !== undefined ? { agingMs: d.policy.agingMs } : {}),
    tenants: d.policy.tenants,
    source: d.source,
    ...(d.updatedAt ? { updatedAt: d.updatedAt.toISOString() } : {}),
  });

  return [
    defineRoute({
      method: 'GET',
      url: '/api/v1/policies',
      summary: 'The allocation policy in force for each downstream, and its effective capacity',
      tag: 'policies',
      access: 'read',
      postgres: true,
      responses: { 200: { description: 'Policies', schema: z.object({ items: z.array(PolicyViewSchema) }) } },
      handler: async ({ auth }) => {
        requireGlobalReader(auth);
        return { items: await Promise.all((await ctx.definitions.effectivePolicies()).map(view)) };
      },
    }),
    defineRoute({
      method: 'PUT',
      url: '/api/v1/policies/:downstream',
      summary: "Replace a downstream's allocation policy (overrides the config file; audited)",
      tag: 'policies',
      access: 'admin',
      postgres: true,
      params: Downstream,
      body: PolicyInputSchema,
      responses: { 200: { description: 'The policy in force', schema: PolicyViewSchema }, 400: { description: 'Invalid policy', schema: ErrorBody } },
      handler: async ({ params, body, auth, req }) => {
        const policy = await ctx.definitions.putPolicy(params.downstream, body, operatorOf(req, auth));
        return view({ downstream: params.downstream, policy, source: 'runtime', updatedAt: new Date() });
      },
    }),
    defineRoute({
      method: 'POST',
      url: '/api/v1/policies/:downstream/simulate',
      summary: 'What-if: the shares and waits a candidate policy would give on the current waiting work, next to the policy in force (no side effects)',
      tag: 'policies',
      access: 'read',
      postgres: true,
      params: Downstream,
      body: z.strictObject({
        policy: PolicyInputSchema,
        horizonMs: z.number().int().min(1000).max(86_400_000).default(60_000),
        serviceMs: z.number().int().min(1).max(3_600_000).default(1000).describe('How long each job runs, assumed'),
      }),
      responses: { 200: { description: 'Both simulations', schema: SimulationSchema } },
      handler: async ({ params, body, auth }) => {
        requireGlobalReader(auth);
        const ds = ctx.config.downstreams.find((d) => d.name === params.downstream)!;
        const current = (await ctx.definitions.effectivePolicies()).find((p) => p.downstream === ds.name)!.policy;
        const waiting = await ctx.governance.waitingByTenant(ds.name);
        const inFlight = await ctx.governance.inFlightByTenant(ds.name);
        const tenantIds = [...new Set([...Object.keys(waiting), ...Object.keys(inFlight)])].sort();
        if (tenantIds.length > 10_000) throw new TollgateError('TG_ERR_VALIDATION', 'too many tenants to simulate here; use npm run simulate');
        const tenants = tenantIds.map((id) => ({
          id,
          arrivals: waiting[id] ? [{ at: 0, count: waiting[id]!, serviceMs: body.serviceMs }] : [],
          ...(inFlight[id] ? { inflight: inFlight[id]! } : {}),
        }));
        const run = (p: Policy): SimResult => simulate(p, tenants, body.horizonMs, 50);
        return {
          downstream: ds.name,
          horizonMs: body.horizonMs,
          serviceMs: body.serviceMs,
          waiting,
          inFlight,
          current: run(current),
          candidate: run(toPolicy(body.policy, ds.capacity)),
        };
      },
    }),
  ];
}
