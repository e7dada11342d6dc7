/**
 * The flow of each downstream over the last 15 minutes, for the dashboard's charts: admitted and
 * dead-lettered per sampling interval, waiting and in flight, the effective capacity (adaptive capacity
 * cuts show here), and how fairly the admissions went to the tenants that wanted them (Jain's index).
 */
import { z } from 'zod';
import { requireGlobalReader } from '../auth';
import type { ApiContext } from '../context';
import { defineRoute, type RouteDef } from '../route';

const Point = z.object({
  at: z.string(),
  admitted: z.number().describe('Admitted since the previous point'),
  deadLettered: z.number().describe('Dead-lettered since the previous point'),
  waiting: z.number(),
  inFlight: z.number(),
  capacity: z.number().describe('Effective capacity (the adaptive one when it is on)'),
  breaker: z.object({ state: z.string(), calls: z.number(), failureRate: z.number() }).optional().describe("The breaker's window then"),
});
const FlowView = z
  .object({
    items: z.array(
      z.object({
        downstream: z.string(),
        points: z.array(Point),
        fairness: z.object({
          jain: z.number().optional().describe("Jain's index of the admissions of the tenants that waited or were admitted in the last 15 minutes (1 = equal)"),
          tenants: z.number(),
        }),
      }),
    ),
  })
  .meta({ id: 'Flow' });

/** Jain's fairness index of `xs` (1: all equal; 1/n: one took everything). */
export function jain(xs: readonly number[]): number | undefined {
  if (xs.length === 0) return undefined;
  const sum = xs.reduce((a, b) => a + b, 0);
  const squares = xs.reduce((a, b) => a + b * b, 0);
  return squares === 0 ? 1 : (sum * sum) / (xs.length * squares);
}

export function flowRoutes(ctx: ApiContext): RouteDef[] {
  return [
    defineRoute({
      method: 'GET',
      url: '/api/v1/flow',
      summary: 'Each downstream over the last 15 minutes: admitted, dead-lettered, waiting, in flight, effective capacity, fairness',
      tag: 'flow',
      access: 'read',
      responses: { 200: { description: 'Flow per downstream', schema: FlowView } },
      handler: async ({ auth }) => {
        requireGlobalReader(auth);
        const items = await Promise.all(
          ctx.config.downstreams.map(async (d) => {
            const [samples, minutes, waiting] = await Promise.all([
              ctx.governance.reads.flowSamples(d.name),
              ctx.governance.reads.admissionsByMinute(d.name, 15),
              ctx.governance.waiting.byTenant(d.name),
            ]);
            const ordered = [...samples].reverse();
            // The first point has no interval before it: its counts are 0 (its levels are what they were).
            const points = ordered.map((s, i) => {
              const prev = ordered[i - 1] ?? s;
              return {
                at: new Date(s.at).toISOString(),
                // A counter that went down was restored or reset: count from zero again.
                admitted: Math.max(0, s.admitted - prev.admitted),
                deadLettered: Math.max(0, s.deadLettered - prev.deadLettered),
                waiting: s.waiting,
                inFlight: s.inFlight,
                capacity: s.capacity,
                ...(s.breaker ? { breaker: s.breaker } : {}),
              };
            });
            const byTenant = new Map<string, number>();
            for (const m of minutes) for (const [t, n] of Object.entries(m.byTenant)) byTenant.set(t, (byTenant.get(t) ?? 0) + n);
            for (const [t, n] of Object.entries(waiting)) if (n > 0 && !byTenant.has(t)) byTenant.set(t, 0);
            const j = jain([...byTenant.values()]);
            return { downstream: d.name, points, fairness: { ...(j !== undefined ? { jain: Math.round(j * 1000) / 1000 } : {}), tenants: byTenant.size } };
          }),
        );
        return { items };
      },
    }),
  ];
}
