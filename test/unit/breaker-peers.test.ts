/**
 * The peer libraries' documented breaker behaviour (resilience4j, cockatiel, gobreaker, opossum, Polly),
 * replayed in our own words and code through tollgate's pure breaker with a fake clock. Each case says
 * whether tollgate matches, or differs on purpose (the reasons: docs/breakers.md, "Compared with the
 * peer libraries").
 */
import {
  boundHalfOpen,
  DEFAULT_BREAKER,
  force,
  INITIAL_BREAKER,
  recordOutcomes,
  tick,
  type BreakerConfig,
  type BreakerOutcome,
  type BreakerState,
} from '../../src/core/breaker';

const T0 = Date.UTC(2026, 11, 2, 9);
const rand = () => 0.5; // no jitter
const cfg = (over: Partial<BreakerConfig> = {}): BreakerConfig => ({ ...DEFAULT_BREAKER, jitter: 0, consecutiveFailures: 1_000_000, ...over });
const out = (gen: number, kind: 'ok' | 'fail' | 'slow' | 'slow-fail' | 'ignored', extra: Partial<BreakerOutcome> = {}): BreakerOutcome => ({
  at: T0,
  gen,
  failed: kind === 'fail' || kind === 'slow-fail',
  slow: kind === 'slow' || kind === 'slow-fail',
  ...(kind === 'ignored' ? { ignored: true } : {}),
  ...extra,
});
const run = (s: BreakerState, c: BreakerConfig, kinds: Array<Parameters<typeof out>[1]>, now: number) => recordOutcomes(s, c, kinds.map((k) => out(s.gen, k)), now, rand);
const openThenHalfOpen = (c: BreakerConfig): BreakerState => {
  const opened = run(INITIAL_BREAKER, c, Array(Math.max(c.minimumCalls, 1)).fill('fail'), T0).state;
  expect(opened.state).toBe('open');
  return tick(opened, opened.openUntil!).state;
};

describe('resilience4j', () => {
  it('matches: no rate verdict before minimumNumberOfCalls, however many failed', () => {
    const c = cfg({ minimumCalls: 5, window: { type: 'count', size: 10 } });
    expect(run(INITIAL_BREAKER, c, ['fail', 'fail', 'fail', 'fail'], T0).state.state).toBe('closed');
    expect(run(INITIAL_BREAKER, c, ['fail', 'fail', 'fail', 'fail', 'fail'], T0).state.state).toBe('open');
  });

  it('matches: opens when the failure rate equals the threshold (5 of 10 at 50 %)', () => {
    const c = cfg({ minimumCalls: 10, window: { type: 'count', size: 10 } });
    const kinds = Array.from({ length: 10 }, (_, i) => (i < 5 ? 'fail' : 'ok')) as Array<'fail' | 'ok'>;
    expect(run(INITIAL_BREAKER, c, kinds, T0).state.state).toBe('open');
  });

  it('matches: the count-based window keeps only the last N calls', () => {
    const c = cfg({ minimumCalls: 4, window: { type: 'count', size: 4 } });
    const s = run(INITIAL_BREAKER, c, ['fail', 'ok', 'ok', 'ok', 'ok', 'ok'], T0).state;
    expect(s.state).toBe('closed');
    expect(s.window).toHaveLength(4);
    expect(s.window.every((w) => w.failures === 0)).toBe(true); // the failure slid out
  });

  it('matches: the slow-call rate opens it, slow failed calls counting as slow', () => {
    const c = cfg({ minimumCalls: 4, failureRateThreshold: 1, slowCallMs: 1000, slowCallRateThreshold: 0.5, window: { type: 'count', size: 4 } });
    const step = run(INITIAL_BREAKER, c, ['slow', 'slow-fail', 'ok', 'ok'], T0);
    expect(step.state.state).toBe('open');
    expect(step.transitions[0]!.reason).toBe('slow-call rate 50 % over 4 calls');
  });

  it('matches: half-open evaluates slowness of the permitted calls too', () => {
    const c = cfg({ minimumCalls: 2, halfOpenProbes: 2, slowCallMs: 1000, slowCallRateThreshold: 0.5 });
    const s = openThenHalfOpen(c);
    expect(run(s, c, ['slow', 'slow'], T0 + 60_000).state.state).toBe('open');
    expect(run(s, c, ['ok', 'ok'], T0 + 60_000).state.state).toBe('closed');
  });

  it('matches: an ignored exception is neither success nor failure, and its half-open permit is released', () => {
    const c = cfg({ minimumCalls: 2, halfOpenProbes: 1 });
    const closed = run(INITIAL_BREAKER, c, ['ignored', 'ignored', 'ignored'], T0).state;
    expect(closed.window).toEqual([]);
    const s = run(openThenHalfOpen(c), c, ['ignored'], T0 + 60_000).state;
    expect(s).toMatchObject({ state: 'half-open', probeReleased: 1 });
  });

  it('matches (on by default here): maxWaitDurationInHalfOpenState moves a half-open breaker without a verdict to open', () => {
    const c = cfg({ minimumCalls: 2, halfOpenMaxMs: 5000 });
    const s = openThenHalfOpen(c);
    expect(boundHalfOpen(s, c, s.halfOpenAt! + 5000, rand).state.state).toBe('open');
  });

  it('differs: one failed probe reopens at once (resilience4j waits for all permitted calls and compares the rate)', () => {
    const c = cfg({ minimumCalls: 2, halfOpenProbes: 4 });
    const s = openThenHalfOpen(c);
    expect(run(s, c, ['ok', 'ok', 'fail'], T0 + 60_000).state.state).toBe('open');
  });

  it('differs: the open time grows with each trip by default (resilience4j waits a fixed waitDurationInOpenState)', () => {
    const c = cfg({ minimumCalls: 1, openMs: 1000, backoffMultiplier: 2, maxOpenMs: 10_000 });
    const first = openThenHalfOpen(c);
    const second = run(first, c, ['fail'], T0 + 5000).state;
    expect(second.openUntil! - (T0 + 5000)).toBe(2000);
  });

  it('matches: forced open and forced closed (FORCED_OPEN, DISABLED) ignore the rules until released', () => {
    const c = cfg({ minimumCalls: 1 });
    const disabled = force(INITIAL_BREAKER, 'close', T0, 'op').state;
    expect(run(disabled, c, ['fail', 'fail'], T0).state.state).toBe('closed');
    const forcedOpen = force(INITIAL_BREAKER, 'open', T0, 'op').state;
    expect(tick(forcedOpen, T0 + 10 * 60_000).state.state).toBe('open');
  });
});

describe('cockatiel', () => {
  it('matches: ConsecutiveBreaker(n) opens after n failures in a row; a success in between resets it', () => {
    const c = cfg({ consecutiveFailures: 3, minimumCalls: 1_000_000 });
    expect(run(INITIAL_BREAKER, c, ['fail', 'fail', 'ok', 'fail', 'fail'], T0).state.state).toBe('closed');
    expect(run(INITIAL_BREAKER, c, ['fail', 'fail', 'fail'], T0).state.state).toBe('open');
  });

  it('matches: after halfOpenAfter one trial call decides: success closes, failure reopens', () => {
    const c = cfg({ minimumCalls: 1, halfOpenProbes: 1 });
    const s = openThenHalfOpen(c);
    expect(run(s, c, ['ok'], T0 + 60_000).state.state).toBe('closed');
    expect(run(s, c, ['fail'], T0 + 60_000).state.state).toBe('open');
  });

  it('matches: halfOpenAfter with an exponential backoff, capped', () => {
    const c = cfg({ minimumCalls: 1, openMs: 1000, backoffMultiplier: 3, maxOpenMs: 5000 });
    let s = openThenHalfOpen(c);
    s = run(s, c, ['fail'], T0 + 1).state; // trip 2: 3 s
    expect(s.openUntil! - (T0 + 1)).toBe(3000);
    s = run(tick(s, s.openUntil!).state, c, ['fail'], T0 + 2).state; // trip 3: 9 s, capped at 5 s
    expect(s.openUntil! - (T0 + 2)).toBe(5000);
  });

  it('matches: isolate() holds it open until the handle is disposed (forced open, then release probes)', () => {
    const isolated = force(INITIAL_BREAKER, 'open', T0, 'op').state;
    expect(force(isolated, 'release', T0 + 1, 'op').state.state).toBe('half-open');
  });
});

describe('gobreaker', () => {
  it('matches: requests of an earlier generation do not change the new state', () => {
    const c = cfg({ minimumCalls: 1, halfOpenProbes: 1 });
    const s = openThenHalfOpen(c);
    const stale = recordOutcomes(s, c, [out(s.gen - 2, 'fail')], T0 + 60_000, rand).state;
    expect(stale.state).toBe('half-open');
  });

  it('matches: MaxRequests successes in half-open close it; any failure reopens it', () => {
    const c = cfg({ minimumCalls: 1, halfOpenProbes: 3 });
    const s = openThenHalfOpen(c);
    expect(run(s, c, ['ok', 'ok'], T0 + 60_000).state.state).toBe('half-open');
    expect(run(s, c, ['ok', 'ok', 'ok'], T0 + 60_000).state.state).toBe('closed');
  });

  it('differs: counts live in a sliding window, not cleared every Interval', () => {
    const c = cfg({ minimumCalls: 4, window: { type: 'time', size: 60_000 } });
    const s = run(INITIAL_BREAKER, c, ['fail', 'fail', 'ok'], T0).state;
    // gobreaker with Interval 30 s would have cleared these; here they still count 30 s later.
    expect(run(s, c, ['fail'], T0 + 30_000).state.state).toBe('open');
  });
});

describe('opossum', () => {
  it('matches: volumeThreshold, then errorThresholdPercentage over the rolling window', () => {
    const c = cfg({ minimumCalls: 3, failureRateThreshold: 0.5, window: { type: 'time', size: 10_000 } });
    expect(run(INITIAL_BREAKER, c, ['fail', 'fail'], T0).state.state).toBe('closed');
    expect(run(INITIAL_BREAKER, c, ['fail', 'fail', 'ok'], T0).state.state).toBe('open');
  });

  it('matches: the rolling window forgets what is older than it', () => {
    const c = cfg({ minimumCalls: 3, window: { type: 'time', size: 10_000 } });
    const s = run(INITIAL_BREAKER, c, ['fail', 'fail'], T0).state;
    expect(run(s, c, ['ok', 'ok', 'ok'], T0 + 20_000).state.state).toBe('closed');
  });

  it('differs: an errorFilter match is not a success (opossum counts it as one); it counts as nothing', () => {
    const c = cfg({ minimumCalls: 1, halfOpenProbes: 1 });
    const s = openThenHalfOpen(c);
    expect(run(s, c, ['ignored'], T0 + 60_000).state.state).toBe('half-open');
  });
});

describe('Polly', () => {
  it('matches: FailureRatio over SamplingDuration once MinimumThroughput is reached, then BreakDuration', () => {
    const c = cfg({ minimumCalls: 4, failureRateThreshold: 0.5, openMs: 30_000, window: { type: 'time', size: 30_000 } });
    const step = run(INITIAL_BREAKER, c, ['fail', 'ok', 'fail', 'ok'], T0);
    expect(step.state).toMatchObject({ state: 'open', openUntil: T0 + 30_000 });
  });

  it('matches: a trial that never completes does not keep it from probing again after a break', () => {
    const c = cfg({ minimumCalls: 1, halfOpenProbes: 1, halfOpenMaxMs: 30_000, openMs: 10_000 });
    const s = openThenHalfOpen(c);
    const reopened = boundHalfOpen(s, c, s.halfOpenAt! + 30_000, rand).state;
    const again = tick(reopened, reopened.openUntil!).state;
    expect(again).toMatchObject({ state: 'half-open', gen: s.gen + 2 });
  });

  it('matches: manual isolation and closing (Isolate, Close)', () => {
    expect(force(INITIAL_BREAKER, 'open', T0, 'op').state).toMatchObject({ state: 'open', forced: 'open' });
    expect(force(force(INITIAL_BREAKER, 'open', T0, 'op').state, 'reset', T0 + 1, 'op').state).toMatchObject({ state: 'closed', forced: null, trips: 0 });
  });
});
