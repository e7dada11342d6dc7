/**
 * Postgres schema (drizzle-orm). Postgres holds the durable truth; Redis the live state.
 * Migrations in drizzle/ are generated from this file by `npm run db:generate` (drizzle-kit).
 */
import {
  bigint,
  bigserial,
  boolean,
  doublePrecision,
  index,
  integer,
  jsonb,
  pgTable,
  primaryKey,
  serial,
  text,
  timestamp,
  unique,
  uniqueIndex,
} from 'drizzle-orm/pg-core';
import { sql } from 'drizzle-orm';

export { idempotencyKeys } from './idempotency';

/** Snapshot of each downstream's decision and outcome counters, written by the observer. */
export const downstreamCounters = pgTable('downstream_counters', {
  downstream: text('downstream').primaryKey(),
  /** Counter name → value, as kept in Redis (`admitted`, `completed`, `failed`, `dead:<reason>`...). */
  counters: jsonb('counters').$type<Record<string, number>>().notNull(),
  updatedAt: timestamp('updated_at', { withTimezone: true, mode: 'date' }).notNull().defaultNow(),
});

/**
 * Tenant quotas. One row per (tenant, job type, downstream) scope; null job type or downstream means
 * "any". The most specific matching row governs a job (src/core/quota.ts).
 */
export const quotas = pgTable(
  'quotas',
  {
    id: serial('id').primaryKey(),
    tenantId: text('tenant_id').notNull(),
    jobType: text('job_type'),
    downstream: text('downstream'),
    rate: doublePrecision('rate'),
    burst: integer('burst'),
    maxConcurrent: integer('max_concurrent'),
    perHour: bigint('per_hour', { mode: 'number' }),
    perDay: bigint('per_day', { mode: 'number' }),
    perMonth: bigint('per_month', { mode: 'number' }),
    onPeriodExceeded: text('on_period_exceeded').$type<'wait' | 'reject'>().notNull().default('wait'),
    paused: boolean('paused').notNull().default(false),
    createdAt: timestamp('created_at', { withTimezone: true, mode: 'date' }).notNull().defaultNow(),
    updatedAt: timestamp('updated_at', { withTimezone: true, mode: 'date' }).notNull().defaultNow(),
  },
  (t) => [unique('quotas_scope').on(t.tenantId, t.jobType, t.downstream).nullsNotDistinct(), index('quotas_tenant').on(t.tenantId)],
);

/** Throttles: pause or slow a tenant, a job type, or both, until a time or until removed. */
export const throttles = pgTable('throttles', {
  id: serial('id').primaryKey(),
  tenantId: text('tenant_id'),
  jobType: text('job_type'),
  action: text('action').$type<'pause' | 'slow'>().notNull(),
  rate: doublePrecision('rate'),
  burst: integer('burst'),
  until: timestamp('until', { withTimezone: true, mode: 'date' }),
  createdAt: timestamp('created_at', { withTimezone: true, mode: 'date' }).notNull().defaultNow(),
  createdBy: text('created_by').notNull(),
});

/** Every change made through the API: who, when, why, and the resource before and after. */
export const auditLog = pgTable(
  'audit_log',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    at: timestamp('at', { withTimezone: true, mode: 'date' }).notNull().defaultNow(),
    actor: text('actor').notNull(),
    action: text('action').notNull(),
    resourceType: text('resource_type').notNull(),
    resourceId: text('resource_id').notNull(),
    tenantId: text('tenant_id'),
    before: jsonb('before'),
    after: jsonb('after'),
    reason: text('reason').notNull(),
    ticket: text('ticket'),
  },
  (t) => [index('audit_log_resource').on(t.resourceType, t.resourceId), index('audit_log_at').on(t.at)],
);

/**
 * Period usage per quota and tenant, snapshotted from Redis, so a Redis that lost its state can be
 * given back the usage of the current windows (drift: at most one snapshot interval of admissions).
 */
export const usageLedger = pgTable(
  'usage_ledger',
  {
    quotaId: text('quota_id').notNull(),
    tenantId: text('tenant_id').notNull(),
    period: text('period').$type<'hour' | 'day' | 'month'>().notNull(),
    windowStart: timestamp('window_start', { withTimezone: true, mode: 'date' }).notNull(),
    used: bigint('used', { mode: 'number' }).notNull(),
    updatedAt: timestamp('updated_at', { withTimezone: true, mode: 'date' }).notNull().defaultNow(),
  },
  (t) => [primaryKey({ columns: [t.quotaId, t.tenantId, t.period, t.windowStart] })],
);

/**
 * Bumped by every change of quotas or throttles. The Redis mirror records the version it holds; a
 * mirror behind Postgres (a failed write, a flushed Redis) is rebuilt by the sync.
 */
export const definitionsVersion = pgTable('definitions_version', {
  id: integer('id').primaryKey().default(1),
  version: bigint('version', { mode: 'number' }).notNull().default(0),
});

/** Allocation policies set at runtime over the API; a downstream without a row uses its config policy. */
export const policies = pgTable('policies', {
  downstream: text('downstream').primaryKey(),
  policy: jsonb('policy').notNull(),
  updatedAt: timestamp('updated_at', { withTimezone: true, mode: 'date' }).notNull().defaultNow(),
  updatedBy: text('updated_by').notNull(),
});

/** The current breaker state per downstream (restored into a Redis that lost it). */
export const breakerSnapshots = pgTable('breaker_snapshots', {
  downstream: text('downstream').primaryKey(),
  state: jsonb('state').notNull(),
  gen: bigint('gen', { mode: 'number' }).notNull(),
  updatedAt: timestamp('updated_at', { withTimezone: true, mode: 'date' }).notNull().defaultNow(),
});

/** Every breaker transition, append-only. (downstream, gen) is unique: a transition is written once. */
export const breakerTransitions = pgTable(
  'breaker_transitions',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    downstream: text('downstream').notNull(),
    fromState: text('from_state').notNull(),
    toState: text('to_state').notNull(),
    reason: text('reason').notNull(),
    counters: jsonb('counters').notNull(),
    gen: bigint('gen', { mode: 'number' }).notNull(),
    actor: text('actor').notNull(),
    at: timestamp('at', { withTimezone: true, mode: 'date' }).notNull(),
    openUntil: timestamp('open_until', { withTimezone: true, mode: 'date' }),
  },
  (t) => [unique('breaker_transitions_gen').on(t.downstream, t.gen), index('breaker_transitions_at').on(t.downstream, t.at)],
);

/**
 * Alerts, opened and later resolved (src/notify/). `sourceEvent` (the Redis alert event, or the
 * breaker transition, that opened it) is unique, and so is `alertKey` among open alerts: an event
 * written twice, or a crossing seen again after Redis lost its alert state, opens nothing new.
 */
export const alerts = pgTable(
  'alerts',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    sourceEvent: text('source_event').notNull(),
    alertKey: text('alert_key').notNull(),
    kind: text('kind').notNull(),
    tenantId: text('tenant_id'),
    downstream: text('downstream'),
    threshold: doublePrecision('threshold'),
    value: doublePrecision('value').notNull(),
    resolvedValue: doublePrecision('resolved_value'),
    period: text('period').$type<'hour' | 'day' | 'month'>(),
    windowStart: timestamp('window_start', { withTimezone: true, mode: 'date' }),
    windowEnd: timestamp('window_end', { withTimezone: true, mode: 'date' }),
    detail: jsonb('detail').$type<Record<string, unknown>>().notNull(),
    openedAt: timestamp('opened_at', { withTimezone: true, mode: 'date' }).notNull(),
    resolvedAt: timestamp('resolved_at', { withTimezone: true, mode: 'date' }),
    ackedAt: timestamp('acked_at', { withTimezone: true, mode: 'date' }),
    ackedBy: text('acked_by'),
  },
  (t) => [
    unique('alerts_source_event').on(t.sourceEvent),
    uniqueIndex('alerts_open_key').on(t.alertKey).where(sql`${t.resolvedAt} IS NULL`),
    index('alerts_tenant').on(t.tenantId, t.id),
    index('alerts_kind').on(t.kind, t.id),
  ],
);

/**
 * The notification outbox: one row per (event, target). Deliverers claim due rows under a lease
 * (`lockedUntil`), so a process killed mid-delivery leaves the row to be tried again, with the same
 * event id, once the lease ends.
 */
export const notifications = pgTable(
  'notifications',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    eventId: text('event_id').notNull(),
    alertId: bigint('alert_id', { mode: 'number' }).notNull(),
    type: text('type').notNull(),
    target: text('target').notNull(),
    body: jsonb('body').notNull(),
    state: text('state').$type<'pending' | 'delivered' | 'dead'>().notNull().default('pending'),
    attempts: integer('attempts').notNull().default(0),
    nextAttemptAt: timestamp('next_attempt_at', { withTimezone: true, mode: 'date' }).notNull().defaultNow(),
    lockedUntil: timestamp('locked_until', { withTimezone: true, mode: 'date' }),
    lockedBy: text('locked_by'),
    lastError: text('last_error'),
    lastStatus: integer('last_status'),
    createdAt: timestamp('created_at', { withTimezone: true, mode: 'date' }).notNull().defaultNow(),
    deliveredAt: timestamp('delivered_at', { withTimezone: true, mode: 'date' }),
  },
  (t) => [
    unique('notifications_event_target').on(t.eventId, t.target),
    index('notifications_due').on(t.state, t.nextAttemptAt),
    index('notifications_alert').on(t.alertId),
  ],
);

/** Per-tenant alert rules set over the API; a tenant without a row follows the config's `alerts`. */
export const alertRules = pgTable('alert_rules', {
  tenantId: text('tenant_id').primaryKey(),
  rule: jsonb('rule').$type<Record<string, unknown>>().notNull(),
  updatedAt: timestamp('updated_at', { withTimezone: true, mode: 'date' }).notNull().defaultNow(),
  updatedBy: text('updated_by').notNull(),
});

/** How far the relay has written the Redis alert event stream into Postgres (one row). */
export const alertRelay = pgTable('alert_relay', {
  id: integer('id').primaryKey().default(1),
  lastEvent: text('last_event').notNull().default('0-0'),
  updatedAt: timestamp('updated_at', { withTimezone: true, mode: 'date' }).notNull().defaultNow(),
});
