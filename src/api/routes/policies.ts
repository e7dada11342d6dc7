/**
 * `/api/v1/policies`: each downstream's allocation policy (who goes next when capacity binds), changes
 * to it (admin, audited), and a what-if simulation of a candidate policy on the current waiting work.
 * A policy has an ETag (its definition, source and update time; not the live effective capacity), and
 * PUT honours If-Match.
 */
import { z } from 'zod';
import { PolicyInputSchema, PolicyViewSchema } from '../../contracts/policies';
import { toPolicy } from '../../config/policies';
import type { Policy } from '../../core/policy';
import type { EffectivePolicy } from '../../governance/definitions';
import { simulateInSlices, type SimResult, type SimTenant } from '../../core/simulate';
import { TollgateError } from '../../errors';
import { requireGlobalReader } from '../auth';
import type { ApiContext } from '../context';
import { ETAG_HEADER, etagOf, IF_MATCH_HEADER, PRECONDITION_FAILED, preconditionOf, withETag } from '../etag';
import { operatorOf } from '../operator';
import { defineRoute, ErrorBody, type RouteDef } from '../route';

const SimulationSchema = z
  .object({
    downstream: z.string(),
    horizonMs: z.number(),
    serviceMs: z.number().describe('Service time assumed for each job'),
    waiting: z.record(z.string(), z.number()).describe('Waiting jobs per tenant now'),
    inFlight: z.record(z.string(), z.number()).describe('Cost units in flight per tenant now'),
    bounds: z
      .object({
        tenants: z.number().describe('Tenants with waiting or running work'),
        simulatedTenants: z.number().describe('The busiest tenants simulated (the work is bounded: admissions x tenants)'),
        omittedWaiting: z.number().describe('Waiting jobs of the tenants left out'),
        waitingPerTenantCap: z.number().describe('Waiting jobs simulated per tenant at most (the horizon cannot admit more); the rest count as still waiting'),
        maxSteps: z.number(),
        truncatedAtMs: z.number().optional().describe('Set when the work budget ran out before the horizon: the simulated time reached'),
      })
      .describe('How the simulation was bounded'),
    current: z.unknown().describe('The simulation under the policy in force'),
    candidate: z.unknown().describe('The simulation under the candidate policy'),
  })
  .meta({ id: 'PolicySimulation' });

/**
 * Bounds of a what-if simulation (each API call's work is bounded whatever the state): the scheduler
 * looks at every eligible tenant per admission, so the work is about admissions x tenants. The busiest
 * tenants are simulated (as many as SIM_MAX_STEPS allows for the admissions the horizon can hold), each
 * with no more waiting jobs than the horizon could admit (the rest could not change the result: they
 * are added back to `stillWaiting`); the run yields to the event loop every SIM_SLICE_STEPS steps and
 * stops at SIM_MAX_STEPS (`bounds.truncatedAtMs`). One simulation runs at a time per process.
 */
const SIM_MAX_STEPS = 3_000_000;
const SIM_SLICE_STEPS = 20_000;
const SIM_MIN_TENANTS = 50;
let simulating = false;

export function simulationPlan(
  waiting: Record<string, number>,
  inFlight: Record<string, number>,
  capacity: number,
  horizonMs: number,
  serviceMs: number,
): { tenants: SimTenant[]; capped: Record<string, number>; bounds: Record<string, number> } {
  const admissions = Math.ceil((capacity * horizonMs) / serviceMs) + capacity;
  const all = [...new Set([...Object.keys(waiting), ...Object.keys(inFlight)])];
  const busiest = all.sort((a, b) => (waiting[b] ?? 0) + (inFlight[b] ?? 0) - ((waiting[a] ?? 0) + (inFlight[a] ?? 0)) || (a < b ? -1 : 1));
  const maxTenants = Math.max(SIM_MIN_TENANTS, Math.floor(SIM_MAX_STEPS / admissions));
  const chosen = busiest.slice(0, maxTenants).sort();
  const capped: Record<string, number> = {};
  const tenants = chosen.map((id) => {
    const n = Math.min(waiting[id] ?? 0, admissions);
    if ((waiting[id] ?? 0) > n) capped[id] = (waiting[id] ?? 0) - n;
    return { id, arrivals: n > 0 ? [{ at: 0, count: n, serviceMs }] : [], ...(inFlight[id] ? { inflight: inFlight[id]! } : {}) };
  });
  const omitted = busiest.slice(maxTenants);
  return {
    tenants,
    capped,
    bounds: {
      tenants: all.length,
      simulatedTenants: chosen.length,
      omittedWaiting: omitted.reduce((sum, t) => sum + (waiting[t] ?? 0), 0),
      waitingPerTenantCap: admissions,
      maxSteps: SIM_MAX_STEPS,
    },
  };
}

/** Jobs left out of a simulation because the horizon could not admit them still wait at its end. */
function withCapped(r: SimResult, capped: Record<string, number>): SimResult {
  for (const [t, n] of Object.entries(capped)) if (r.tenants[t]) r.tenants[t]!.stillWaiting += n;
  return r;
}

export function policyTag(p: EffectivePolicy): string {
  return etagOf({ downstream: p.downstream, policy: p.policy, source: p.source, updatedAt: p.updatedAt?.toISOString() ?? null });
}

export function policyRoutes(ctx: ApiContext): RouteDef[] {
  const Downstream = z.strictObject({
    downstream: z.string().refine((d) => ctx.config.downstreams.some((x) => x.name === d), 'not a declared downstream'),
  });
  const view = async (d: EffectivePolicy) => ({
    downstream: d.downstream,
    kind: d.policy.kind,
    capacity: d.policy.capacity,
    effectiveCapacity: (await ctx.governance.mirror.effectiveCapacity(d.downstream)) ?? d.policy.capacity,
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
      method: 'GET',
      url: '/api/v1/policies/:downstream',
      summary: "A downstream's allocation policy in force, with its ETag",
      tag: 'policies',
      access: 'read',
      postgres: true,
      params: Downstream,
      responses: { 200: { description: 'The policy in force', schema: PolicyViewSchema, headers: ETAG_HEADER } },
      handler: async ({ params, auth, reply }) => {
        requireGlobalReader(auth);
        const p = (await ctx.definitions.effectivePolicies()).find((e) => e.downstream === params.downstream)!;
        return withETag(reply, policyTag(p), await view(p));
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
      headers: IF_MATCH_HEADER,
      body: PolicyInputSchema,
      responses: {
        200: { description: 'The policy in force', schema: PolicyViewSchema, headers: ETAG_HEADER },
        400: { description: 'Invalid policy', schema: ErrorBody },
        412: { description: PRECONDITION_FAILED, schema: ErrorBody },
      },
      handler: async ({ params, body, auth, req, reply }) => {
        const op = operatorOf(req, auth);
        const p = await ctx.definitions.putPolicy(params.downstream, body, op, preconditionOf(req, `the policy of downstream ${params.downstream}`, policyTag));
        return withETag(reply, policyTag(p), await view(p));
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
        const candidate = toPolicy(body.policy, ds.capacity);
        const [waiting, inFlight] = await Promise.all([ctx.governance.waiting.byTenant(ds.name), ctx.governance.reads.inFlightByTenant(ds.name)]);
        const plan = simulationPlan(waiting, inFlight, Math.max(current.capacity, candidate.capacity), body.horizonMs, body.serviceMs);
        if (simulating) throw new TollgateError('TG_ERR_UNAVAILABLE', 'another what-if simulation is running in this process; retry in a few seconds');
        simulating = true;
        try {
          const run = async (p: Policy) => withCapped(await simulateInSlices(p, plan.tenants, body.horizonMs, { maxOrder: 50, maxSteps: SIM_MAX_STEPS, sliceSteps: SIM_SLICE_STEPS }), plan.capped);
          const currentRun = await run(current);
          const candidateRun = await run(candidate);
          return {
            downstream: ds.name,
            horizonMs: body.horizonMs,
            serviceMs: body.serviceMs,
            waiting,
            inFlight,
            bounds: {
              ...plan.bounds,
              ...(currentRun.truncatedAtMs !== undefined || candidateRun.truncatedAtMs !== undefined
                ? { truncatedAtMs: Math.min(currentRun.truncatedAtMs ?? body.horizonMs, candidateRun.truncatedAtMs ?? body.horizonMs) }
                : {}),
            },
            current: currentRun,
            candidate: candidateRun,
          };
        } finally {
          simulating = false;
        }
      },
    }),
  ];
}
