/**
 * `/api/v1/alerts`, `/api/v1/alert-rules`, `/api/v1/notifications`: alerts opened and resolved
 * (a tenant token sees its own tenant's), acknowledgements, per-tenant alert rules (audited like
 * quotas) and the notification outbox with its dead deliveries.
 */
import { z } from 'zod';
import { AlertKindSchema, AlertRuleInputSchema, AlertRuleSchema, AlertSchema, NotificationSchema } from '../../contracts/alerts';
import { TENANT_ID } from '../../core/classify';
import { effectiveRule, type TenantAlertRule } from '../../core/alerts';
import {
  ackAlert,
  alertView,
  allAlertRules,
  deleteAlertRule,
  deliveryOf,
  findAlert,
  findAlertRule,
  findNotification,
  listAlerts,
  listNotifications,
  notificationView,
  retryDead,
  upsertAlertRule,
  type AlertRuleRow,
} from '../../db/alerts';
import { insertAudit } from '../../db/quotas';
import { TollgateError } from '../../errors';
import { requireGlobalReader } from '../auth';
import type { ApiContext } from '../context';
import { operatorOf } from '../operator';
import { decodeCursor, encodeCursor, PageQuery } from '../pagination';
import { defineRoute, ErrorBody, type RouteDef } from '../route';

const IdParams = z.strictObject({ id: z.coerce.number().int().min(1).max(Number.MAX_SAFE_INTEGER) });
const TenantParams = z.strictObject({ tenantId: z.string().regex(TENANT_ID, 'must be a tenant id') });

/** Newest first: the cursor is the last id returned, the next page holds smaller ids. */
function newestFirst<T extends { id: number }, V>(rows: T[], limit: number, view: (r: T) => V): { items: V[]; nextCursor?: string } {
  const items = rows.slice(0, limit);
  return { items: items.map(view), ...(rows.length > limit ? { nextCursor: encodeCursor(items[items.length - 1]!.id) } : {}) };
}

export function alertRoutes(ctx: ApiContext): RouteDef[] {
  const db = () => ctx.database.db;
  const defaults = () => ({
    periodThresholds: ctx.config.alerts.periodThresholds,
    saturationForMs: ctx.config.alerts.saturationForMs,
    backlogPercent: ctx.config.alerts.backlogPercent,
  });
  const ruleView = (tenantId: string, row: AlertRuleRow | undefined): z.infer<typeof AlertRuleSchema> => {
    const own = (row?.rule ?? {}) as Partial<TenantAlertRule>;
    return {
      tenantId,
      ...effectiveRule(defaults(), own),
      overrides: Object.keys(own).sort(),
      ...(row ? { updatedAt: row.updatedAt.toISOString(), updatedBy: row.updatedBy } : {}),
    };
  };
  const withDelivery = async (rows: Awaited<ReturnType<typeof listAlerts>>) => {
    const delivery = await deliveryOf(db(), rows.map((r) => r.id));
    return (r: (typeof rows)[number]) => alertView(r, delivery.get(r.id));
  };

  return [
    defineRoute({
      method: 'GET',
      url: '/api/v1/alerts',
      summary: 'Alerts, newest first (filter by tenant, downstream, kind, state), paginated; a tenant token sees its own',
      tag: 'alerts',
      access: 'read',
      postgres: true,
      query: z.strictObject({
        tenantId: z.string().regex(TENANT_ID).optional(),
        downstream: z.string().min(1).max(63).optional(),
        kind: AlertKindSchema.optional(),
        state: z.enum(['open', 'resolved']).optional(),
        ...PageQuery,
      }),
      responses: { 200: { description: 'A page of alerts', schema: z.object({ items: z.array(AlertSchema), nextCursor: z.string().optional() }) } },
      handler: async ({ query, auth }) => {
        if (auth.tenantId !== undefined && query.tenantId !== undefined && query.tenantId !== auth.tenantId) {
          throw new TollgateError('TG_ERR_FORBIDDEN', `this token sees tenant ${auth.tenantId} only`);
        }
        const tenantId = auth.tenantId ?? query.tenantId;
        const rows = await listAlerts(db(), {
          ...(tenantId !== undefined ? { tenantId } : {}),
          ...(query.downstream !== undefined ? { downstream: query.downstream } : {}),
          ...(query.kind !== undefined ? { kind: query.kind } : {}),
          ...(query.state !== undefined ? { state: query.state } : {}),
          ...(query.cursor !== undefined ? { beforeId: decodeCursor(query.cursor) } : {}),
          limit: query.limit + 1,
        });
        return newestFirst(rows, query.limit, await withDelivery(rows));
      },
    }),
    defineRoute({
      method: 'GET',
      url: '/api/v1/alerts/:id',
      summary: 'One alert, with the delivery state of its notifications',
      tag: 'alerts',
      access: 'read',
      postgres: true,
      params: IdParams,
      responses: { 200: { description: 'The alert', schema: AlertSchema }, 404: { description: 'No such alert', schema: ErrorBody } },
      handler: async ({ params, auth }) => {
        const row = await findAlert(db(), params.id);
        if (!row || (auth.tenantId !== undefined && row.tenantId !== auth.tenantId)) throw new TollgateError('TG_ERR_NOT_FOUND', `no alert ${params.id}`);
        return (await withDelivery([row]))(row);
      },
    }),
    defineRoute({
      method: 'POST',
      url: '/api/v1/alerts/:id/ack',
      summary: 'Acknowledge an alert (idempotent: the first acknowledgement is kept); audited',
      tag: 'alerts',
      access: 'admin',
      postgres: true,
      params: IdParams,
      responses: { 200: { description: 'The alert', schema: AlertSchema }, 404: { description: 'No such alert', schema: ErrorBody } },
      handler: async ({ params, auth, req }) => {
        const op = operatorOf(req, auth);
        const row = await db().transaction(async (tx) => {
          const before = await findAlert(tx, params.id);
          if (!before) throw new TollgateError('TG_ERR_NOT_FOUND', `no alert ${params.id}`);
          const after = (await ackAlert(tx, params.id, op.actor))!;
          if (!before.ackedAt) {
            await insertAudit(tx, {
              actor: op.actor,
              action: 'alert.ack',
              resourceType: 'alert',
              resourceId: String(params.id),
              tenantId: before.tenantId,
              before: { acked: null },
              after: { acked: { at: after.ackedAt, by: after.ackedBy } },
              reason: op.reason,
              ticket: op.ticket ?? null,
            });
          }
          return after;
        });
        return (await withDelivery([row]))(row);
      },
    }),
    defineRoute({
      method: 'GET',
      url: '/api/v1/alert-rules',
      summary: 'Tenants with alert rules of their own, and the config defaults every other tenant follows',
      tag: 'alerts',
      access: 'read',
      postgres: true,
      responses: {
        200: {
          description: 'Rules',
          schema: z.object({
            defaults: z.object({ periodThresholds: z.array(z.number()), saturationForMs: z.number().nullable(), backlogPercent: z.number().nullable(), rearmMarginPercent: z.number() }),
            items: z.array(AlertRuleSchema),
          }),
        },
      },
      handler: async ({ auth }) => {
        requireGlobalReader(auth);
        const rows = await allAlertRules(db());
        return { defaults: { ...defaults(), rearmMarginPercent: ctx.config.alerts.rearmMarginPercent }, items: rows.map((r) => ruleView(r.tenantId, r)) };
      },
    }),
    defineRoute({
      method: 'GET',
      url: '/api/v1/alert-rules/:tenantId',
      summary: "A tenant's alert rule in force (its own fields over the config defaults)",
      tag: 'alerts',
      access: 'read',
      postgres: true,
      params: TenantParams,
      responses: { 200: { description: 'The rule in force', schema: AlertRuleSchema } },
      handler: async ({ params, auth }) => {
        if (auth.tenantId !== undefined && auth.tenantId !== params.tenantId) throw new TollgateError('TG_ERR_NOT_FOUND', `no tenant ${params.tenantId}`);
        return ruleView(params.tenantId, await findAlertRule(db(), params.tenantId));
      },
    }),
    defineRoute({
      method: 'PUT',
      url: '/api/v1/alert-rules/:tenantId',
      summary: "Set a tenant's own alert rule (replaces it; absent fields follow the config); audited",
      tag: 'alerts',
      access: 'admin',
      postgres: true,
      params: TenantParams,
      body: AlertRuleInputSchema,
      responses: { 200: { description: 'The rule in force', schema: AlertRuleSchema }, 400: { description: 'Invalid body', schema: ErrorBody } },
      handler: async ({ params, body, auth, req }) => {
        const op = operatorOf(req, auth);
        const rule = Object.fromEntries(Object.entries(body).filter(([, v]) => v !== undefined));
        const row = await db().transaction(async (tx) => {
          const before = await findAlertRule(tx, params.tenantId);
          const after = await upsertAlertRule(tx, params.tenantId, rule, op.actor);
          await insertAudit(tx, {
            actor: op.actor,
            action: before ? 'alert-rule.update' : 'alert-rule.create',
            resourceType: 'alert-rule',
            resourceId: params.tenantId,
            tenantId: params.tenantId,
            before: before?.rule ?? null,
            after: rule,
            reason: op.reason,
            ticket: op.ticket ?? null,
          });
          return after;
        });
        return ruleView(params.tenantId, row);
      },
    }),
    defineRoute({
      method: 'DELETE',
      url: '/api/v1/alert-rules/:tenantId',
      summary: "Remove a tenant's own alert rule: it follows the config defaults again; audited",
      tag: 'alerts',
      access: 'admin',
      postgres: true,
      params: TenantParams,
      responses: { 200: { description: 'The rule in force now', schema: AlertRuleSchema }, 404: { description: 'The tenant has no rule of its own', schema: ErrorBody } },
      handler: async ({ params, auth, req }) => {
        const op = operatorOf(req, auth);
        await db().transaction(async (tx) => {
          const removed = await deleteAlertRule(tx, params.tenantId);
          if (!removed) throw new TollgateError('TG_ERR_NOT_FOUND', `tenant ${params.tenantId} has no alert rule of its own`);
          await insertAudit(tx, {
            actor: op.actor,
            action: 'alert-rule.delete',
            resourceType: 'alert-rule',
            resourceId: params.tenantId,
            tenantId: params.tenantId,
            before: removed.rule,
            after: null,
            reason: op.reason,
            ticket: op.ticket ?? null,
          });
        });
        return ruleView(params.tenantId, undefined);
      },
    }),
    defineRoute({
      method: 'GET',
      url: '/api/v1/notifications',
      summary: 'The notification outbox, newest first (filter by state, alert, target), paginated: dead deliveries are here',
      tag: 'alerts',
      access: 'read',
      postgres: true,
      query: z.strictObject({
        state: z.enum(['pending', 'delivered', 'dead']).optional(),
        alertId: z.coerce.number().int().min(1).optional(),
        target: z.string().min(1).max(200).optional(),
        ...PageQuery,
      }),
      responses: { 200: { description: 'A page of notifications', schema: z.object({ items: z.array(NotificationSchema), nextCursor: z.string().optional() }) } },
      handler: async ({ query, auth }) => {
        requireGlobalReader(auth);
        const rows = await listNotifications(db(), {
          ...(query.state !== undefined ? { state: query.state } : {}),
          ...(query.alertId !== undefined ? { alertId: query.alertId } : {}),
          ...(query.target !== undefined ? { target: query.target } : {}),
          ...(query.cursor !== undefined ? { beforeId: decodeCursor(query.cursor) } : {}),
          limit: query.limit + 1,
        });
        return newestFirst(rows, query.limit, notificationView);
      },
    }),
    defineRoute({
      method: 'POST',
      url: '/api/v1/notifications/:id/retry',
      summary: 'Put a dead notification back in line (attempts from zero, same event id); audited',
      tag: 'alerts',
      access: 'admin',
      postgres: true,
      params: IdParams,
      responses: { 200: { description: 'The notification', schema: NotificationSchema }, 409: { description: 'The notification is not dead', schema: ErrorBody }, 404: { description: 'No such notification', schema: ErrorBody } },
      handler: async ({ params, auth, req }) => {
        const op = operatorOf(req, auth);
        const row = await db().transaction(async (tx) => {
          const r = await retryDead(tx, params.id);
          if (!r) {
            const exists = await findNotification(tx, params.id);
            if (!exists) throw new TollgateError('TG_ERR_NOT_FOUND', `no notification ${params.id}`);
            throw new TollgateError('TG_ERR_CONFLICT', `notification ${params.id} is ${exists.state}, not dead`);
          }
          await insertAudit(tx, {
            actor: op.actor,
            action: 'notification.retry',
            resourceType: 'notification',
            resourceId: String(params.id),
            before: { state: 'dead' },
            after: { state: 'pending' },
            reason: op.reason,
            ticket: op.ticket ?? null,
          });
          return r;
        });
        return notificationView(row);
      },
    }),
  ];
}
