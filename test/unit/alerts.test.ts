/**
 * The pure alert decisions of src/core/alerts.ts with a hand-driven clock (every function takes `now`
 * or a random source as an argument), and the `alerts` / `notifier` config sections' validation.
 */
import { parseConfig } from '../../src/config/file';
import {
  above,
  below,
  effectiveRule,
  parseRetryAfter,
  retryDelay,
  step,
  targetWants,
  type CrossingState,
  type Observation,
} from '../../src/core/alerts';
import { testConfigInput } from '../support/services';
import { configError } from '../support/config-error';

const KEY = '["saturation","acme"]';
const T0 = Date.UTC(2026, 11, 2, 12, 0, 0);

const hot = (sustainMs = 0): Observation => ({ key: KEY, hot: true, cool: false, sustainMs });
const cool = (sustainMs = 0): Observation => ({ key: KEY, hot: false, cool: true, sustainMs });
const band = (sustainMs = 0): Observation => ({ key: KEY, hot: false, cool: false, sustainMs });

/** What the Lua twin does after an opening: store the event id it gave the alert. */
function opened(state: CrossingState, obs: Observation, now: number, id: string): void {
  expect(step(state, obs, now)).toEqual({ kind: 'opened' });
  expect(state.open).toBe('');
  state.open = id;
}

describe('step', () => {
  it('opens at once when hot with sustainMs 0, and not when merely not hot', () => {
    const s: CrossingState = {};
    expect(step(s, band(), T0)).toEqual({ kind: 'none' });
    expect(step(s, cool(), T0)).toEqual({ kind: 'none' });
    expect(s).toEqual({});
    expect(step(s, hot(), T0)).toEqual({ kind: 'opened' });
    expect(s.open).toBe('');
    expect(s.since).toBeUndefined();
  });

  it('opens a sustained condition only once it has been hot for sustainMs', () => {
    const s: CrossingState = {};
    let now = T0;
    expect(step(s, hot(500), now)).toEqual({ kind: 'none' });
    expect(s).toEqual({ since: T0 });
    now += 300;
    expect(step(s, hot(500), now)).toEqual({ kind: 'none' });
    expect(s.since).toBe(T0); // not moved by later hot observations
    now = T0 + 499;
    expect(step(s, hot(500), now)).toEqual({ kind: 'none' });
    now = T0 + 500; // exactly sustainMs later
    expect(step(s, hot(500), now)).toEqual({ kind: 'opened' });
    expect(s.open).toBe('');
    expect(s.since).toBeUndefined();
  });

  it('restarts the sustain time after a cool observation, and after one in the hysteresis band', () => {
    for (const between of [cool(500), band(500)]) {
      const s: CrossingState = {};
      expect(step(s, hot(500), T0)).toEqual({ kind: 'none' });
      expect(step(s, between, T0 + 200)).toEqual({ kind: 'none' });
      expect(s.since).toBeUndefined();
      expect(step(s, hot(500), T0 + 400)).toEqual({ kind: 'none' });
      expect(s.since).toBe(T0 + 400);
      // 500 ms after the first hot observation, but only 100 ms into the new streak.
      expect(step(s, hot(500), T0 + 500)).toEqual({ kind: 'none' });
      expect(step(s, hot(500), T0 + 899)).toEqual({ kind: 'none' });
      expect(step(s, hot(500), T0 + 900)).toEqual({ kind: 'opened' });
    }
  });

  it('keeps an open alert open in the hysteresis band and while hot; resolves it only when cool, with its id', () => {
    const s: CrossingState = {};
    opened(s, hot(), T0, '1764676800000-0');
    expect(step(s, hot(), T0 + 10)).toEqual({ kind: 'none' }); // no second opening
    expect(step(s, band(), T0 + 20)).toEqual({ kind: 'none' });
    expect(step(s, band(), T0 + 30)).toEqual({ kind: 'none' });
    expect(s.open).toBe('1764676800000-0');
    expect(step(s, cool(), T0 + 40)).toEqual({ kind: 'resolved', id: '1764676800000-0' });
    expect(s).toEqual({});
    // Resolved: cool or in the band again changes nothing.
    expect(step(s, cool(), T0 + 50)).toEqual({ kind: 'none' });
    expect(step(s, band(), T0 + 60)).toEqual({ kind: 'none' });
  });

  it('re-arms after resolving: the next crossing opens a new alert (with its own sustain time)', () => {
    const s: CrossingState = {};
    opened(s, hot(0), T0, 'first');
    expect(step(s, cool(100), T0 + 1)).toEqual({ kind: 'resolved', id: 'first' });
    expect(step(s, hot(100), T0 + 2)).toEqual({ kind: 'none' });
    expect(s.since).toBe(T0 + 2);
    expect(step(s, hot(100), T0 + 101)).toEqual({ kind: 'none' });
    opened(s, hot(100), T0 + 102, 'second');
    expect(step(s, cool(100), T0 + 103)).toEqual({ kind: 'resolved', id: 'second' });
  });

  it('does not open a sustained condition that was already open before (since is dropped on open and resolve)', () => {
    const s: CrossingState = { since: T0 - 10_000 };
    opened(s, hot(500), T0, 'x'); // long since hot
    expect(s.since).toBeUndefined();
    s.since = T0; // stale, as if left behind
    expect(step(s, cool(500), T0 + 1)).toEqual({ kind: 'resolved', id: 'x' });
    expect(s.since).toBeUndefined();
  });
});

describe('above / below', () => {
  it('above: hot at or over the threshold, cool only under threshold - margin', () => {
    expect(above(80, 80, 5)).toEqual({ hot: true, cool: false });
    expect(above(81, 80, 5)).toEqual({ hot: true, cool: false });
    expect(above(79.999, 80, 5)).toEqual({ hot: false, cool: false });
    expect(above(75, 80, 5)).toEqual({ hot: false, cool: false }); // exactly threshold - margin: still in the band
    expect(above(74.999, 80, 5)).toEqual({ hot: false, cool: true });
    expect(above(0, 80, 5)).toEqual({ hot: false, cool: true });
  });

  it('above with margin 0: no band, never hot and cool at once', () => {
    expect(above(80, 80, 0)).toEqual({ hot: true, cool: false });
    expect(above(79.9, 80, 0)).toEqual({ hot: false, cool: true });
  });

  it('below: hot under the threshold, cool only at or over threshold + margin', () => {
    expect(below(50, 50, 5)).toEqual({ hot: false, cool: false });
    expect(below(49.999, 50, 5)).toEqual({ hot: true, cool: false });
    expect(below(0, 50, 5)).toEqual({ hot: true, cool: false });
    expect(below(54.999, 50, 5)).toEqual({ hot: false, cool: false });
    expect(below(55, 50, 5)).toEqual({ hot: false, cool: true }); // exactly threshold + margin
    expect(below(100, 50, 5)).toEqual({ hot: false, cool: true });
    expect(below(50, 50, 0)).toEqual({ hot: false, cool: true });
  });
});

describe('retryDelay', () => {
  const policy = { baseDelayMs: 1000, maxDelayMs: 60_000 };
  const zero = () => 0;
  const one = () => 1;

  it('doubles from the base with each failed attempt (full jitter value: random 1)', () => {
    expect([1, 2, 3, 4, 5].map((a) => retryDelay(a, policy, one))).toEqual([1000, 2000, 4000, 8000, 16000]);
  });

  it('jitters between half (random 0) and all (random 1) of the delay', () => {
    expect([1, 2, 3, 4].map((a) => retryDelay(a, policy, zero))).toEqual([500, 1000, 2000, 4000]);
    expect(retryDelay(3, policy, () => 0.5)).toBe(3000);
  });

  it('treats 0 attempts as the first', () => {
    expect(retryDelay(0, policy, one)).toBe(1000);
  });

  it('never waits more than maxDelayMs, however many attempts', () => {
    expect(retryDelay(7, policy, one)).toBe(60_000); // 64 s capped
    expect(retryDelay(7, policy, zero)).toBe(30_000); // jitter applies to the capped value
    expect(retryDelay(100, policy, one)).toBe(60_000);
    expect(retryDelay(10_000, policy, zero)).toBe(30_000);
  });

  it("honours a receiver's Retry-After when it is longer, up to maxDelayMs", () => {
    expect(retryDelay(1, policy, one, 5000)).toBe(5000);
    expect(retryDelay(1, policy, zero, 700)).toBe(700); // over the jittered 500
    expect(retryDelay(3, policy, one, 1000)).toBe(4000); // shorter: the backoff wins
    expect(retryDelay(1, policy, one, 0)).toBe(1000);
    expect(retryDelay(1, policy, one, 3_600_000)).toBe(60_000);
  });

  it('returns whole milliseconds', () => {
    expect(retryDelay(1, { baseDelayMs: 15, maxDelayMs: 1000 }, () => 0.3)).toBe(10); // 7.5 + 2.25
  });
});

describe('parseRetryAfter', () => {
  const now = Date.parse('Wed, 02 Dec 2026 12:00:00 GMT');

  it('reads delay-seconds', () => {
    expect(parseRetryAfter('120', now)).toBe(120_000);
    expect(parseRetryAfter('0', now)).toBe(0);
    expect(parseRetryAfter(' 7 ', now)).toBe(7000);
  });

  it('reads an HTTP date relative to now (never negative)', () => {
    expect(parseRetryAfter('Wed, 02 Dec 2026 12:00:30 GMT', now)).toBe(30_000);
    expect(parseRetryAfter('Wed, 02 Dec 2026 12:05:00 GMT', now + 60_000)).toBe(240_000);
    expect(parseRetryAfter('Wed, 02 Dec 2026 11:59:00 GMT', now)).toBe(0);
  });

  it('gives undefined when absent or unreadable', () => {
    expect(parseRetryAfter(undefined, now)).toBeUndefined();
    expect(parseRetryAfter(null, now)).toBeUndefined();
    expect(parseRetryAfter('', now)).toBeUndefined();
    expect(parseRetryAfter('soon', now)).toBeUndefined();
    expect(parseRetryAfter('5s', now)).toBeUndefined();
    expect(parseRetryAfter('1e3', now)).toBeUndefined();
  });
});

describe('targetWants', () => {
  it('takes everything without filters', () => {
    expect(targetWants({}, 'breaker', undefined)).toBe(true);
    expect(targetWants({}, 'period_usage', 'acme')).toBe(true);
  });

  it('filters by kind', () => {
    const f = { kinds: ['period_usage', 'backlog'] };
    expect(targetWants(f, 'period_usage', 'acme')).toBe(true);
    expect(targetWants(f, 'backlog', undefined)).toBe(true);
    expect(targetWants(f, 'breaker', undefined)).toBe(false);
    expect(targetWants(f, 'saturation', 'acme')).toBe(false);
  });

  it('filters by tenant, leaving out downstream alerts (no tenant)', () => {
    const f = { tenants: ['acme'] };
    expect(targetWants(f, 'period_usage', 'acme')).toBe(true);
    expect(targetWants(f, 'period_usage', 'globex')).toBe(false);
    expect(targetWants(f, 'breaker', undefined)).toBe(false);
    expect(targetWants(f, 'capacity_cut', undefined)).toBe(false);
  });

  it('needs both filters to agree when both are set', () => {
    const f = { kinds: ['saturation'], tenants: ['acme'] };
    expect(targetWants(f, 'saturation', 'acme')).toBe(true);
    expect(targetWants(f, 'backlog', 'acme')).toBe(false);
    expect(targetWants(f, 'saturation', 'globex')).toBe(false);
  });
});

describe('effectiveRule', () => {
  const defaults = { periodThresholds: [80, 95, 100], saturationForMs: 60_000, backlogPercent: 90 };

  it('is the defaults, unmuted, without an own rule', () => {
    expect(effectiveRule(defaults, undefined)).toEqual({ ...defaults, muted: false });
    expect(effectiveRule(defaults, {})).toEqual({ ...defaults, muted: false });
  });

  it('keeps null overrides as null (off), and falls back where a field is undefined', () => {
    expect(effectiveRule(defaults, { saturationForMs: null })).toEqual({ periodThresholds: [80, 95, 100], saturationForMs: null, backlogPercent: 90, muted: false });
    expect(effectiveRule(defaults, { backlogPercent: null, saturationForMs: undefined })).toEqual({
      periodThresholds: [80, 95, 100],
      saturationForMs: 60_000,
      backlogPercent: null,
      muted: false,
    });
    expect(effectiveRule({ ...defaults, saturationForMs: null }, { saturationForMs: undefined }).saturationForMs).toBeNull();
  });

  it('takes every field the own rule sets', () => {
    expect(effectiveRule(defaults, { periodThresholds: [50], saturationForMs: 1000, backlogPercent: 10, muted: true })).toEqual({
      periodThresholds: [50],
      saturationForMs: 1000,
      backlogPercent: 10,
      muted: true,
    });
    expect(effectiveRule(defaults, { periodThresholds: [] }).periodThresholds).toEqual([]);
    expect(effectiveRule(defaults, { saturationForMs: 0 }).saturationForMs).toBe(0);
  });
});

describe('alerts and notifier config', () => {
  const SECRET = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
  const hook = (over: Record<string, unknown> = {}) => ({ name: 'ops', url: 'https://hooks.example.com/tollgate', secret: SECRET, ...over });


  it('fills the defaults', () => {
    const cfg = parseConfig(testConfigInput());
    expect(cfg.alerts).toMatchObject({ enabled: true, periodThresholds: [80, 95, 100], rearmMarginPercent: 5, saturationForMs: 60_000, backlogPercent: 90 });
    expect(cfg.notifier.queue).toEqual({ enabled: true, name: 'notifications' });
    expect(cfg.notifier.webhooks).toEqual([]);
    expect(cfg.notifier.retry).toEqual({ maxAttempts: 12, baseDelayMs: 1000, maxDelayMs: 300_000 });
  });

  it('accepts a valid webhook', () => {
    const cfg = parseConfig(testConfigInput({ notifier: { webhooks: [hook({ kinds: ['breaker'], tenants: ['acme'] })] } }));
    expect(cfg.notifier.webhooks).toEqual([{ ...hook(), kinds: ['breaker'], tenants: ['acme'], timeoutMs: 10_000 }]);
  });

  it.each([
    ['a secret not in whsec_ form', { webhooks: [hook({ secret: 'MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw' })] }, 'notifier.webhooks[0].secret', /whsec_/],
    ['a too short whsec_ secret', { webhooks: [hook({ secret: 'whsec_abc' })] }, 'notifier.webhooks[0].secret', /whsec_/],
    ['two webhooks of one name', { webhooks: [hook(), hook({ url: 'https://other.example.com/' })] }, 'notifier.webhooks[1].name', /"ops" is declared twice/],
    ['a base delay over the maximum', { retry: { baseDelayMs: 5000, maxDelayMs: 4000 } }, 'notifier.retry.baseDelayMs', /must not exceed retry\.maxDelayMs/],
    ['a non-http URL', { webhooks: [hook({ url: 'ftp://hooks.example.com/x' })] }, 'notifier.webhooks[0].url', /http or https/],
    ['a queue used for execution', { queue: { name: 'exec.scanner' } }, 'notifier.queue.name', /already used by downstreams\[0\]/],
    ['the ingress queue', { queue: { name: 'ingress' } }, 'notifier.queue.name', /already used by queues\.ingress/],
  ])('refuses %s', (_what, notifier, path, message) => {
    const err = configError(testConfigInput({ notifier } as never));
    expect(err.code).toBe('TG_ERR_CONFIG');
    expect(err.message).toContain(`${path}: `);
    expect(err.message).toMatch(message);
  });

  it('allows a base delay equal to the maximum, and an execution queue name when the queue is off', () => {
    expect(parseConfig(testConfigInput({ notifier: { retry: { baseDelayMs: 4000, maxDelayMs: 4000 } } })).notifier.retry.baseDelayMs).toBe(4000);
    expect(parseConfig(testConfigInput({ notifier: { queue: { enabled: false, name: 'exec.scanner' } } })).notifier.queue.enabled).toBe(false);
  });
});
