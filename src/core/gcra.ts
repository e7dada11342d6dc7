/**
 * GCRA (generic cell rate algorithm): a token bucket kept as one number, the theoretical arrival time
 * (TAT). `rate` jobs per second on average, up to `burst` at once. A job costing `cost` units is
 * admissible at `now` if, after charging it, the TAT is at most `burst` emission intervals ahead.
 * Because the TAT says exactly when the next unit frees up, a refused job gets the time it becomes
 * admissible, so it is re-evaluated once then instead of being polled.
 *
 * src/redis/lua/includes/evaluate.lua implements the same arithmetic in the same order; the
 * differential test (test/integration/lua-differential.test.ts) keeps the two equal.
 */
export interface RateLimit {
  /** Jobs (cost units) per second, > 0. */
  rate: number;
  /** Units admissible at once, ≥ 1. */
  burst: number;
}

export type GcraResult = { ok: true; tat: number } | { ok: false; retryAt: number };

/** The latest instant a JavaScript Date can hold (ms): computed times are clamped to it. */
export const MAX_INSTANT = 8.64e15;

function instant(t: number): number {
  return Number.isNaN(t) || t > MAX_INSTANT ? MAX_INSTANT : t;
}

export function gcra(tat: number, now: number, limit: RateLimit, cost = 1): GcraResult {
  const interval = 1000 / limit.rate;
  const base = Math.max(tat, now);
  const next = base + interval * cost;
  // base + interval * (cost - burst), not next - burst * interval: the same number, without losing
  // `base` to rounding when the interval is huge.
  const allowAt = base + interval * (cost - limit.burst);
  if (allowAt <= now) return { ok: true, tat: instant(next) };
  return { ok: false, retryAt: instant(Math.ceil(allowAt)) };
}

/** Whole units available right now (for usage reports). */
export function gcraTokens(tat: number, now: number, limit: RateLimit): number {
  const interval = 1000 / limit.rate;
  const owed = Math.max(0, tat - now);
  return Math.max(0, Math.floor((limit.burst * interval - owed) / interval + 1e-9));
}

/**
 * A quota's rate changed: convert the debt the old TAT represents (units owed, at the old interval)
 * into the same number of units at the new interval, so the change takes effect at once instead of
 * after the old debt is paid off at the old rate.
 */
export function rescaleTat(tat: number, now: number, oldInterval: number | undefined, newInterval: number): number {
  if (oldInterval === undefined || oldInterval === newInterval || tat <= now) return tat;
  return now + ((tat - now) / oldInterval) * newInterval;
}
