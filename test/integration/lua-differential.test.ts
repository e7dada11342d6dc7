/**
 * The quota decision exists twice: src/core/quota.ts (reference, unit-tested with fake clocks) and
 * src/redis/lua/includes/ (quota.lua, evaluate.lua, policy.lua: what runs, atomically, in Redis). This test feeds both the
 * same random definitions, states, throttles and clocks, and requires the same verdict, reason, wait
 * time and, when admitted, the same new state, to the bit.
 */
import { windowsAt, PERIODS } from '../../src/core/periods';
import { evaluate, type QuotaDef, type QuotaState, type ThrottleDef } from '../../src/core/quota';
import { Governance } from '../../src/redis/governance';
import { Keys } from '../../src/redis/keys';
import { cleanupPrefix, testRedis, uniquePrefix } from '../support/services';
import { rng } from '../support/rng';

const redis = testRedis();
const prefix = uniquePrefix('diff');
const keys = new Keys(prefix);
let now = Date.UTC(2026, 10, 27, 10, 59, 58, 500);
const gov = new Governance(redis, keys, 60_000, ['ds'], () => now);

afterAll(async () => {
  await cleanupPrefix(redis, prefix);
  redis.disconnect();
});


it('agrees with the reference implementation on 400 random cases (costs, misfits, rates down to the minimum)', async () => {
  const rand = rng(20261127);
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(rand() * xs.length)]!;
  const maybe = <T>(p: number, f: () => T): T | undefined => (rand() < p ? f() : undefined);
  let admits = 0;
  let misfits = 0;
  for (let i = 0; i < 400; i++) {
    now += Math.floor(rand() * 5000); // crosses the hour boundary early on
    const tenantId = `t${i}`;
    const name = pick(['scan.image', 'scan.sbom', 'attest.x']);
    const windows = windowsAt(now);
    const rate = maybe(0.7, () => pick([0.5, 1, 3, 7, 20, 333.3, 1e-6]));
    // Mostly cost 1; sometimes more, including costs a single start of the quota cannot fit.
    const cost = rand() < 0.7 ? 1 : 1 + Math.floor(rand() * 6);
    const quota: QuotaDef = {
      id: `q${i + 1}`,
      tenantId,
      ...(rate !== undefined ? { rate } : {}),
      ...(rate !== undefined && rand() < 0.6 ? { burst: 1 + Math.floor(rand() * 5) } : {}),
      ...(rand() < 0.5 ? { maxConcurrent: 1 + Math.floor(rand() * 4) } : {}),
      ...(rand() < 0.6 ? { periods: Object.fromEntries(PERIODS.filter(() => rand() < 0.5).map((p) => [p, Math.floor(rand() * 6)])) } : {}),
      onPeriodExceeded: rand() < 0.3 ? 'reject' : 'wait',
      paused: rand() < 0.05,
    };
    const state: QuotaState = {
      tat: pick([0, now - 3000, now + Math.floor(rand() * 3000), now + rand() * 2500]),
      ...(rand() < 0.5 ? { interval: pick([1000, 142.85714285714286, 50, 3.0003000300030003]) } : {}),
      inflight: Math.floor(rand() * 5),
      used: Object.fromEntries(
        PERIODS.filter(() => rand() < 0.7).map((p) => [p, { window: rand() < 0.8 ? windows[p].start : windows[p].start - 1000, n: Math.floor(rand() * 7) }]),
      ),
    };
    const throttles: Array<{ def: ThrottleDef; tat: number }> = [];
    if (rand() < 0.3) {
      const def: ThrottleDef = {
        id: `t${i + 1}`,
        ...(rand() < 0.7 ? { tenantId } : {}),
        ...(rand() < 0.5 ? { jobType: pick(['scan.*', 'attest.?', '*image']) } : {}),
        action: rand() < 0.3 ? 'pause' : 'slow',
        ...(rand() < 0.3 ? { until: now + pick([-1000, 2000, 60_000]) } : {}),
      };
      if (def.action === 'slow') def.rate = pick([0.5, 2, 10]);
      if (def.tenantId === undefined && def.jobType === undefined) def.tenantId = tenantId;
      throttles.push({ def, tat: pick([0, now + Math.floor(rand() * 2000)]) });
    }

    // The same world in Redis.
    await gov.mirror.writeTenantQuotas(tenantId, [quota]);
    const fields: Record<string, string | number> = { tat: String(state.tat), inf: state.inflight };
    if (state.interval !== undefined) fields.iv = String(state.interval);
    const short: Record<string, [string, string]> = { hour: ['hw', 'hn'], day: ['dw', 'dn'], month: ['mw', 'mn'] };
    for (const [p, u] of Object.entries(state.used)) {
      fields[short[p]![0]] = String(u!.window);
      fields[short[p]![1]] = u!.n;
    }
    await redis.hset(keys.quotaState(quota.id, tenantId), fields);
    for (const t of throttles) {
      await gov.mirror.writeThrottle(t.def);
      await redis.set(keys.throttleState(t.def.id), String(t.tat));
    }

    const expected = evaluate({ now, windows, cost, tenantId, name, quota, state, throttles });
    const got = await gov.explain('ds', tenantId, name, cost, now);
    const v = expected.verdict;
    const want = {
      kind: v.kind,
      ...(v.kind === 'wait' ? { reason: v.reason, ...(v.until !== undefined ? { until: v.until } : {}) } : {}),
      ...(v.kind === 'reject' ? { message: v.message } : {}),
      ...(v.kind === 'admit' ? { tatAfter: expected.state!.tat } : {}),
    };
    const { quotaId, ...rest } = got;
    expect({ case: i, ...rest }).toEqual({ case: i, ...want });
    expect(quotaId).toBe(quota.id);
    if (v.kind === 'admit') admits++;
    if (v.kind === 'reject' && v.reason === 'cost-over-quota') misfits++;
    for (const t of throttles) await gov.mirror.removeThrottle(t.def);
  }
  expect(admits).toBeGreaterThan(30); // the cases cover admissions, not only refusals
  expect(misfits).toBeGreaterThan(10); // and costs no start could fit
});
