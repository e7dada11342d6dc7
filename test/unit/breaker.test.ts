/**
 * The breaker state machine with a fake clock: every transition and edge.
 */
import {
  backoff,
  boundHalfOpen,
  countsAsFailure,
  DEFAULT_BREAKER,
  force,
  INITIAL_BREAKER,
  recordOutcomes,
  retryAfterOf,
  tick,
  type BreakerConfig,
  type BreakerOutcome,
  type BreakerState,
} from '../../src/core/breaker';
import { outcomeOfEvent } from '../../src/governance/breaker-events';

const T0 = Date.UTC(2026, 10, 27, 12);
const noJitter = () => 0.5; // jitter factor exactly 1
const cfg = (over: Partial<BreakerConfig> = {}): BreakerConfig => ({ ...DEFAULT_BREAKER, jitter: 0, ...over });
const ok = (at: number, gen = 1): BreakerOutcome => ({ at, gen, failed: false, slow: false });
const fail = (at: number, gen = 1, retryAfterMs?: number): BreakerOutcome => ({ at, gen, failed: true, slow: false, ...(retryAfterMs ? { retryAfterMs } : {}) });
const slowOk = (at: number, gen = 1): BreakerOutcome => ({ at, gen, failed: false, slow: true });

function feed(state: BreakerState, c: BreakerConfig, outcomes: BreakerOutcome[], now = outcomes.at(-1)?.at ?? T0) {
  return recordOutcomes(state, c, outcomes, now, noJitter);
}

describe('closed → open', () => {
  it('trips on N consecutive failures, and a success resets the count', () => {
    const c = cfg({ consecutiveFailures: 3, minimumCalls: 1000 });
    let s = feed(INITIAL_BREAKER, c, [fail(T0), fail(T0 + 1), ok(T0 + 2), fail(T0 + 3), fail(T0 + 4)]).state;
    expect(s).toMatchObject({ state: 'closed', consecutive: 2 });
    const step = feed(s, c, [fail(T0 + 5)]);
    s = step.state;
    expect(s).toMatchObject({ state: 'open', gen: 2, trips: 1, openUntil: T0 + 5 + 10_000 });
    expect(step.transitions).toEqual([expect.objectContaining({ from: 'closed', to: 'open', reason: '3 consecutive failures', gen: 2 })]);
  });

  it('trips on the failure rate only once minimumCalls outcomes are in the window', () => {
    const c = cfg({ consecutiveFailures: 1000, minimumCalls: 10, failureRateThreshold: 0.5 });
    const nine = Array.from({ length: 9 }, (_, i) => (i % 2 ? ok(T0 + i) : fail(T0 + i))); // 5 of 9 failed
    expect(feed(INITIAL_BREAKER, c, nine).state.state).toBe('closed');
    const tenth = feed(INITIAL_BREAKER, c, [...nine, ok(T0 + 9)]);
    expect(tenth.state.state).toBe('open');
    expect(tenth.transitions[0]!.reason).toBe('failure rate 50 % over 10 calls');
  });

  it('slides a time window: old failures stop counting', () => {
    const c = cfg({ consecutiveFailures: 1000, minimumCalls: 4, failureRateThreshold: 0.5, window: { type: 'time', size: 10_000 } });
    let s = feed(INITIAL_BREAKER, c, [fail(T0), fail(T0 + 1), ok(T0 + 2)]).state;
    // 20 s later the two failures are out of the window: 4 fresh calls with 1 failure do not trip.
    s = feed(s, c, [ok(T0 + 20_000), ok(T0 + 20_001), ok(T0 + 20_002), fail(T0 + 20_003)]).state;
    expect(s.state).toBe('closed');
    expect(s.window.reduce((n, w) => n + w.calls, 0)).toBe(4);
  });

  it('slides a count window: only the last N outcomes count', () => {
    const c = cfg({ consecutiveFailures: 1000, minimumCalls: 4, failureRateThreshold: 0.5, window: { type: 'count', size: 4 } });
    // 1 failure in the first 4 (25 %): no trip; then it slides out of the window.
    const s = feed(INITIAL_BREAKER, c, [fail(T0), ok(T0 + 1), ok(T0 + 2), ok(T0 + 3), ok(T0 + 4), ok(T0 + 5)]).state;
    expect(s.state).toBe('closed');
    expect(s.window.map((w) => w.failures)).toEqual([0, 0, 0, 0]);
    expect(feed(s, c, [fail(T0 + 6), fail(T0 + 7)]).state.state).toBe('open');
  });

  it('trips on the slow-call rate', () => {
    const c = cfg({ consecutiveFailures: 1000, minimumCalls: 5, slowCallMs: 1000, slowCallRateThreshold: 0.6 });
    const step = feed(INITIAL_BREAKER, c, [slowOk(T0), slowOk(T0 + 1), ok(T0 + 2), slowOk(T0 + 3), ok(T0 + 4)]);
    expect(step.state.state).toBe('open');
    expect(step.transitions[0]!.reason).toBe('slow-call rate 60 % over 5 calls');
  });
});

describe('open → half-open → closed / open', () => {
  const c = cfg({ consecutiveFailures: 2, minimumCalls: 1000, halfOpenProbes: 3, openMs: 1000, maxOpenMs: 5000 });
  const tripped = () => feed(INITIAL_BREAKER, c, [fail(T0), fail(T0 + 1)]).state;

  it('moves to half-open by time, not by the arrival of a job', () => {
    const s = tripped();
    expect(tick(s, T0 + 1000).state.state).toBe('open');
    const step = tick(s, T0 + 1001);
    expect(step.state).toMatchObject({ state: 'half-open', gen: 3 });
    expect(step.transitions[0]).toMatchObject({ from: 'open', to: 'half-open', reason: 'open period over' });
  });

  it('waits for a passing health check when the downstream has one', () => {
    const s = tripped();
    expect(tick(s, T0 + 2000, false).state.state).toBe('open');
    expect(tick(s, T0 + 2000, true).transitions[0]!.reason).toBe('open period over and the health check passed');
  });

  it('closes when every probe succeeds', () => {
    let s = tick(tripped(), T0 + 2000).state;
    s = feed(s, c, [ok(T0 + 2100, s.gen), ok(T0 + 2200, s.gen)]).state;
    expect(s).toMatchObject({ state: 'half-open', probeSuccesses: 2 });
    const step = feed(s, c, [ok(T0 + 2300, s.gen)]);
    expect(step.state).toMatchObject({ state: 'closed', trips: 0, closedAt: T0 + 2300 });
    expect(step.transitions[0]).toMatchObject({ from: 'half-open', to: 'closed', reason: '3 probes succeeded' });
  });

  it('reopens on a failed probe, for longer each time, up to the cap', () => {
    let s = tick(tripped(), T0 + 2000).state;
    const durations = [s.openUntil! - T0 - 1];
    let now = T0 + 2000;
    for (let i = 0; i < 5; i++) {
      s = feed(s, c, [fail(now, s.gen)]).state;
      expect(s.state).toBe('open');
      durations.push(s.openUntil! - now);
      now = s.openUntil! + 1;
      s = tick(s, now).state;
    }
    expect(durations).toEqual([1000, 2000, 4000, 5000, 5000, 5000]);
    expect([1, 2, 3, 4, 10].map((n) => backoff(c, n))).toEqual([1000, 2000, 4000, 5000, 5000]);
  });

  it('spreads open durations with jitter', () => {
    const j = cfg({ consecutiveFailures: 1, minimumCalls: 1000, jitter: 0.2, openMs: 10_000 });
    const lo = recordOutcomes(INITIAL_BREAKER, j, [fail(T0)], T0, () => 0).state.openUntil! - T0;
    const hi = recordOutcomes(INITIAL_BREAKER, j, [fail(T0)], T0, () => 0.999999).state.openUntil! - T0;
    expect([lo, hi]).toEqual([8000, 12000]);
  });

  it('opens for the retry-after a failure carries', () => {
    const s = feed(INITIAL_BREAKER, c, [fail(T0), fail(T0 + 1, 1, 3500)]).state;
    expect(s.openUntil).toBe(T0 + 1 + 3500);
  });
});

describe('generations', () => {
  it('ignores results of jobs admitted before a transition', () => {
    const c = cfg({ consecutiveFailures: 2, minimumCalls: 1000, halfOpenProbes: 1, openMs: 1000 });
    let s = feed(INITIAL_BREAKER, c, [fail(T0), fail(T0 + 1)]).state; // open, gen 2
    s = tick(s, T0 + 2000).state; // half-open, gen 3
    // A late failure of a job admitted while closed (gen 1) does not reopen the half-open breaker.
    s = feed(s, c, [fail(T0 + 2100, 1)]).state;
    expect(s.state).toBe('half-open');
    s = feed(s, c, [ok(T0 + 2200, 3)]).state; // the probe succeeds: closed, gen 4
    expect(s).toMatchObject({ state: 'closed', gen: 4 });
    // Late outcomes of generation 1 or 3 do not count in the new closed window either.
    s = feed(s, c, [fail(T0 + 2300, 1), fail(T0 + 2301, 3)]).state;
    expect(s).toMatchObject({ state: 'closed', consecutive: 0, window: [] });
  });
});

describe('forced states', () => {
  const c = cfg({ consecutiveFailures: 2, minimumCalls: 1000, openMs: 1000 });

  it('stays forced open past any open period, until released (then probes at once)', () => {
    let s = force(INITIAL_BREAKER, 'open', T0, 'ops').state;
    expect(s).toMatchObject({ state: 'open', forced: 'open' });
    expect(tick(s, T0 + 3_600_000).state.state).toBe('open');
    const released = force(s, 'release', T0 + 5000, 'ops');
    s = released.state;
    expect(s).toMatchObject({ state: 'half-open', forced: null });
    expect(released.transitions[0]).toMatchObject({ reason: 'released by ops', actor: 'ops' });
  });

  it("names the operator's reason in the transition, when given", () => {
    const opened = force(INITIAL_BREAKER, 'open', T0, 'alice', 'scanner vendor maintenance');
    expect(opened.transitions[0]).toMatchObject({ from: 'closed', to: 'open', reason: 'forced open by alice: scanner vendor maintenance', actor: 'alice' });
    expect(force(opened.state, 'reset', T0 + 1, 'bob').transitions[0]).toMatchObject({ reason: 'reset by bob', actor: 'bob' });
  });

  it('stays forced closed whatever fails, until released', () => {
    let s = force(INITIAL_BREAKER, 'close', T0, 'ops').state;
    s = feed(s, c, [fail(T0 + 1, s.gen), fail(T0 + 2, s.gen), fail(T0 + 3, s.gen)]).state;
    expect(s).toMatchObject({ state: 'closed', forced: 'closed' });
    s = force(s, 'release', T0 + 10, 'ops').state;
    s = feed(s, c, [fail(T0 + 11, s.gen), fail(T0 + 12, s.gen)]).state;
    expect(s.state).toBe('open');
  });

  it('resets to closed with a clean slate', () => {
    let s = feed(INITIAL_BREAKER, c, [fail(T0), fail(T0 + 1)]).state;
    s = force(s, 'reset', T0 + 5, 'ops').state;
    expect(s).toMatchObject({ state: 'closed', forced: null, trips: 0, window: [], consecutive: 0 });
  });
});

describe('failure classification', () => {
  const rules = { count: [], ignore: [/^UnrecoverableError\b/, /^ValidationError\b/] };
  it('does not count a job\'s own validation error', () => {
    expect(countsAsFailure('UnrecoverableError: bad input', rules)).toBe(false);
    expect(countsAsFailure('ValidationError: sbom missing', rules)).toBe(false);
    expect(countsAsFailure('Error: connect ECONNREFUSED 10.0.0.7:443', rules)).toBe(true);
    expect(countsAsFailure('Error: 503', { count: [/ECONNREFUSED|503/], ignore: [] })).toBe(true);
    expect(countsAsFailure('Error: 404', { count: [/ECONNREFUSED|503/], ignore: [] })).toBe(false);
  });

  it('reads a retry-after from the error message', () => {
    expect(retryAfterOf('scanner overloaded, retry after 30s')).toBe(30_000);
    expect(retryAfterOf('Retry-After: 1500ms')).toBe(1500);
    expect(retryAfterOf('retry-after=20')).toBe(20_000);
    expect(retryAfterOf('boom')).toBeUndefined();
  });
});

describe('issue 13: a half-open breaker never wedges', () => {
  const halfOpen = (c: BreakerConfig) => {
    const opened = feed(INITIAL_BREAKER, c, [fail(T0), fail(T0 + 1), fail(T0 + 2)]).state;
    return tick(opened, opened.openUntil!).state;
  };

  it('a probe whose outcome the rules ignore gives its permit back; the next probe decides', () => {
    const c = cfg({ consecutiveFailures: 3, halfOpenProbes: 1 });
    const s = halfOpen(c);
    expect(s).toMatchObject({ state: 'half-open', halfOpenAt: s.openUntil });
    const ignored = recordOutcomes(s, c, [{ at: T0 + 20_000, gen: s.gen, failed: false, slow: false, ignored: true }], T0 + 20_000, noJitter).state;
    expect(ignored).toMatchObject({ state: 'half-open', probeReleased: 1, probeSuccesses: 0 });
    expect(recordOutcomes(ignored, c, [ok(T0 + 20_001, s.gen)], T0 + 20_001, noJitter).state.state).toBe('closed');
  });

  it('half-open past halfOpenMaxMs without a verdict reopens for the current open time, then probes again', () => {
    const c = cfg({ consecutiveFailures: 3, halfOpenProbes: 1, halfOpenMaxMs: 30_000 });
    const s = halfOpen(c);
    expect(boundHalfOpen(s, c, s.halfOpenAt! + 29_999).transitions).toEqual([]);
    const step = boundHalfOpen(s, c, s.halfOpenAt! + 30_000, noJitter);
    expect(step.state).toMatchObject({ state: 'open', trips: 1, gen: s.gen + 1, openUntil: s.halfOpenAt! + 30_000 + 10_000 });
    expect(step.transitions[0]!.reason).toMatch(/^half-open for 30000 ms without a verdict/);
    // The probe that never reported is of an old generation now; the next half-open probes afresh.
    const again = tick(step.state, step.state.openUntil!).state;
    expect(again).toMatchObject({ state: 'half-open', probeSuccesses: 0, probeReleased: 0 });
  });
});

describe('issue 13: the slow-call rule, fully wired', () => {
  const slowCfg = cfg({ consecutiveFailures: 3, halfOpenProbes: 2, minimumCalls: 1000, slowCallMs: 1000, slowCallRateThreshold: 0.5 });

  it('half-open decides on slowness too: slow probes reopen it, and the open time grows', () => {
    const opened = feed(INITIAL_BREAKER, slowCfg, [fail(T0), fail(T0 + 1), fail(T0 + 2)]).state;
    const s = tick(opened, opened.openUntil!).state;
    const at = opened.openUntil! + 5000;
    const step = recordOutcomes(s, slowCfg, [slowOk(at, s.gen), slowOk(at, s.gen)], at, noJitter);
    expect(step.state).toMatchObject({ state: 'open', trips: 2, openUntil: at + 20_000 });
    expect(step.transitions[0]!.reason).toBe('2 of 2 probes were slow');
    // Fast probes close it.
    const s2 = tick(step.state, step.state.openUntil!).state;
    expect(recordOutcomes(s2, slowCfg, [ok(at + 30_000, s2.gen), slowOk(at + 30_000, s2.gen)], at + 30_000, noJitter).state.state).toBe('open');
    const s3 = tick(opened, opened.openUntil!).state;
    expect(recordOutcomes(s3, slowCfg, [ok(at, s3.gen), ok(at, s3.gen)], at, noJitter).state.state).toBe('closed');
  });

  it('a slow failure counts as slow as well as failed', () => {
    const settings = { slowCallMs: 1000 };
    const events = [
      { key: 'a', execJobId: 'tg-a', kind: 'failed' as const, at: T0 + 1500, startedAt: T0, gen: 1, errorText: 'Error: timeout' },
      { key: 'b', execJobId: 'tg-b', kind: 'failed' as const, at: T0 + 200, startedAt: T0, gen: 1, errorText: 'Error: refused' },
    ];
    expect(events.map((e) => outcomeOfEvent(e, settings, { count: [], ignore: [] }))).toEqual([
      expect.objectContaining({ failed: true, slow: true }),
      expect.objectContaining({ failed: true, slow: false }),
    ]);
  });
});

describe('issue 13: one clock', () => {
  it("counts outcomes when the observer counts them, so a lagging observer's outcomes still trip the rate rule", () => {
    const c = cfg({ consecutiveFailures: 1000, minimumCalls: 4, failureRateThreshold: 0.5, window: { type: 'time', size: 10_000 } });
    // Events of a minute ago, counted now: the window is the observer's, not the events'.
    const late = T0 + 60_000;
    const step = recordOutcomes(INITIAL_BREAKER, c, [fail(T0), fail(T0 + 1), ok(T0 + 2), fail(T0 + 3)], late, noJitter);
    expect(step.state.state).toBe('open');
    // And the open period starts when the trip is counted: a lag does not shorten it.
    expect(step.state.openUntil).toBe(late + 10_000);
  });
});
