/**
 * `/api/v1/breakers`: each downstream's circuit breaker (state, window, next probe, held jobs, recent
 * transitions), forced states (sticky until released; audited), and operators' hands on held jobs:
 * replay them despite the breaker, or drain them to the dead-letter queue (both audited, with counts).
 */
import { desc, eq } from 'drizzle-orm';
import { z } from 'zod';
import { TENANT_ID } from '../../core/classify';
import { windowStats, type Transition } from '../../core/breaker';
import { breakerTransitions } from '../../db/schema';
import { insertAudit } from '../../db/quotas';
import { TollgateError } from '../../errors';
import { deadLetterLeased, promoteLeased } from '../../queues/promote';
import { Tracing } from '../../observability/tracing';
import { requireGlobalReader } from '../auth';
import type { ApiContext } from '../context';
import { operatorOf } from '../operator';
import { defineRoute, ErrorBody, type RouteDef } from '../route';

const BreakerView = z
  .object({
    downstream: z.string(),
    enabled: z.boolean(),
    observeOnly: z.boolean(),
    state: z.enum(['closed', 'open', 'half-open']),
    forced: z.enum(['open', 'closed']).nullable().describe('A forced state is sticky until released'),
    generation: z.number(),
    trips: z.number().describe('Trips since it last closed (drives the open backoff)'),
    reason: z.string().optional(),
    openedAt: z.string().optional(),
    nextProbeAt: z.string().optional().describe('When an open breaker moves to half-open'),
    window: z.object({ calls: z.number(), failures: z.number(), slow: z.number(), failureRate: z.number() }),
    probes: z.object({ allowed: z.number(), succeeded: z.number() }),
    held: z.number().describe('Jobs waiting on the downstream while its breaker is not closed'),
    transitions: z.array(z.unknown()).optional().describe('The latest transitions, newest first'),
  })
  .meta({ id: 'Breaker' });

const HeldBody = z.strictObject({
  limit: z.number().int().min(1).max(100_000).default(1000),
  tenantId: z.string().regex(TENANT_ID).optional(),
});

export function breakerRoutes(ctx: ApiContext): RouteDef[] {
  const Downstream = z.strictObject({
    downstream: z.string().refine((d) => ctx.config.downstreams.some((x) => x.name === d), 'not a declared downstream'),
  });
  const retentionMs = ctx.config.retention.decisionSeconds * 1000;

  const view = async (downstream: string, withTransitions: boolean): Promise<z.infer<typeof BreakerView>> => {
    const d = ctx.config.downstreams.find((x) => x.name === downstream)!;
    const { state } = await ctx.breakers.read(downstream);
    const held = state.state !== 'closed' && !d.breaker.observeOnly ? await ctx.governance.waiting.total(downstream) : 0;
    const out: z.infer<typeof BreakerView> = {
      downstream,
      enabled: d.breaker.enabled,
      observeOnly: d.breaker.observeOnly,
      state: state.state,
      forced: state.forced,
      generation: state.gen,
      trips: state.trips,
      ...(state.reason ? { reason: state.reason } : {}),
      ...(state.openedAt !== undefined && state.state === 'open' ? { openedAt: new Date(state.openedAt).toISOString() } : {}),
      ...(state.state === 'open' && state.openUntil !== undefined && state.forced === null ? { nextProbeAt: new Date(state.openUntil).toISOString() } : {}),
      window: windowStats(state.window),
      probes: { allowed: d.breaker.halfOpenProbes, succeeded: state.probeSuccesses },
      held,
    };
    if (withTransitions) out.transitions = await recentTransitions(ctx, downstream);
    return out;
  };

  /** Leases held jobs out of the waiting place for a replay or a drain (see releaseHeld-1.lua). */
  const takeHeld = (downstream: string, mode: 'drain' | 'replay', body: z.infer<typeof HeldBody>, actor: string) =>
    ctx.governance.waiting.releaseHeld(downstream, mode, { limit: body.limit, ...(body.tenantId ? { tenantId: body.tenantId } : {}), leaseMs: ctx.config.scheduler.leaseMs, actor });

  const audited = async (op: ReturnType<typeof operatorOf>, action: string, downstream: string, before: unknown, after: unknown) => {
    await insertAudit(ctx.database.db, { actor: op.actor, action, resourceType: 'breaker', resourceId: downstream, before, after, reason: op.reason, ticket: op.ticket ?? null });
  };

  return [
    defineRoute({
      method: 'GET',
      url: '/api/v1/breakers',
      summary: 'Every downstream\'s circuit breaker: state, window stats, next probe time, held jobs',
      tag: 'breakers',
      access: 'read',
      responses: { 200: { description: 'Breakers', schema: z.object({ items: z.array(BreakerView) }) } },
      handler: async ({ auth }) => {
        requireGlobalReader(auth);
        return { items: await Promise.all(ctx.config.downstreams.map((d) => view(d.name, false))) };
      },
    }),
    defineRoute({
      method: 'GET',
      url: '/api/v1/breakers/:downstream',
      summary: 'One breaker, with its latest transitions',
      tag: 'breakers',
      access: 'read',
      params: Downstream,
      responses: { 200: { description: 'Breaker', schema: BreakerView } },
      handler: async ({ params, auth }) => {
        requireGlobalReader(auth);
        return view(params.downstream, true);
      },
    }),
    ...(['open', 'close', 'reset', 'release'] as const).map((action) =>
      defineRoute({
        method: 'POST',
        url: `/api/v1/breakers/:downstream/${action}`,
        summary: {
          open: 'Force the breaker open (sticky until released): the downstream gets nothing, its jobs are held',
          close: 'Force the breaker closed (sticky until released): failures are not counted',
          reset: 'Reset the breaker: closed, window cleared, trip count zero, no forced state',
          release: 'Release a forced state: the rules decide again (a released forced-open breaker probes at once)',
        }[action],
        tag: 'breakers',
        access: 'admin',
        postgres: true,
        params: Downstream,
        responses: { 200: { description: 'The breaker after the change', schema: BreakerView }, 409: { description: 'The breaker is disabled', schema: ErrorBody } },
        handler: async ({ params, auth, req }) => {
          const op = operatorOf(req, auth);
          if (!ctx.breakers.enabled(params.downstream)) throw new TollgateError('TG_ERR_CONFLICT', `the breaker of ${params.downstream} is disabled in the config`);
          // Before and after come from the one compare-and-set that made the change, not from separate reads.
          const { before, after } = await ctx.breakers.force(params.downstream, action, op.actor, op.reason);
          await audited(op, `breaker.${action}`, params.downstream, { state: before.state, forced: before.forced }, { state: after.state, forced: after.forced });
          return view(params.downstream, false);
        },
      }),
    ),
    defineRoute({
      method: 'GET',
      url: '/api/v1/breakers/:downstream/held',
      summary: 'Jobs held on the downstream (waiting while its breaker is not closed): counts of the tenants holding the most, and the first jobs',
      tag: 'breakers',
      access: 'read',
      params: Downstream,
      query: z.strictObject({
        tenantId: z.string().regex(TENANT_ID).optional(),
        limit: z.coerce.number().int().min(1).max(200).default(50).describe('Jobs listed in items'),
        tenants: z.coerce.number().int().min(1).max(1000).default(100).describe('Tenants listed in byTenant: the ones holding the most jobs'),
      }),
      responses: {
        200: {
          description: 'Held jobs',
          schema: z.object({
            state: z.enum(['closed', 'open', 'half-open']),
            total: z.number().describe('Held jobs of every tenant (of tenantId when given)'),
            tenantCount: z.number().describe('Tenants holding jobs (byTenant lists at most `tenants` of them)'),
            byTenant: z.record(z.string(), z.number()).describe('Held jobs of the tenants holding the most, largest first'),
            items: z.array(z.object({ id: z.string(), tenantId: z.string(), name: z.string(), since: z.string() })),
          }),
        },
      },
      handler: async ({ params, query, auth }) => {
        requireGlobalReader(auth);
        const { state } = await ctx.breakers.read(params.downstream);
        const counts = query.tenantId
          ? await ctx.governance.waiting.waitingOf(params.downstream, [query.tenantId])
          : await ctx.governance.waiting.byTenant(params.downstream);
        const entries = Object.entries(counts).filter(([, n]) => n > 0);
        const items = await ctx.governance.waiting.jobs(params.downstream, { limit: query.limit, ...(query.tenantId ? { tenantId: query.tenantId } : {}) });
        // Largest first, ties by tenant id: a stable page whatever the hash order.
        const top = entries.sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).slice(0, query.tenants);
        return {
          state: state.state,
          total: entries.reduce((a, [, n]) => a + n, 0),
          tenantCount: entries.length,
          byTenant: Object.fromEntries(query.tenantId && top.length === 0 ? [[query.tenantId, 0]] : top),
          items: items.map((j) => ({ id: j.id, tenantId: j.tenantId, name: j.name, since: new Date(j.since).toISOString() })),
        };
      },
    }),
    defineRoute({
      method: 'POST',
      url: '/api/v1/breakers/:downstream/held/replay',
      summary: 'Replay held jobs now, despite the breaker (within their quotas and the capacity); audited',
      tag: 'breakers',
      access: 'admin',
      postgres: true,
      params: Downstream,
      body: HeldBody,
      responses: { 200: { description: 'Counts', schema: z.object({ replayed: z.number(), skipped: z.number().describe('Flows a quota or the capacity held back') }) } },
      handler: async ({ params, body, auth, req }) => {
        const op = operatorOf(req, auth);
        const { taken, skipped } = await takeHeld(params.downstream, 'replay', body, op.actor);
        await promoteLeased(ctx.topology, ctx.governance, params.downstream, taken, {
          retentionMs,
          leaseMs: ctx.config.scheduler.leaseMs,
          tenantIdPath: ctx.config.tenant.idPath,
          metrics: ctx.metrics,
          tracing: new Tracing(ctx.config.telemetry),
        });
        await audited(op, 'breaker.held.replay', params.downstream, { limit: body.limit, tenantId: body.tenantId ?? null }, { replayed: taken.length, skipped });
        return { replayed: taken.length, skipped };
      },
    }),
    defineRoute({
      method: 'POST',
      url: '/api/v1/breakers/:downstream/held/drain',
      summary: 'Drain held jobs to the dead-letter queue (reason drained); audited',
      tag: 'breakers',
      access: 'admin',
      postgres: true,
      params: Downstream,
      body: HeldBody,
      responses: { 200: { description: 'Counts', schema: z.object({ drained: z.number() }) } },
      handler: async ({ params, body, auth, req }) => {
        const op = operatorOf(req, auth);
        const { taken } = await takeHeld(params.downstream, 'drain', body, op.actor);
        await deadLetterLeased(
          ctx.topology,
          ctx.governance,
          params.downstream,
          ctx.config.tenant.idPath,
          taken.map((t) => ({ ...t, message: `drained from the held jobs of ${params.downstream} by ${op.actor}`, code: 'TG_ERR_DRAINED' as const })),
        );
        await audited(op, 'breaker.held.drain', params.downstream, { limit: body.limit, tenantId: body.tenantId ?? null }, { drained: taken.length });
        return { drained: taken.length };
      },
    }),
  ];
}

/** A transition as the API shows it, whether read from Postgres or from the Redis outbox. */
function transitionView(t: { from: string; to: string; reason: string; gen: number; actor: string; at: Date | number; openUntil?: Date | number | null; counters: unknown }) {
  const iso = (v: Date | number) => new Date(v).toISOString();
  return { from: t.from, to: t.to, reason: t.reason, gen: t.gen, actor: t.actor, at: iso(t.at), ...(t.openUntil ? { openUntil: iso(t.openUntil) } : {}), counters: t.counters };
}

/** The latest transitions: from Postgres, plus any still in the Redis outbox (Postgres down or behind). */
async function recentTransitions(ctx: ApiContext, downstream: string): Promise<Array<ReturnType<typeof transitionView>>> {
  const pending = (await ctx.governance.breakers.outbox(200))
    .map((e) => JSON.parse(e) as Transition & { downstream: string })
    .filter((t) => t.downstream === downstream);
  let stored: Array<ReturnType<typeof transitionView>> = [];
  if (ctx.postgresReady()) {
    try {
      const rows = await ctx.database.db.select().from(breakerTransitions).where(eq(breakerTransitions.downstream, downstream)).orderBy(desc(breakerTransitions.gen)).limit(20);
      stored = rows.map((r) => transitionView({ ...r, from: r.fromState, to: r.toState }));
    } catch {
      stored = [];
    }
  }
  const seen = new Set(stored.map((t) => t.gen));
  const fromOutbox = pending.filter((t) => !seen.has(t.gen)).map(transitionView);
  return [...fromOutbox, ...stored].sort((a, b) => b.gen - a.gen).slice(0, 20);
}
