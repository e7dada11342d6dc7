/**
 * What alerts and notifications look like from outside: the config sections (`alerts`, `notifier`),
 * per-tenant alert rules over the API, the alert and notification views, and the event body that
 * webhooks and the notifications queue carry. One set of zod schemas validates input and generates
 * the OpenAPI document.
 */
import { z } from 'zod';
import { queueName } from '../config/queue-name';
import { MAX_DURATION_MS } from '../core/limits';
import { ALERT_KINDS } from '../core/alerts';

const ms = (min: number) => z.number().int().min(min).max(MAX_DURATION_MS);
const percent = z.number().gt(0).max(1000);

export const AlertKindSchema = z.enum(ALERT_KINDS).describe('period_usage, saturation, backlog, starvation (per tenant); capacity_cut, breaker (per downstream)');

const thresholds = z
  .array(percent)
  .max(10)
  .refine((a) => new Set(a).size === a.length, 'thresholds must not repeat')
  .describe('Percentages of each period total (hour, day, month) that open an alert, e.g. [80, 95, 100]');

export const AlertsConfigSchema = z
  .strictObject({
    /** Off: nothing is detected (breaker transitions are still recorded as breaker history). */
    enabled: z.boolean().default(true),
    /** How often each observer evaluates quota usage, saturation, backlog, starvation and capacity. */
    evaluateIntervalMs: ms(100).default(1000),
    periodThresholds: thresholds.default([80, 95, 100]),
    /** Hysteresis: an open alert resolves (and re-arms) only below its threshold minus this many points. */
    rearmMarginPercent: z.number().min(0).max(100).default(5),
    /** In flight at maxConcurrent, or rate tokens empty, for this long opens a saturation alert; null: off. */
    saturationForMs: ms(100).nullable().default(60_000),
    /** Waiting jobs at this share of tenantLimits.maxWaiting open a backlog alert; null: off. */
    backlogPercent: z.number().gt(0).max(100).nullable().default(90),
    /** A tenant starving for observer.starvationMs opens a starvation alert. */
    starvation: z.boolean().default(true),
    /** Adaptive capacity cut below this share of the configured capacity opens an alert; null: off. */
    capacityCutPercent: z.number().gt(0).max(100).nullable().default(50),
    /** Breaker transitions (opened, half-open, closed, forced) open, change and resolve a breaker alert. */
    breakers: z.boolean().default(true),
  })
  .prefault({});

const TARGET_NAME = /^[a-z0-9][a-z0-9_-]{0,62}$/;

export const WebhookTargetSchema = z.strictObject({
  name: z.string().regex(TARGET_NAME, 'must be 1-63 characters from [a-z0-9_-], starting with a letter or digit'),
  url: z
    .string()
    .url()
    .refine((u) => /^https?:\/\//i.test(u), 'must be an http or https URL'),
  /** Standard Webhooks secret: `whsec_` and the base64 of at least 24 random bytes. */
  secret: z
    .string()
    .regex(/^whsec_[A-Za-z0-9+/]{32,}={0,2}$/, 'must be a Standard Webhooks secret: whsec_ followed by the base64 of at least 24 random bytes'),
  /** Only these alert kinds; absent: every kind. */
  kinds: z.array(AlertKindSchema).min(1).optional(),
  /** Only alerts of these tenants (downstream alerts have no tenant and are left out); absent: all. */
  tenants: z.array(z.string().min(1).max(200)).min(1).optional(),
  timeoutMs: ms(100).default(10_000),
});

export const NotifierConfigSchema = z
  .strictObject({
    webhooks: z.array(WebhookTargetSchema).max(50).default([]),
    /** A BullMQ queue carrying every event body, for a notifier service to consume. */
    queue: z
      .strictObject({
        enabled: z.boolean().default(true),
        name: queueName.default('notifications'),
      })
      .prefault({}),
    retry: z
      .strictObject({
        /** After this many attempts a notification is dead (GET /api/v1/notifications?state=dead). */
        maxAttempts: z.number().int().min(1).max(100).default(12),
        /** First retry after about this long, doubling each attempt, with jitter. */
        baseDelayMs: ms(10).default(1000),
        /** No retry waits longer (a receiver's Retry-After included). */
        maxDelayMs: ms(10).default(300_000),
      })
      .prefault({}),
    /** A delivery claimed by a process that died is tried again after this long. */
    leaseMs: ms(100).default(30_000),
    /** How often each observer looks for due notifications (it also wakes when it records one). */
    pollMs: ms(10).default(250),
    /** Delivered notifications and resolved alerts are deleted after this many days (dead ones and open alerts stay). */
    retentionDays: z.number().int().min(1).max(3650).default(30),
    /** Deliveries one process runs at once. */
    concurrency: z.number().int().min(1).max(100).default(8),
  })
  .superRefine((n, ctx) => {
    const seen = new Set<string>();
    n.webhooks.forEach((w, i) => {
      if (seen.has(w.name)) ctx.addIssue({ code: 'custom', path: ['webhooks', i, 'name'], message: `"${w.name}" is declared twice` });
      seen.add(w.name);
    });
    // A lease shorter than a request's timeout would let a second deliverer send a notification the
    // first is still waiting on.
    n.webhooks.forEach((w, i) => {
      if (w.timeoutMs >= n.leaseMs) ctx.addIssue({ code: 'custom', path: ['webhooks', i, 'timeoutMs'], message: `must be below notifier.leaseMs (${n.leaseMs})` });
    });
    if (n.retry.baseDelayMs > n.retry.maxDelayMs) ctx.addIssue({ code: 'custom', path: ['retry', 'baseDelayMs'], message: 'must not exceed retry.maxDelayMs' });
  })
  .prefault({});

/** A tenant's own alert rule (PUT /api/v1/alert-rules/:tenantId): each field overrides the config. */
export const AlertRuleInputSchema = z
  .strictObject({
    periodThresholds: thresholds.optional(),
    saturationForMs: ms(100).nullable().optional().describe('null: no saturation alerts for this tenant'),
    backlogPercent: z.number().gt(0).max(100).nullable().optional().describe('null: no backlog alerts for this tenant'),
    muted: z.boolean().optional().describe('No alerts at all for this tenant (open ones resolve)'),
  })
  .meta({ id: 'AlertRuleInput' });

export const AlertRuleSchema = z
  .object({
    tenantId: z.string(),
    periodThresholds: z.array(z.number()),
    saturationForMs: z.number().nullable(),
    backlogPercent: z.number().nullable(),
    muted: z.boolean(),
    /** Which fields the tenant's own rule sets (the rest come from the config). */
    overrides: z.array(z.string()),
    updatedAt: z.string().optional(),
    updatedBy: z.string().optional(),
  })
  .meta({ id: 'AlertRule' });

export const AlertSchema = z
  .object({
    id: z.number().int(),
    kind: AlertKindSchema,
    state: z.enum(['open', 'resolved']),
    tenantId: z.string().optional(),
    downstream: z.string().optional(),
    /** The threshold crossed (percent for period_usage, backlog, capacity_cut; ms for saturation and starvation). */
    threshold: z.number().optional(),
    /** The measured value when it opened: percent (period_usage, backlog, capacity_cut), ms waited (starvation), jobs in flight (saturation), failures counted (breaker). */
    value: z.number(),
    resolvedValue: z.number().optional(),
    window: z.object({ period: z.enum(['hour', 'day', 'month']), start: z.string(), end: z.string() }).optional(),
    detail: z.record(z.string(), z.unknown()),
    openedAt: z.string(),
    resolvedAt: z.string().optional(),
    acked: z.object({ at: z.string(), by: z.string() }).optional(),
    delivery: z.object({ pending: z.number(), delivered: z.number(), dead: z.number() }).optional(),
  })
  .meta({ id: 'Alert' });

export const EVENT_TYPES = ['alert.opened', 'alert.changed', 'alert.resolved'] as const;

/** The body of every webhook and notifications-queue job (Standard Webhooks: type, timestamp, data). */
export const NotificationEventSchema = z
  .object({
    id: z.string().describe('Stable event id, also the webhook-id header and the queue job id: deduplicate on it'),
    type: z.enum(EVENT_TYPES),
    timestamp: z.string().describe('When the event happened (ISO 8601)'),
    data: z.object({ alert: AlertSchema }),
  })
  .meta({ id: 'NotificationEvent' });

export const NotificationSchema = z
  .object({
    id: z.number().int(),
    eventId: z.string(),
    alertId: z.number().int(),
    type: z.enum(EVENT_TYPES),
    target: z.string().describe('webhook:<name> or queue:<name>'),
    state: z.enum(['pending', 'delivered', 'dead']),
    attempts: z.number().int(),
    nextAttemptAt: z.string().optional(),
    lastError: z.string().optional(),
    lastStatus: z.number().int().optional(),
    createdAt: z.string(),
    deliveredAt: z.string().optional(),
    body: NotificationEventSchema,
  })
  .meta({ id: 'Notification' });

export type AlertsConfig = z.output<typeof AlertsConfigSchema>;
export type NotifierConfig = z.output<typeof NotifierConfigSchema>;
export type WebhookTarget = z.output<typeof WebhookTargetSchema>;
export type AlertRuleInput = z.output<typeof AlertRuleInputSchema>;
export type AlertView = z.infer<typeof AlertSchema>;
export type NotificationEvent = z.infer<typeof NotificationEventSchema>;
export type EventType = (typeof EVENT_TYPES)[number];
