/**
 * The circuit breaker of one downstream, as a pure state machine (cockatiel's vocabulary, tollgate's
 * needs): closed → open → half-open → closed, plus forced states.
 *
 *            trip rule met                    openUntil passed (and health check ok)
 *   closed ───────────────▶ open ──────────────────────────────────────────▶ half-open
 *     ▲                      ▲                                                  │
 *     │                      └────────────── a probe fails (longer open) ───────┤
 *     └────────────────────────────── enough probes succeed ────────────────────┘
 *
 * Trip rules (any of them, in closed): the failure rate over the sliding window (the last N outcomes,
 * or the outcomes of the last N ms) reaches the threshold once at least `minimumCalls` outcomes are in
 * the window; `consecutiveFailures` in a row; the slow-call rate reaches its threshold.
 * Open lasts `openMs` × `backoffMultiplier`^(trips - 1), capped at `maxOpenMs`, with ± `jitter`; a
 * failure that carries a retry-after sets it instead. Half-open admits `halfOpenProbes` jobs (the
 * scheduler enforces it across gates); one failing reopens; once all have succeeded it closes, unless
 * the slow-call rule is on and the share of slow probes reaches its threshold (then it reopens, and the
 * open time grows as for any trip). A probe whose outcome the rules ignore (an ignored error, a job
 * removed before it ended) gives its permit back, so another job probes. Half-open lasts at most
 * `halfOpenMaxMs`: probes that never report (their events lost, still running) reopen the breaker for
 * the current open time, without growing it, and it probes afresh after that.
 *
 * One clock: outcomes are placed in the window, and open periods start, at the observer's `now` when it
 * counts them; an outcome's own time only measures how long its call took (slow calls). An observer
 * that lags behind the events still counts every outcome, and an open period is never shortened by the
 * lag.
 *
 * Every transition bumps the generation. Each admitted job records the generation it was admitted in,
 * and outcomes of another generation are ignored: results of jobs admitted before a transition never
 * flip the new state. Forced states (open or closed) are sticky until released or reset.
 *
 * Time and randomness are arguments, so every path is tested with a fake clock.
 */

export interface BreakerConfig {
  /** Compute and record transitions, but never hold jobs (to tune thresholds safely). */
  observeOnly: boolean;
  window: { type: 'count' | 'time'; size: number };
  minimumCalls: number;
  failureRateThreshold: number;
  consecutiveFailures: number;
  /** A call slower than this is slow; with slowCallRateThreshold, enables the slow-call rule. */
  slowCallMs?: number;
  slowCallRateThreshold?: number;
  openMs: number;
  maxOpenMs: number;
  backoffMultiplier: number;
  /** ± fraction of the open duration, so breakers of many gates do not probe in lockstep. */
  jitter: number;
  halfOpenProbes: number;
  /** Longest time in half-open without a verdict before the breaker reopens (and probes again later). */
  halfOpenMaxMs: number;
}

export const DEFAULT_BREAKER: BreakerConfig = {
  observeOnly: false,
  window: { type: 'time', size: 60_000 },
  minimumCalls: 10,
  failureRateThreshold: 0.5,
  consecutiveFailures: 5,
  openMs: 10_000,
  maxOpenMs: 300_000,
  backoffMultiplier: 2,
  jitter: 0.1,
  halfOpenProbes: 3,
  halfOpenMaxMs: 60_000,
};

export type BreakerStateName = 'closed' | 'open' | 'half-open';

/**
 * Outcomes in the sliding window, aggregated so the state stays small at any throughput: a time
 * window keeps one entry per bucket (1/60 of the window), a count window one entry per call.
 */
export interface WindowEntry {
  at: number;
  calls: number;
  failures: number;
  slow: number;
}

export interface BreakerState {
  state: BreakerStateName;
  gen: number;
  /** Sticky forced state, until released or reset. */
  forced: 'open' | 'closed' | null;
  /** Trips since the breaker last closed (drives the open backoff). */
  trips: number;
  openedAt?: number;
  openUntil?: number;
  reason?: string;
  /** Outcomes in the sliding window (closed). */
  window: WindowEntry[];
  consecutive: number;
  /** Half-open probe results. */
  probeSuccesses: number;
  probeFailures: number;
  /** Half-open: successful probes that were slow (the slow-call rule decides on them too). */
  probeSlow?: number;
  /** Half-open: permits given back by probes whose outcome does not count (another job probes instead). */
  probeReleased?: number;
  /** When it last moved to half-open (bounds the time it stays there). */
  halfOpenAt?: number;
  /** When it last closed (replay of held jobs ramps up from here). */
  closedAt?: number;
}

export const INITIAL_BREAKER: BreakerState = {
  state: 'closed',
  gen: 1,
  forced: null,
  trips: 0,
  window: [],
  consecutive: 0,
  probeSuccesses: 0,
  probeFailures: 0,
};

export interface BreakerOutcome {
  /** When the job ended (ms). */
  at: number;
  /** The generation the job was admitted in. */
  gen: number;
  failed: boolean;
  slow: boolean;
  /**
   * Neither a success nor a failure of the downstream (an error the rules ignore, a job removed before
   * it ended): not counted; a probe's permit comes back.
   */
  ignored?: boolean;
  /** A failure that says when to try again (ms from when it is counted). */
  retryAfterMs?: number;
}

export interface Transition {
  from: BreakerStateName;
  to: BreakerStateName;
  reason: string;
  at: number;
  /** The new generation. */
  gen: number;
  counters: { calls: number; failures: number; slow: number; consecutive: number; trips: number; probeSuccesses: number; probeFailures: number };
  actor: string;
  openUntil?: number;
  forced?: 'open' | 'closed' | null;
}

export interface Step {
  state: BreakerState;
  transitions: Transition[];
}

function sums(window: readonly WindowEntry[]): { calls: number; failures: number; slow: number } {
  let calls = 0;
  let failures = 0;
  let slow = 0;
  for (const w of window) {
    calls += w.calls;
    failures += w.failures;
    slow += w.slow;
  }
  return { calls, failures, slow };
}

function counters(s: BreakerState): Transition['counters'] {
  return {
    ...sums(s.window),
    consecutive: s.consecutive,
    trips: s.trips,
    probeSuccesses: s.probeSuccesses,
    probeFailures: s.probeFailures,
  };
}

function move(s: BreakerState, to: BreakerStateName, reason: string, at: number, actor: string, patch: Partial<BreakerState>, transitions: Transition[]): BreakerState {
  const next: BreakerState = { ...s, ...patch, state: to, gen: s.gen + 1, reason };
  transitions.push({
    from: s.state,
    to,
    reason,
    at,
    gen: next.gen,
    counters: counters(s),
    actor,
    ...(next.openUntil !== undefined && to === 'open' ? { openUntil: next.openUntil } : {}),
    ...(patch.forced !== undefined ? { forced: patch.forced } : {}),
  });
  return next;
}

/** Open duration of the n-th consecutive trip (1-based), before jitter. */
export function backoff(cfg: BreakerConfig, trips: number): number {
  return Math.min(cfg.maxOpenMs, cfg.openMs * cfg.backoffMultiplier ** Math.max(0, trips - 1));
}

function openDuration(cfg: BreakerConfig, trips: number, rand: () => number, retryAfterMs?: number): number {
  if (retryAfterMs !== undefined) return Math.min(cfg.maxOpenMs, retryAfterMs);
  const base = backoff(cfg, trips);
  return Math.round(base * (1 + cfg.jitter * (2 * rand() - 1)));
}

function bucketOf(cfg: BreakerConfig, at: number): number {
  const width = Math.max(1, Math.floor(cfg.window.size / 60));
  return at - (at % width);
}

/** Adds an outcome to the window, counted at `now` (the one clock: see the header). */
function add(cfg: BreakerConfig, window: WindowEntry[], o: BreakerOutcome, now: number): WindowEntry[] {
  const entry = { calls: 1, failures: o.failed ? 1 : 0, slow: o.slow ? 1 : 0 };
  if (cfg.window.type === 'count') return [...window, { at: now, ...entry }];
  const at = bucketOf(cfg, now);
  const last = window[window.length - 1];
  if (last && last.at === at) {
    return [...window.slice(0, -1), { at, calls: last.calls + 1, failures: last.failures + entry.failures, slow: last.slow + entry.slow }];
  }
  return [...window, { at, ...entry }];
}

function slide(cfg: BreakerConfig, window: WindowEntry[], now: number): WindowEntry[] {
  return cfg.window.type === 'count' ? window.slice(-cfg.window.size) : window.filter((w) => w.at > now - cfg.window.size);
}

/** Which trip rule the window meets, if any. */
export function tripReason(cfg: BreakerConfig, window: readonly WindowEntry[], consecutive: number): string | undefined {
  if (consecutive >= cfg.consecutiveFailures) return `${consecutive} consecutive failures`;
  const { calls, failures, slow } = sums(window);
  if (calls < cfg.minimumCalls) return undefined;
  if (failures / calls >= cfg.failureRateThreshold) return `failure rate ${Math.round((failures / calls) * 100)} % over ${calls} calls`;
  if (cfg.slowCallMs !== undefined && cfg.slowCallRateThreshold !== undefined && slow / calls >= cfg.slowCallRateThreshold) {
    return `slow-call rate ${Math.round((slow / calls) * 100)} % over ${calls} calls`;
  }
  return undefined;
}

export function windowStats(window: readonly WindowEntry[]): { calls: number; failures: number; slow: number; failureRate: number } {
  const s = sums(window);
  return { ...s, failureRate: s.calls === 0 ? 0 : s.failures / s.calls };
}

/** Feeds the outcomes of finished jobs, in order. Outcomes of other generations are ignored. */
export function recordOutcomes(
  state: BreakerState,
  cfg: BreakerConfig,
  outcomes: readonly BreakerOutcome[],
  now: number,
  rand: () => number = Math.random,
  actor = 'observer',
): Step {
  let s = state;
  const transitions: Transition[] = [];
  const slowRule = cfg.slowCallMs !== undefined && cfg.slowCallRateThreshold !== undefined;
  for (const o of outcomes) {
    if (o.gen !== s.gen) continue; // admitted before the last transition: stale
    if (s.forced === 'closed') continue;
    if (s.state === 'closed') {
      if (o.ignored) continue;
      const window = slide(cfg, add(cfg, s.window, o, now), now);
      const consecutive = o.failed ? s.consecutive + 1 : 0;
      s = { ...s, window, consecutive };
      const reason = s.forced === null ? tripReason(cfg, window, consecutive) : undefined;
      if (reason) {
        const trips = s.trips + 1;
        const openUntil = now + openDuration(cfg, trips, rand, o.retryAfterMs);
        s = move(s, 'open', reason, now, actor, { trips, openedAt: now, openUntil, window: [], consecutive: 0 }, transitions);
      }
    } else if (s.state === 'half-open') {
      if (o.ignored) {
        // Says nothing about the downstream: its permit goes to another job.
        s = { ...s, probeReleased: (s.probeReleased ?? 0) + 1 };
      } else if (o.failed) {
        const trips = s.trips + 1;
        const openUntil = now + openDuration(cfg, trips, rand, o.retryAfterMs);
        s = move(s, 'open', 'a probe failed', now, actor, { trips, openedAt: now, openUntil, ...HALF_OPEN_CLEAN, probeFailures: s.probeFailures + 1 }, transitions);
      } else {
        s = { ...s, probeSuccesses: s.probeSuccesses + 1, probeSlow: (s.probeSlow ?? 0) + (o.slow && slowRule ? 1 : 0) };
        if (s.probeSuccesses >= cfg.halfOpenProbes) {
          const slow = s.probeSlow ?? 0;
          if (slowRule && slow / s.probeSuccesses >= cfg.slowCallRateThreshold!) {
            const trips = s.trips + 1;
            const openUntil = now + openDuration(cfg, trips, rand);
            s = move(s, 'open', `${slow} of ${s.probeSuccesses} probes were slow`, now, actor, { trips, openedAt: now, openUntil, ...HALF_OPEN_CLEAN }, transitions);
          } else {
            s = move(s, 'closed', `${s.probeSuccesses} probes succeeded`, now, actor, { trips: 0, closedAt: now, window: [], consecutive: 0, probeFailures: 0, ...HALF_OPEN_CLEAN }, transitions);
          }
        }
      }
    }
    // open: outcomes of the open generation cannot exist (nothing is admitted while open).
  }
  if (s.state === 'closed') s = { ...s, window: slide(cfg, s.window, now) };
  return { state: s, transitions };
}

/**
 * Time passes: an open breaker whose openUntil has passed moves to half-open, if its downstream's
 * health check (when it has one) says healthy. Forced-open breakers stay open.
 */
export function tick(state: BreakerState, now: number, healthy: boolean | undefined = undefined, actor = 'observer'): Step {
  const transitions: Transition[] = [];
  if (state.state === 'open' && state.forced === null && state.openUntil !== undefined && now >= state.openUntil && healthy !== false) {
    const reason = healthy === true ? 'open period over and the health check passed' : 'open period over';
    return { state: move(state, 'half-open', reason, now, actor, { probeFailures: 0, ...HALF_OPEN_CLEAN, halfOpenAt: now }, transitions), transitions };
  }
  return { state, transitions };
}

/**
 * Time passes in half-open: past `halfOpenMaxMs` without a verdict (probes whose outcome never came:
 * an event lost, a job that still runs), the breaker reopens for its current open time (the trips do
 * not grow: nothing failed), then probes afresh in a new generation. A breaker without `halfOpenAt`
 * (stored before it existed) counts from `now`'s first look.
 */
export function boundHalfOpen(state: BreakerState, cfg: BreakerConfig, now: number, rand: () => number = Math.random, actor = 'observer'): Step {
  const transitions: Transition[] = [];
  if (state.state !== 'half-open' || state.forced !== null) return { state, transitions };
  if (state.halfOpenAt === undefined) return { state: { ...state, halfOpenAt: now }, transitions };
  if (now < state.halfOpenAt + cfg.halfOpenMaxMs) return { state, transitions };
  const openUntil = now + openDuration(cfg, Math.max(1, state.trips), rand);
  const reason = `half-open for ${now - state.halfOpenAt} ms without a verdict (probes whose outcome never came)`;
  return { state: move(state, 'open', reason, now, actor, { openedAt: now, openUntil, ...HALF_OPEN_CLEAN }, transitions), transitions };
}

/** Half-open's bookkeeping, cleared whenever it is left or entered. */
const HALF_OPEN_CLEAN = { probeSuccesses: 0, probeSlow: 0, probeReleased: 0 } as const;

export type ForceAction = 'open' | 'close' | 'release' | 'reset';

/**
 * Operator actions. `open` / `close` force that state until `release` (which hands control back to
 * the rules: a released forced-open breaker probes at once) or `reset` (closed, clean window, no
 * trips). The transition's reason names the actor and, when given, the operator's note.
 */
export function force(state: BreakerState, action: ForceAction, now: number, actor: string, note?: string): Step {
  const transitions: Transition[] = [];
  const why = (what: string) => `${what} by ${actor}${note ? `: ${note}` : ''}`;
  const clean = { window: [], consecutive: 0, probeSuccesses: 0, probeFailures: 0 };
  switch (action) {
    case 'open':
      return { state: move(state, 'open', why('forced open'), now, actor, { forced: 'open', openedAt: now, openUntil: undefined }, transitions), transitions };
    case 'close':
      return { state: move(state, 'closed', why('forced closed'), now, actor, { forced: 'closed', closedAt: now, ...clean }, transitions), transitions };
    case 'reset':
      return { state: move(state, 'closed', why('reset'), now, actor, { forced: null, trips: 0, closedAt: now, openUntil: undefined, ...clean }, transitions), transitions };
    case 'release':
      if (state.forced === 'open') {
        return { state: move(state, 'half-open', why('released'), now, actor, { forced: null, ...clean, halfOpenAt: now }, transitions), transitions };
      }
      if (state.forced === 'closed') {
        return { state: move(state, 'closed', why('released'), now, actor, { forced: null, ...clean }, transitions), transitions };
      }
      return { state, transitions };
  }
}

/** A retry-after carried by an error message ("retry after 30s", "Retry-After: 1500ms", "retry-after=20"). */
export function retryAfterOf(message: string): number | undefined {
  const m = /retry[- ]?after[:=\s]+(\d+(?:\.\d+)?)\s*(ms|s|sec|seconds)?\b/i.exec(message);
  if (!m) return undefined;
  const v = Number(m[1]);
  return m[2] === 'ms' ? v : v * 1000;
}

/** Does this failure count against the downstream? (A job's own validation error does not.) */
export function countsAsFailure(errorText: string, rules: { count: readonly RegExp[]; ignore: readonly RegExp[] }): boolean {
  if (rules.ignore.some((r) => r.test(errorText))) return false;
  return rules.count.length === 0 || rules.count.some((r) => r.test(errorText));
}
