/**
 * Tenant quotas and throttles: which quota governs a job, and whether the job may start now.
 *
 * Exactly one quota governs a job: the most specific of its tenant's quotas that matches it, else
 * the default quota from config. Specificity, highest first:
 *   1. job type and downstream   2. job type only   3. downstream only   4. neither (tenant-wide)
 * Between two job-type patterns, the one with more literal (non-wildcard) characters wins; a
 * remaining tie goes to the quota created first.
 *
 * Throttles stack on top: every active throttle matching the job's tenant and name applies.
 *
 * This is the reference implementation; src/redis/lua/includes/quota.lua and evaluate.lua apply the same rules
 * atomically in Redis, and test/integration/lua-differential.test.ts runs both on the same inputs.
 */
import { gcra, rescaleTat, type RateLimit } from './gcra';
import { compileGlob, globSpecificity } from './glob';
import { PERIODS, type Period, type Windows } from './periods';

export interface QuotaLimits {
  /** Average jobs per second; absent = no rate limit. */
  rate?: number;
  /** Jobs admissible at once at `rate`; defaults to max(1, ceil(rate)). */
  burst?: number;
  /** Jobs admitted and not finished, at most. */
  maxConcurrent?: number;
  /** Jobs per UTC calendar hour / day / month. */
  periods?: Partial<Record<Period, number>>;
  /** Past a period total: wait for the next window, or dead-letter (`quota-exceeded`). */
  onPeriodExceeded: 'wait' | 'reject';
  /** A paused quota admits nothing; its jobs wait. */
  paused: boolean;
}

export interface QuotaDef extends QuotaLimits {
  /** `default` for the config default, else `q<database id>`. */
  id: string;
  tenantId?: string;
  /** Job-name glob. */
  jobType?: string;
  downstream?: string;
}

export interface ThrottleDef {
  id: string;
  tenantId?: string;
  jobType?: string;
  action: 'pause' | 'slow';
  /** For `slow`: jobs per second across everything the throttle matches. */
  rate?: number;
  burst?: number;
  /** ms since epoch; absent = until removed. */
  until?: number;
}

export interface QuotaState {
  /** GCRA theoretical arrival time (ms). */
  tat: number;
  /** Emission interval (ms) the TAT was computed with; a rate change rescales the debt. */
  interval?: number;
  /** Cost units admitted and not finished. */
  inflight: number;
  /** Units used in the window starting at `window`, per period. */
  used: Partial<Record<Period, { window: number; n: number }>>;
}

export const EMPTY_STATE: QuotaState = { tat: 0, inflight: 0, used: {} };

export type WaitReason = 'paused' | 'throttled' | 'period' | 'concurrency' | 'rate' | 'capacity';

export type Verdict =
  | { kind: 'admit' }
  /** `until` set: re-evaluate then. Absent: wait for an event (a release, a resume, a removal). */
  | { kind: 'wait'; reason: WaitReason; until?: number }
  | { kind: 'reject'; reason: 'quota-exceeded' | 'cost-over-quota'; message: string };

export function specificity(def: Pick<QuotaDef, 'id' | 'jobType' | 'downstream'>): number {
  if (def.id === 'default') return -1;
  const literals = def.jobType !== undefined ? globSpecificity(def.jobType) : 0;
  if (def.jobType !== undefined && def.downstream !== undefined) return 3_000_000 + literals;
  if (def.jobType !== undefined) return 2_000_000 + literals;
  if (def.downstream !== undefined) return 1_000_000;
  return 0;
}

function idNumber(id: string): number {
  return Number(id.slice(1)) || 0;
}

/** The quota governing a job of `tenantId` named `name` on `downstream`. */
export function resolveQuota(defs: readonly QuotaDef[], fallback: QuotaDef, name: string, downstream: string): QuotaDef {
  let best: QuotaDef | undefined;
  let bestSpec = -Infinity;
  for (const d of defs) {
    if (d.downstream !== undefined && d.downstream !== downstream) continue;
    if (d.jobType !== undefined && !compileGlob(d.jobType).test(name)) continue;
    const s = specificity(d);
    if (s > bestSpec || (s === bestSpec && best && idNumber(d.id) < idNumber(best.id))) {
      best = d;
      bestSpec = s;
    }
  }
  return best ?? fallback;
}

export function rateOf(limits: { rate?: number; burst?: number }): RateLimit | undefined {
  if (limits.rate === undefined) return undefined;
  return { rate: limits.rate, burst: limits.burst ?? Math.max(1, Math.ceil(limits.rate)) };
}

export function throttleMatches(t: ThrottleDef, tenantId: string, name: string, now: number): boolean {
  if (t.until !== undefined && t.until <= now) return false;
  if (t.tenantId !== undefined && t.tenantId !== tenantId) return false;
  if (t.jobType !== undefined && !compileGlob(t.jobType).test(name)) return false;
  return true;
}

export interface EvaluationInput {
  now: number;
  windows: Windows;
  cost: number;
  tenantId: string;
  name: string;
  quota: QuotaDef;
  state: QuotaState;
  /** Throttles that may apply (filtering by tenant, name and expiry happens here), with their GCRA TAT. */
  throttles: ReadonlyArray<{ def: ThrottleDef; tat: number }>;
}

export interface Evaluation {
  verdict: Verdict;
  /** New quota state and throttle TATs, when admitted. */
  state?: QuotaState;
  throttleTats?: Record<string, number>;
}

function usedIn(state: QuotaState, period: Period, windows: Windows): number {
  const u = state.used[period];
  return u && u.window === windows[period].start ? u.n : 0;
}

/**
 * May the job start now? A job no limit could ever admit is refused first (`cost-over-quota`). Then,
 * precedence when several things hold it: a pause (throttle or quota) first,
 * then a period total with `reject` (dead-letter), then concurrency (wait for a release), then the
 * time-based limits (period with `wait`, throttle rate, quota rate): the job waits until the latest.
 */
/**
 * Why a job of `cost` can never start under `quota` (a single start needs more than a limit allows at
 * once), or undefined. Such a job is refused rather than left waiting for good, holding up its flow.
 * A period total of 0 is a deliberate stop, not a misfit.
 */
export function beyondQuota(quota: QuotaDef, cost: number): string | undefined {
  const misfit = (what: string) => `cost ${cost} is above the ${what} of quota ${quota.id}: it could never start`;
  if (quota.maxConcurrent !== undefined && cost > quota.maxConcurrent) return misfit(`maxConcurrent of ${quota.maxConcurrent}`);
  const rate = rateOf(quota);
  if (rate && cost > rate.burst) return misfit(`burst of ${rate.burst}`);
  for (const p of PERIODS) {
    const limit = quota.periods?.[p];
    if (limit !== undefined && limit > 0 && cost > limit) return misfit(`${p} total of ${limit}`);
  }
  return undefined;
}

export function evaluate(input: EvaluationInput): Evaluation {
  const { now, windows, cost, quota, state } = input;
  const misfit = beyondQuota(quota, cost);
  if (misfit !== undefined) return { verdict: { kind: 'reject', reason: 'cost-over-quota', message: misfit } };
  const active = input.throttles.filter((t) => throttleMatches(t.def, input.tenantId, input.name, now));

  const pause = active.find((t) => t.def.action === 'pause');
  if (pause) return { verdict: { kind: 'wait', reason: 'throttled', ...(pause.def.until !== undefined ? { until: pause.def.until } : {}) } };
  if (quota.paused) return { verdict: { kind: 'wait', reason: 'paused' } };

  let until = -Infinity;
  let untilReason: WaitReason = 'rate';
  for (const p of PERIODS) {
    const limit = quota.periods?.[p];
    if (limit === undefined) continue;
    if (usedIn(state, p, windows) + cost > limit) {
      if (quota.onPeriodExceeded === 'reject') {
        return {
          verdict: { kind: 'reject', reason: 'quota-exceeded', message: `${p} quota of ${limit} used up (quota ${quota.id}); the window resets at ${new Date(windows[p].end).toISOString()}` },
        };
      }
      if (windows[p].end > until) {
        until = windows[p].end;
        untilReason = 'period';
      }
    }
  }
  if (quota.maxConcurrent !== undefined && state.inflight + cost > quota.maxConcurrent) {
    return { verdict: { kind: 'wait', reason: 'concurrency' } };
  }

  const throttleTats: Record<string, number> = {};
  for (const t of active) {
    const limit = rateOf(t.def);
    if (!limit) continue;
    // A slow throttle whose burst is below the cost holds the job like a pause: until it ends.
    if (cost > limit.burst) return { verdict: { kind: 'wait', reason: 'throttled', ...(t.def.until !== undefined ? { until: t.def.until } : {}) } };
    const r = gcra(t.tat, now, limit, cost);
    if (r.ok) throttleTats[t.def.id] = r.tat;
    else if (r.retryAt > until) {
      until = r.retryAt;
      untilReason = 'throttled';
    }
  }
  const rate = rateOf(quota);
  let tat = state.tat;
  const interval = rate ? 1000 / rate.rate : undefined;
  if (rate) {
    const r = gcra(rescaleTat(state.tat, now, state.interval, interval!), now, rate, cost);
    if (r.ok) tat = r.tat;
    else if (r.retryAt > until) {
      until = r.retryAt;
      untilReason = 'rate';
    }
  }
  if (until > -Infinity) return { verdict: { kind: 'wait', reason: untilReason, until } };

  const used: QuotaState['used'] = { ...state.used };
  for (const p of PERIODS) {
    if (quota.periods?.[p] === undefined) continue;
    used[p] = { window: windows[p].start, n: usedIn(state, p, windows) + cost };
  }
  return {
    verdict: { kind: 'admit' },
    state: { tat, ...(interval !== undefined ? { interval } : {}), inflight: state.inflight + cost, used },
    throttleTats,
  };
}
