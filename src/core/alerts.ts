/**
 * Alert decisions, pure: when an observed value opens or resolves an alert (with hysteresis and an
 * optional "sustained for" time), how long a failed delivery waits before its next attempt, and which
 * notification targets an alert goes to.
 *
 * src/redis/lua/evaluateAlerts-3.lua applies `step` atomically in Redis, so a crossing opens one alert
 * whichever process saw it; test/integration/alerts-differential.test.ts runs both on the same inputs.
 */

export const ALERT_KINDS = ['period_usage', 'saturation', 'backlog', 'starvation', 'capacity_cut', 'breaker'] as const;
export type AlertKind = (typeof ALERT_KINDS)[number];

/** One alert's identity: its kind and subject (and for period usage the quota, period, threshold and window). */
export function alertKey(kind: AlertKind, ...parts: Array<string | number>): string {
  return JSON.stringify([kind, ...parts]);
}

/**
 * What an alert key is about. Layouts: [period_usage, tenant, quota, period, threshold, window start],
 * [saturation, tenant, quota], [backlog | starvation, downstream, tenant], [capacity_cut | breaker, downstream].
 */
export function subjectOfKey(key: string): { kind: AlertKind; tenantId?: string; downstream?: string; parts: unknown[] } {
  const parts = JSON.parse(key) as unknown[];
  const kind = parts[0] as AlertKind;
  if (kind === 'period_usage' || kind === 'saturation') return { kind, tenantId: String(parts[1]), parts };
  if (kind === 'backlog' || kind === 'starvation') return { kind, downstream: String(parts[1]), tenantId: String(parts[2]), parts };
  return { kind, downstream: String(parts[1]), parts };
}

/**
 * An observation of one alert key: `hot` opens it (after `sustainMs` of being hot), `cool` resolves
 * it. Between the two (the hysteresis band) nothing changes.
 */
export interface Observation {
  key: string;
  hot: boolean;
  cool: boolean;
  sustainMs: number;
}

/** Hot at or above the threshold; cool only below the threshold minus the margin. */
export function above(value: number, threshold: number, margin: number): { hot: boolean; cool: boolean } {
  return { hot: value >= threshold, cool: value < threshold - margin };
}

/** The mirror image, for values that alert when they fall (capacity cut below a share). */
export function below(value: number, threshold: number, margin: number): { hot: boolean; cool: boolean } {
  return { hot: value < threshold, cool: value >= threshold + margin };
}

/** What Redis keeps per key: the open alert's id, and since when a sustained condition has been hot. */
export interface CrossingState {
  open?: string;
  since?: number;
}

export type StepResult = { kind: 'none' } | { kind: 'opened' } | { kind: 'resolved'; id: string };

/** The evaluation of one observation against the stored state; `state` is changed in place. */
export function step(state: CrossingState, obs: Observation, now: number): StepResult {
  if (state.open !== undefined) {
    if (!obs.cool) return { kind: 'none' };
    const id = state.open;
    delete state.open;
    delete state.since;
    return { kind: 'resolved', id };
  }
  if (!obs.hot) {
    delete state.since;
    return { kind: 'none' };
  }
  if (obs.sustainMs > 0) {
    state.since ??= now;
    if (now - state.since < obs.sustainMs) return { kind: 'none' };
  }
  delete state.since;
  // The caller stores the id it gives the alert (the event's id in Redis).
  state.open = '';
  return { kind: 'opened' };
}

export interface RetryPolicy {
  baseDelayMs: number;
  maxDelayMs: number;
}

/**
 * Wait before the attempt after `attempts` failed ones: base × 2^(attempts-1), with equal jitter
 * (between half and all of it), at most maxDelayMs; a receiver's Retry-After is honoured up to it.
 */
export function retryDelay(attempts: number, policy: RetryPolicy, random: () => number = Math.random, retryAfterMs?: number): number {
  const exp = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** Math.min(Math.max(attempts - 1, 0), 40));
  const jittered = exp / 2 + random() * (exp / 2);
  const wait = retryAfterMs !== undefined ? Math.max(jittered, retryAfterMs) : jittered;
  return Math.round(Math.min(policy.maxDelayMs, wait));
}

/** Retry-After as delay-seconds or an HTTP date (RFC 9110); undefined when absent or unreadable. */
export function parseRetryAfter(header: string | null | undefined, now: number): number | undefined {
  if (!header) return undefined;
  const t = header.trim();
  if (/^\d+$/.test(t)) return Number(t) * 1000;
  const at = Date.parse(t);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

export interface TargetFilter {
  kinds?: readonly string[];
  tenants?: readonly string[];
}

/** Does an alert of `kind` (of `tenantId`, if a tenant alert) go to a target with this filter? */
export function targetWants(filter: TargetFilter, kind: string, tenantId: string | undefined): boolean {
  if (filter.kinds && !filter.kinds.includes(kind)) return false;
  if (filter.tenants && (tenantId === undefined || !filter.tenants.includes(tenantId))) return false;
  return true;
}

export interface TenantAlertRule {
  periodThresholds: number[];
  saturationForMs: number | null;
  backlogPercent: number | null;
  muted: boolean;
}

/** The config's defaults with a tenant's own rule laid over them. */
export function effectiveRule(defaults: Omit<TenantAlertRule, 'muted'>, own: Partial<TenantAlertRule> | undefined): TenantAlertRule {
  return {
    periodThresholds: own?.periodThresholds ?? defaults.periodThresholds,
    saturationForMs: own?.saturationForMs !== undefined ? own.saturationForMs : defaults.saturationForMs,
    backlogPercent: own?.backlogPercent !== undefined ? own.backlogPercent : defaults.backlogPercent,
    muted: own?.muted ?? false,
  };
}
