/**
 * Alerts, the notification outbox and per-tenant alert rules in Postgres (drizzle). The writes that
 * must happen once (an alert opened, its notifications queued) sit in the caller's transaction.
 */
import { and, desc, eq, inArray, isNull, isNotNull, lt, sql, type SQL } from 'drizzle-orm';
import type { AlertView, EventType, NotificationEvent } from '../contracts/alerts';
import { targetWants, type AlertKind } from '../core/alerts';
import { alertRelay, alertRules, alerts, notifications } from './schema';
import type { Tx } from './quotas';

export type AlertRow = typeof alerts.$inferSelect;
export type NotificationRow = typeof notifications.$inferSelect;
export type AlertRuleRow = typeof alertRules.$inferSelect;

export interface Delivery {
  pending: number;
  delivered: number;
  dead: number;
}

export function alertView(r: AlertRow, delivery?: Delivery): AlertView {
  return {
    id: r.id,
    kind: r.kind as AlertKind,
    state: r.resolvedAt ? 'resolved' : 'open',
    ...(r.tenantId !== null ? { tenantId: r.tenantId } : {}),
    ...(r.downstream !== null ? { downstream: r.downstream } : {}),
    ...(r.threshold !== null ? { threshold: r.threshold } : {}),
    value: r.value,
    ...(r.resolvedValue !== null ? { resolvedValue: r.resolvedValue } : {}),
    ...(r.period && r.windowStart && r.windowEnd
      ? { window: { period: r.period, start: r.windowStart.toISOString(), end: r.windowEnd.toISOString() } }
      : {}),
    detail: r.detail,
    openedAt: r.openedAt.toISOString(),
    ...(r.resolvedAt ? { resolvedAt: r.resolvedAt.toISOString() } : {}),
    ...(r.ackedAt && r.ackedBy ? { acked: { at: r.ackedAt.toISOString(), by: r.ackedBy } } : {}),
    ...(delivery ? { delivery } : {}),
  };
}

/** An alert event as the relay or the breaker history hands it over. */
export interface AlertEventInput {
  /** Stable id of the event: the webhook-id and the queue job id. */
  eventId: string;
  /** What caused it (a Redis alert event id, a breaker transition); unique per opened alert. */
  sourceEvent: string;
  type: 'opened' | 'changed' | 'resolved';
  key: string;
  kind: AlertKind;
  tenantId?: string;
  downstream?: string;
  threshold?: number;
  value: number;
  window?: { period: 'hour' | 'day' | 'month'; start: number; end: number };
  detail: Record<string, unknown>;
  at: number;
}

export interface Target {
  /** `webhook:<name>` or `queue:<name>`. */
  name: string;
  kinds?: readonly string[];
  tenants?: readonly string[];
}

/**
 * Records one alert event and queues its notifications, in the caller's transaction. Returns the
 * alert and the event type recorded, or undefined when the event changes nothing (the alert was
 * already open, or is no longer open).
 */
export async function recordAlertEvent(
  tx: Tx,
  e: AlertEventInput,
  targets: readonly Target[],
): Promise<{ alert: AlertRow; type: EventType; notifications: number } | undefined> {
  let row: AlertRow | undefined;
  let type: EventType;
  const at = new Date(e.at);
  if (e.type === 'resolved') {
    row = (
      await tx
        .update(alerts)
        .set({ resolvedAt: at, resolvedValue: e.value, detail: sql`${alerts.detail} || ${JSON.stringify(e.detail)}::jsonb` })
        .where(and(eq(alerts.alertKey, e.key), isNull(alerts.resolvedAt)))
        .returning()
    )[0];
    type = 'alert.resolved';
  } else {
    if (e.type === 'changed') {
      row = (
        await tx
          .update(alerts)
          .set({ detail: sql`${alerts.detail} || ${JSON.stringify(e.detail)}::jsonb` })
          .where(and(eq(alerts.alertKey, e.key), isNull(alerts.resolvedAt)))
          .returning()
      )[0];
      type = 'alert.changed';
    }
    if (!row) {
      row = (
        await tx
          .insert(alerts)
          .values({
            sourceEvent: e.sourceEvent,
            alertKey: e.key,
            kind: e.kind,
            tenantId: e.tenantId ?? null,
            downstream: e.downstream ?? null,
            threshold: e.threshold ?? null,
            value: e.value,
            period: e.window?.period ?? null,
            windowStart: e.window ? new Date(e.window.start) : null,
            windowEnd: e.window ? new Date(e.window.end) : null,
            detail: e.detail,
            openedAt: at,
          })
          .onConflictDoNothing()
          .returning()
      )[0];
      type = 'alert.opened';
    }
  }
  if (!row) return undefined;
  const body: NotificationEvent = { id: e.eventId, type: type!, timestamp: at.toISOString(), data: { alert: alertView(row) } };
  const wanted = targets.filter((t) => targetWants(t, row!.kind, row!.tenantId ?? undefined));
  if (wanted.length > 0) {
    await tx
      .insert(notifications)
      .values(wanted.map((t) => ({ eventId: e.eventId, alertId: row!.id, type: type!, target: t.name, body })))
      .onConflictDoNothing();
  }
  return { alert: row, type: type!, notifications: wanted.length };
}

/** Open alerts of the kinds `kinds`: key and what opened them (to seed a Redis that lost its alert state). */
export async function openAlertKeys(db: Tx, kinds: readonly string[]): Promise<Array<{ alertKey: string; sourceEvent: string }>> {
  return db
    .select({ alertKey: alerts.alertKey, sourceEvent: alerts.sourceEvent })
    .from(alerts)
    .where(and(isNull(alerts.resolvedAt), inArray(alerts.kind, [...kinds])));
}

/**
 * Deletes delivered notifications, and resolved alerts with all their notifications, older than
 * `days`; dead notifications and open alerts stay. Returns the rows deleted.
 */
export async function pruneAlerts(db: Tx, days: number): Promise<number> {
  const a = await db.execute(sql`
    WITH gone AS (DELETE FROM alerts WHERE resolved_at < now() - ${days} * interval '1 day' RETURNING id)
    DELETE FROM notifications WHERE alert_id IN (SELECT id FROM gone) OR (state = 'delivered' AND delivered_at < now() - ${days} * interval '1 day')`);
  return a.rowCount ?? 0;
}

export async function relayCursor(tx: Tx): Promise<string> {
  await tx.insert(alertRelay).values({ id: 1 }).onConflictDoNothing();
  // The row lock makes relays take turns: events are written in stream order, once.
  const res = await tx.execute(sql`SELECT last_event FROM alert_relay WHERE id = 1 FOR UPDATE SKIP LOCKED`);
  const r = res.rows[0] as { last_event: string } | undefined;
  return r?.last_event ?? '';
}

export async function advanceRelayCursor(tx: Tx, lastEvent: string): Promise<void> {
  await tx.update(alertRelay).set({ lastEvent, updatedAt: sql`now()` }).where(eq(alertRelay.id, 1));
}

export interface AlertFilter {
  tenantId?: string;
  downstream?: string;
  kind?: string;
  state?: 'open' | 'resolved';
  beforeId?: number;
  limit: number;
}

/** Newest first. */
export async function listAlerts(db: Tx, f: AlertFilter): Promise<AlertRow[]> {
  const where: SQL[] = [];
  if (f.tenantId !== undefined) where.push(eq(alerts.tenantId, f.tenantId));
  if (f.downstream !== undefined) where.push(eq(alerts.downstream, f.downstream));
  if (f.kind !== undefined) where.push(eq(alerts.kind, f.kind));
  if (f.state === 'open') where.push(isNull(alerts.resolvedAt));
  if (f.state === 'resolved') where.push(isNotNull(alerts.resolvedAt));
  if (f.beforeId !== undefined) where.push(lt(alerts.id, f.beforeId));
  return db
    .select()
    .from(alerts)
    .where(where.length ? and(...where) : undefined)
    .orderBy(desc(alerts.id))
    .limit(f.limit);
}

export async function findAlert(db: Tx, id: number): Promise<AlertRow | undefined> {
  return (await db.select().from(alerts).where(eq(alerts.id, id)))[0];
}

export async function deliveryOf(db: Tx, ids: readonly number[]): Promise<Map<number, Delivery>> {
  const out = new Map<number, Delivery>();
  if (ids.length === 0) return out;
  const rows = await db
    .select({ alertId: notifications.alertId, state: notifications.state, n: sql<number>`count(*)::int` })
    .from(notifications)
    .where(inArray(notifications.alertId, [...ids]))
    .groupBy(notifications.alertId, notifications.state);
  for (const id of ids) out.set(id, { pending: 0, delivered: 0, dead: 0 });
  for (const r of rows) out.get(r.alertId)![r.state] = r.n;
  return out;
}

export async function ackAlert(tx: Tx, id: number, by: string): Promise<AlertRow | undefined> {
  return (
    await tx
      .update(alerts)
      .set({ ackedAt: sql`coalesce(${alerts.ackedAt}, now())`, ackedBy: sql`coalesce(${alerts.ackedBy}, ${by})` })
      .where(eq(alerts.id, id))
      .returning()
  )[0];
}

// ---- notifications ----

export function notificationView(r: NotificationRow) {
  return {
    id: r.id,
    eventId: r.eventId,
    alertId: r.alertId,
    type: r.type as EventType,
    target: r.target,
    state: r.state,
    attempts: r.attempts,
    ...(r.state === 'pending' ? { nextAttemptAt: r.nextAttemptAt.toISOString() } : {}),
    ...(r.lastError !== null ? { lastError: r.lastError } : {}),
    ...(r.lastStatus !== null ? { lastStatus: r.lastStatus } : {}),
    createdAt: r.createdAt.toISOString(),
    ...(r.deliveredAt ? { deliveredAt: r.deliveredAt.toISOString() } : {}),
    body: r.body as NotificationEvent,
  };
}

export async function listNotifications(
  db: Tx,
  f: { state?: 'pending' | 'delivered' | 'dead'; alertId?: number; target?: string; beforeId?: number; limit: number },
): Promise<NotificationRow[]> {
  const where: SQL[] = [];
  if (f.state !== undefined) where.push(eq(notifications.state, f.state));
  if (f.alertId !== undefined) where.push(eq(notifications.alertId, f.alertId));
  if (f.target !== undefined) where.push(eq(notifications.target, f.target));
  if (f.beforeId !== undefined) where.push(lt(notifications.id, f.beforeId));
  return db
    .select()
    .from(notifications)
    .where(where.length ? and(...where) : undefined)
    .orderBy(desc(notifications.id))
    .limit(f.limit);
}

/** Claims up to `n` due notifications for `owner` under a lease; each claim counts as an attempt. */
export async function claimDue(db: Tx, owner: string, n: number, leaseMs: number): Promise<NotificationRow[]> {
  const res = await db.execute(sql`
    UPDATE notifications SET locked_until = now() + ${leaseMs} * interval '1 millisecond', locked_by = ${owner}, attempts = attempts + 1
    WHERE id IN (
      SELECT id FROM notifications
      WHERE state = 'pending' AND next_attempt_at <= now() AND (locked_until IS NULL OR locked_until < now())
      ORDER BY next_attempt_at, id
      LIMIT ${n}
      FOR UPDATE SKIP LOCKED)
    RETURNING id`);
  const ids = (res.rows as Array<{ id: string | number }>).map((r) => Number(r.id));
  if (ids.length === 0) return [];
  return db.select().from(notifications).where(inArray(notifications.id, ids)).orderBy(notifications.id);
}

/** Marks a claimed notification delivered; false if its lease had passed to another deliverer. */
export async function markDelivered(db: Tx, id: number, owner: string, status: number | null): Promise<boolean> {
  const rows = await db
    .update(notifications)
    .set({ state: 'delivered', deliveredAt: sql`now()`, lockedUntil: null, lastStatus: status, lastError: null })
    .where(and(eq(notifications.id, id), eq(notifications.lockedBy, owner), eq(notifications.state, 'pending')))
    .returning({ id: notifications.id });
  return rows.length > 0;
}

/** A failed attempt: due again after `delayMs`, or dead when `dead`. */
export async function markFailed(db: Tx, id: number, owner: string, f: { dead: boolean; delayMs: number; error: string; status: number | null }): Promise<boolean> {
  const rows = await db
    .update(notifications)
    .set({
      state: f.dead ? 'dead' : 'pending',
      nextAttemptAt: sql`now() + ${f.delayMs} * interval '1 millisecond'`,
      lockedUntil: null,
      lastError: f.error.slice(0, 1000),
      lastStatus: f.status,
    })
    .where(and(eq(notifications.id, id), eq(notifications.lockedBy, owner), eq(notifications.state, 'pending')))
    .returning({ id: notifications.id });
  return rows.length > 0;
}

/** Puts a dead notification back in line (attempts from zero). */
export async function retryDead(tx: Tx, id: number): Promise<NotificationRow | undefined> {
  return (
    await tx
      .update(notifications)
      .set({ state: 'pending', attempts: 0, nextAttemptAt: sql`now()`, lockedUntil: null })
      .where(and(eq(notifications.id, id), eq(notifications.state, 'dead')))
      .returning()
  )[0];
}

export async function findNotification(db: Tx, id: number): Promise<NotificationRow | undefined> {
  return (await db.select().from(notifications).where(eq(notifications.id, id)))[0];
}

export async function notificationCounts(db: Tx): Promise<Record<string, number>> {
  const rows = await db.select({ state: notifications.state, n: sql<number>`count(*)::int` }).from(notifications).groupBy(notifications.state);
  return Object.fromEntries(rows.map((r) => [r.state, r.n]));
}

// ---- rules ----

export async function allAlertRules(db: Tx): Promise<AlertRuleRow[]> {
  return db.select().from(alertRules).orderBy(alertRules.tenantId);
}

export async function findAlertRule(db: Tx, tenantId: string): Promise<AlertRuleRow | undefined> {
  return (await db.select().from(alertRules).where(eq(alertRules.tenantId, tenantId)))[0];
}

export async function upsertAlertRule(tx: Tx, tenantId: string, rule: Record<string, unknown>, by: string): Promise<AlertRuleRow> {
  return (
    await tx
      .insert(alertRules)
      .values({ tenantId, rule, updatedBy: by })
      .onConflictDoUpdate({ target: alertRules.tenantId, set: { rule, updatedBy: by, updatedAt: sql`now()` } })
      .returning()
  )[0]!;
}

export async function deleteAlertRule(tx: Tx, tenantId: string): Promise<AlertRuleRow | undefined> {
  return (await tx.delete(alertRules).where(eq(alertRules.tenantId, tenantId)).returning())[0];
}
