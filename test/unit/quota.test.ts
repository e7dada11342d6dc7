import { gcra, gcraTokens, rescaleTat } from '../../src/core/gcra';
import { windowOf, windowsAt } from '../../src/core/periods';
import { EMPTY_STATE, evaluate, resolveQuota, specificity, type QuotaDef, type QuotaState, type ThrottleDef } from '../../src/core/quota';

const T0 = Date.UTC(2026, 10, 27, 10, 15, 0); // 2026-11-27T10:15:00Z

describe('GCRA', () => {
  const limit = { rate: 10, burst: 5 }; // one token per 100 ms, 5 at once

  it('admits a burst, then one job per interval', () => {
    let tat = 0;
    let admitted = 0;
    for (let i = 0; i < 8; i++) {
      const r = gcra(tat, T0, limit);
      if (r.ok) {
        tat = r.tat;
        admitted++;
      }
    }
    expect(admitted).toBe(5);
    const refused = gcra(tat, T0, limit);
    expect(refused).toEqual({ ok: false, retryAt: T0 + 100 });
    expect(gcra(tat, T0 + 99, limit).ok).toBe(false);
    expect(gcra(tat, T0 + 100, limit).ok).toBe(true);
  });

  it('honours the average rate over a long run (fake clock)', () => {
    let tat = 0;
    let admitted = 0;
    for (let t = T0; t < T0 + 10_000; t += 7) {
      const r = gcra(tat, t, limit);
      if (r.ok) {
        tat = r.tat;
        admitted++;
      }
    }
    expect(admitted).toBe(5 + 100 - 1); // burst plus 10 s × 10/s, minus the token still refilling
  });

  it('refills to the burst after idling, never beyond', () => {
    const r = gcra(T0 - 1, T0 + 60_000, limit);
    expect(r.ok).toBe(true);
    expect(gcraTokens(0, T0, limit)).toBe(5);
    expect(gcraTokens(T0 + 300, T0, limit)).toBe(2);
    expect(gcraTokens(T0 + 500, T0, limit)).toBe(0);
  });

  it('rescales an old debt when the rate changes, so the new rate applies at once', () => {
    // 1 job/s left a TAT 900 ms ahead (0.9 units owed); at 100/s that is 9 ms.
    expect(rescaleTat(T0 + 900, T0, 1000, 10)).toBe(T0 + 9);
    expect(rescaleTat(T0 + 900, T0, undefined, 10)).toBe(T0 + 900);
    expect(rescaleTat(T0 - 5, T0, 1000, 10)).toBe(T0 - 5);
  });

  it('charges a job costing several units as several', () => {
    const r = gcra(0, T0, limit, 3);
    expect(r).toEqual({ ok: true, tat: T0 + 300 });
    expect(gcra(T0 + 300, T0, limit, 3).ok).toBe(false);
  });
});

describe('UTC windows', () => {
  it('cut hours, days and months at UTC boundaries', () => {
    expect(windowOf('hour', T0)).toEqual({ start: Date.UTC(2026, 10, 27, 10), end: Date.UTC(2026, 10, 27, 11) });
    expect(windowOf('day', T0)).toEqual({ start: Date.UTC(2026, 10, 27), end: Date.UTC(2026, 10, 28) });
    expect(windowOf('month', T0)).toEqual({ start: Date.UTC(2026, 10, 1), end: Date.UTC(2026, 11, 1) });
    expect(windowOf('month', Date.UTC(2026, 11, 31, 23, 59))).toEqual({ start: Date.UTC(2026, 11, 1), end: Date.UTC(2027, 0, 1) });
    expect(windowOf('day', Date.UTC(2028, 1, 28, 23, 0))).toEqual({ start: Date.UTC(2028, 1, 28), end: Date.UTC(2028, 1, 29) });
  });
});

describe('quota resolution', () => {
  const fallback: QuotaDef = { id: 'default', onPeriodExceeded: 'wait', paused: false };
  const q = (id: string, extra: Partial<QuotaDef> = {}): QuotaDef => ({ id, tenantId: 'acme', onPeriodExceeded: 'wait', paused: false, ...extra });
  const defs = [
    q('q1'),
    q('q2', { downstream: 'scanner' }),
    q('q3', { jobType: 'scan.*' }),
    q('q4', { jobType: 'scan.image*' }),
    q('q5', { jobType: 'scan.*', downstream: 'scanner' }),
    q('q6', { jobType: 'attest.*', downstream: 'attestor' }),
  ];

  it('picks the most specific match: type+downstream > type > downstream > tenant-wide', () => {
    expect(resolveQuota(defs, fallback, 'scan.image', 'scanner').id).toBe('q5');
    expect(resolveQuota(defs, fallback, 'scan.image', 'policy').id).toBe('q4');
    expect(resolveQuota(defs, fallback, 'scan.sbom', 'policy').id).toBe('q3');
    expect(resolveQuota(defs, fallback, 'policy.eval', 'scanner').id).toBe('q2');
    expect(resolveQuota(defs, fallback, 'policy.eval', 'policy').id).toBe('q1');
    expect(resolveQuota(defs, fallback, 'attest.sbom', 'attestor').id).toBe('q6');
  });

  it('falls back to the default quota, and breaks ties by creation order', () => {
    expect(resolveQuota([], fallback, 'anything', 'policy').id).toBe('default');
    expect(resolveQuota([q('q9', { jobType: 'a?c' }), q('q7', { jobType: 'ab?' })], fallback, 'abc', 'x').id).toBe('q7');
    expect(specificity(fallback)).toBeLessThan(specificity(q('q1')));
  });
});

describe('evaluation', () => {
  const windows = windowsAt(T0);
  const base = { now: T0, windows, cost: 1, tenantId: 'acme', name: 'scan.image', throttles: [] as Array<{ def: ThrottleDef; tat: number }> };
  const quota = (extra: Partial<QuotaDef>): QuotaDef => ({ id: 'q1', tenantId: 'acme', onPeriodExceeded: 'wait', paused: false, ...extra });
  const run = (quotaDef: QuotaDef, state: QuotaState = EMPTY_STATE, extra: Partial<typeof base> = {}) =>
    evaluate({ ...base, ...extra, quota: quotaDef, state });

  it('admits within every limit and takes from each', () => {
    const e = run(quota({ rate: 5, burst: 2, maxConcurrent: 3, periods: { hour: 10, month: 100 } }));
    expect(e.verdict).toEqual({ kind: 'admit' });
    expect(e.state).toEqual({
      tat: T0 + 200,
      interval: 200,
      inflight: 1,
      used: { hour: { window: windows.hour.start, n: 1 }, month: { window: windows.month.start, n: 1 } },
    });
  });

  it('waits for a release when max concurrent is reached', () => {
    expect(run(quota({ maxConcurrent: 2 }), { ...EMPTY_STATE, inflight: 2 }).verdict).toEqual({ kind: 'wait', reason: 'concurrency' });
  });

  it('waits until the token is due when the rate is exceeded', () => {
    expect(run(quota({ rate: 2, burst: 1 }), { ...EMPTY_STATE, tat: T0 + 500 }).verdict).toEqual({ kind: 'wait', reason: 'rate', until: T0 + 500 });
  });

  it('waits for the next window, or rejects, past a period total', () => {
    const full: QuotaState = { ...EMPTY_STATE, used: { hour: { window: windows.hour.start, n: 10 } } };
    expect(run(quota({ periods: { hour: 10 } }), full).verdict).toEqual({ kind: 'wait', reason: 'period', until: windows.hour.end });
    const r = run(quota({ periods: { hour: 10 }, onPeriodExceeded: 'reject' }), full).verdict;
    expect(r).toMatchObject({ kind: 'reject', reason: 'quota-exceeded' });
    // Usage of an earlier window does not count.
    const stale: QuotaState = { ...EMPTY_STATE, used: { hour: { window: windows.hour.start - 3_600_000, n: 10 } } };
    expect(run(quota({ periods: { hour: 10 } }), stale).verdict).toEqual({ kind: 'admit' });
  });

  it('holds paused quotas and paused throttles before anything else', () => {
    expect(run(quota({ paused: true, periods: { hour: 0 }, onPeriodExceeded: 'reject' })).verdict).toEqual({ kind: 'wait', reason: 'paused' });
    const pause: ThrottleDef = { id: 't1', tenantId: 'acme', action: 'pause', until: T0 + 60_000 };
    expect(run(quota({}), EMPTY_STATE, { throttles: [{ def: pause, tat: 0 }] }).verdict).toEqual({ kind: 'wait', reason: 'throttled', until: T0 + 60_000 });
  });

  it('ignores throttles of other tenants, other job types and expired ones', () => {
    const throttles = [
      { def: { id: 't1', tenantId: 'globex', action: 'pause' } as ThrottleDef, tat: 0 },
      { def: { id: 't2', jobType: 'attest.*', action: 'pause' } as ThrottleDef, tat: 0 },
      { def: { id: 't3', action: 'pause', until: T0 } as ThrottleDef, tat: 0 },
    ];
    expect(run(quota({}), EMPTY_STATE, { throttles }).verdict).toEqual({ kind: 'admit' });
  });

  it('slows with a throttle rate, waiting for the later of throttle and quota tokens', () => {
    const slow = { def: { id: 't1', jobType: 'scan.*', action: 'slow', rate: 1, burst: 1 } as ThrottleDef, tat: T0 + 900 };
    const e = run(quota({ rate: 10, burst: 1 }), { ...EMPTY_STATE, tat: T0 + 50 }, { throttles: [slow] });
    expect(e.verdict).toEqual({ kind: 'wait', reason: 'throttled', until: T0 + 900 });
    const ok = run(quota({ rate: 10 }), EMPTY_STATE, { throttles: [{ ...slow, tat: 0 }] });
    expect(ok.throttleTats).toEqual({ t1: T0 + 1000 });
  });
});
