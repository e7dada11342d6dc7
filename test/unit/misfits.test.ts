/**
 * Jobs no limit could ever admit, job keys, and the numeric ranges: pure logic, no I/O (the same rules
 * run in Redis; test/integration/single-jobs.test.ts checks them end to end).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gcra, MAX_INSTANT } from '../../src/core/gcra';
import { MIN_RATE, MIN_WEIGHT } from '../../src/core/limits';
import { FairQueue, type QueuedJob } from '../../src/core/fair-queue';
import { beyondPolicy, weightOf, type Policy } from '../../src/core/policy';
import { windowsAt } from '../../src/core/periods';
import { beyondQuota, EMPTY_STATE, evaluate, type QuotaDef } from '../../src/core/quota';
import { execJobId, ingressIdOf, jobKey, jobKeyOf, parseJobKey } from '../../src/redis/keys';

const T0 = Date.UTC(2026, 10, 27, 10, 15, 0);
const quota = (over: Partial<QuotaDef>): QuotaDef => ({ id: 'q1', onPeriodExceeded: 'wait', paused: false, ...over });
const policy = (over: Partial<Policy>): Policy => ({ kind: 'proportional', capacity: 50, defaultWeight: 1, defaultTier: 1, tenants: {}, ...over });

describe('a cost its quota could never admit', () => {
  it('is named by the first limit a single start cannot fit', () => {
    expect(beyondQuota(quota({ maxConcurrent: 3 }), 4)).toBe('cost 4 is above the maxConcurrent of 3 of quota q1: it could never start');
    expect(beyondQuota(quota({ rate: 5, burst: 4 }), 5)).toMatch(/burst of 4/);
    expect(beyondQuota(quota({ rate: 2.5 }), 4)).toMatch(/burst of 3/); // default burst: ceil(rate)
    expect(beyondQuota(quota({ periods: { hour: 2, day: 100 } }), 3)).toMatch(/hour total of 2/);
    expect(beyondQuota(quota({ periods: { day: 0 } }), 3)).toBeUndefined(); // a total of 0 is a deliberate stop
    expect(beyondQuota(quota({ maxConcurrent: 3, rate: 1, burst: 3, periods: { hour: 3 } }), 3)).toBeUndefined(); // exactly at the limits
  });

  it('is refused before any pause or wait, so it never holds up its flow', () => {
    const windows = windowsAt(T0);
    const v = evaluate({ now: T0, windows, cost: 6, tenantId: 'a', name: 'x', quota: quota({ maxConcurrent: 5, paused: true }), state: EMPTY_STATE, throttles: [] });
    expect(v.verdict).toEqual({ kind: 'reject', reason: 'cost-over-quota', message: expect.stringContaining('maxConcurrent of 5') });
  });

  it('behind a slow throttle whose burst is below it, waits for the throttle to end instead of for a token that never comes', () => {
    const windows = windowsAt(T0);
    const throttles = [{ def: { id: 't1', tenantId: 'a', action: 'slow' as const, rate: 1, burst: 2, until: T0 + 60_000 }, tat: 0 }];
    const v = evaluate({ now: T0, windows, cost: 3, tenantId: 'a', name: 'x', quota: quota({}), state: EMPTY_STATE, throttles });
    expect(v.verdict).toEqual({ kind: 'wait', reason: 'throttled', until: T0 + 60_000 });
  });
});

describe('a cost the policy could never admit', () => {
  it('names the capacity, the max share or the reserve plus borrow limit, whichever is lowest', () => {
    expect(beyondPolicy(policy({}), 'a', 'scanner', 51)).toBe('cost 51 is above the capacity of scanner, 50 units: scanner could never admit it');
    expect(beyondPolicy(policy({}), 'a', 'scanner', 50)).toBeUndefined();
    expect(beyondPolicy(policy({ kind: 'max-limit', tenants: { a: { maxShare: 0.25 } } }), 'a', 'scanner', 13)).toMatch(/max share of scanner \(0.25 of 50\), 12 units/);
    expect(beyondPolicy(policy({ kind: 'reserved', tenants: { a: { reserve: 5, borrowLimit: 3 } } }), 'a', 'scanner', 9)).toMatch(/reserve plus borrow limit on scanner, 8 units/);
    expect(beyondPolicy(policy({ kind: 'unlimited' }), 'a', 'scanner', 10_000)).toBeUndefined();
  });

  it('is taken out of the reference scheduler instead of stopping it for everyone', () => {
    const q = new FairQueue<string>(policy({ capacity: 5 }));
    q.add('hog', { cost: 6, item: 'big' }, T0);
    q.add('b', { cost: 1, item: 'small-b' }, T0);
    q.add('hog', { cost: 1, item: 'small-hog' }, T0);
    const refused: Array<{ tenant: string; job: QueuedJob<string> }> = [];
    const admitted = q.drain(T0, Infinity, refused).map((a) => a.job.item);
    expect(refused.map((r) => r.job.item)).toEqual(['big']);
    expect(admitted.sort()).toEqual(['small-b', 'small-hog']);
  });
});

describe('numeric ranges', () => {
  it('clamp every computed instant to what a Date holds', () => {
    const r = gcra(0, T0, { rate: 1e-300, burst: 1 }, 2);
    expect(r).toEqual({ ok: false, retryAt: MAX_INSTANT });
    const first = gcra(0, T0, { rate: 1e-300, burst: 1 }, 1);
    expect(first).toEqual({ ok: true, tat: MAX_INSTANT });
    expect(gcra(MAX_INSTANT, T0 + 1, { rate: 1e-300, burst: 1 }, 1)).toEqual({ ok: false, retryAt: MAX_INSTANT });
    expect(new Date(MAX_INSTANT).toISOString()).toBe('+275760-09-13T00:00:00.000Z');
  });

  it('weights below the minimum count as the minimum', () => {
    expect(weightOf(policy({ tenants: { a: { weight: 1e-300 } } }), 'a')).toBe(MIN_WEIGHT);
  });

  it('are the same in the Lua that clamps stored definitions', () => {
    const lua = readFileSync(join(__dirname, '../../src/redis/lua/includes/base.lua'), 'utf8');
    const constant = (name: string) => Number(new RegExp(`local ${name} = ([0-9.e+-]+)`).exec(lua)?.[1]);
    expect({ MIN_RATE: constant('MIN_RATE'), MIN_WEIGHT: constant('MIN_WEIGHT'), MAX_INSTANT: constant('MAX_INSTANT') }).toEqual({ MIN_RATE, MIN_WEIGHT, MAX_INSTANT });
  });
});

describe('job keys', () => {
  it('are the ingress id for ordinary ids, so execution ids stay tg-<ingress id>', () => {
    expect(execJobId(jobKey('42'))).toBe('tg-42');
    expect(execJobId(jobKey('invoice-2026-11-27'))).toBe('tg-invoice-2026-11-27');
  });

  it("encode ':' (refused by BullMQ in custom ids), '%' and '~' one-to-one, and decode back", () => {
    const ids = ['repeat:acme:nightly:1764265932123', 'a:b:c', '100%', '%3A', ':', 'x~y', '~', '%25%3A', 'ünï ✓'];
    const keys = ids.map((id) => jobKey(id));
    expect(new Set(keys).size).toBe(ids.length);
    for (const k of keys) expect(k).not.toMatch(/[:~]/);
    expect(keys.map((k) => parseJobKey(k).ingressJobId)).toEqual(ids);
    expect(jobKey('repeat:acme:nightly:1764265932123')).toBe('repeat%3Aacme%3Anightly%3A1764265932123');
  });

  it('of a later job reusing an id carry its stamp, and map back to the ingress id', () => {
    const k = jobKey('a:b', 1764265932123);
    expect(k).toBe('a%3Ab~1764265932123');
    expect(parseJobKey(k)).toEqual({ ingressJobId: 'a:b', stamp: '1764265932123' });
    expect(jobKeyOf(execJobId(k))).toBe(k);
    expect(ingressIdOf(execJobId(k))).toBe('a:b');
    expect(jobKeyOf('someone-elses-job')).toBeUndefined();
  });
});

describe('ranges in the contracts', () => {
  it('refuse rates below one per 11.6 days', async () => {
    const { QuotaLimitsSchema } = await import('../../src/contracts/quotas');
    expect(QuotaLimitsSchema.safeParse({ rate: MIN_RATE }).success).toBe(true);
    expect(QuotaLimitsSchema.safeParse({ rate: MIN_RATE / 2 }).success).toBe(false);
  });
});
