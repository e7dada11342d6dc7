/**
 * RELIABILITY.md scenario 8: SIGTERM to both gates under load. In-flight promotions finish (no ingress
 * job is left claimed, active, locked or stalled, and with no gate running every job is in exactly one
 * place),
 * each gate exits 0 within TOLLGATE_SHUTDOWN_GRACE_SECONDS, and a new gate finishes the rest: every
 * good job executed exactly once, every bad one dead-lettered, capacity never exceeded.
 */
import { chaosConfigInput, expectConserved, sampleInflight, startCluster } from './support/cluster';
import { errorLines, waitForLog } from './support/lifecycle';
import { expectWithinCapacity } from './support/observe';
import { waitFor } from '../support/services';

jest.setTimeout(60_000);

const GRACE_SECONDS = 6;

it('SIGTERM to two gates under load: in-flight promotions finish, exit 0 in the grace period, a new gate finishes the rest', async () => {
  const c = await startCluster('sigterm', chaosConfigInput());
  let sampler: ReturnType<typeof sampleInflight> | undefined;
  let producing = false;
  let producer: Promise<void> = Promise.resolve();
  try {
    c.spawn('observer');
    const gateEnv = { LOG_LEVEL: 'info', TOLLGATE_SHUTDOWN_GRACE_SECONDS: String(GRACE_SECONDS) };
    const gates = [c.spawn('gate', gateEnv), c.spawn('gate', gateEnv)];
    // Both gates running (a process still loading its modules has no handler yet: SIGTERM kills it).
    await Promise.all(gates.map((g) => waitForLog(g, 'gate consuming ingress', 30_000)));
    const exec = c.startExec({ concurrency: 100, work: () => new Promise((r) => setTimeout(r, 3)) });
    sampler = sampleInflight(c);
    const good = await c.produce(c.goodJobs(1500));
    const bad = await c.produce(Array.from({ length: 40 }, (_, i) => ({ name: 'policy.eval', data: { seq: i } })));
    // Under load: promotions going on, most of the work still ahead.
    await waitFor(() => exec.runs.size >= 300, 'promotions under way', 30_000, 20);
    // Producers keep adding while the gates stop, so the gates are taking in jobs at the signal.
    producing = true;
    producer = (async () => {
      for (let batch = 0; producing; batch++) {
        const jobs = c.goodJobs(50).map((j, i) => ({ ...j, data: { ...(j.data as object), batch, i } }));
        good.push(...(await c.produce(jobs)));
        await new Promise((r) => setTimeout(r, 30));
      }
    })();
    // Jobs the gates hold now: claimed from ingress, not ended yet.
    const claims = c.keys.ingressClaims(c.ingress.name);
    const atSignal = await waitFor(
      async () => {
        const [n, claimed] = await Promise.all([c.ingress.getJobCounts('waiting'), c.conn.zcard(claims)]);
        return claimed > 0 ? { ...n, claimed } : undefined;
      },
      'gates taking in jobs',
      10_000,
      2,
    );
    const signalledAt = Date.now();
    for (const g of gates) g.kill('SIGTERM');
    const exits = await Promise.all(
      gates.map(async (g) => {
        const e = await g.exited;
        return { ...e, ms: Date.now() - signalledAt };
      }),
    );
    producing = false;
    await producer;
    const ids = [...good, ...bad];
    process.stdout.write(
      `[chaos] sigterm: at the signal ingress ${JSON.stringify(atSignal)}, ${exec.runs.size} executed; exits ${JSON.stringify(exits)}\n`,
    );
    expect(atSignal.claimed).toBeGreaterThan(0);
    for (const [i, g] of gates.entries()) {
      expect({ code: exits[i]!.code, signal: exits[i]!.signal }).toEqual({ code: 0, signal: null });
      expect(exits[i]!.ms).toBeLessThan(GRACE_SECONDS * 1000);
      expect(g.logs.some((l) => l.msg === 'shutting down: finishing in-flight work')).toBe(true);
      expect(g.logs.some((l) => l.msg === 'shut down cleanly')).toBe(true);
      expect(errorLines(g)).toEqual([]);
    }

    // Nothing left claimed, active, locked, stalled or failed in ingress.
    expect(await c.conn.zcard(claims)).toBe(0);
    const after = await c.ingress.getJobCounts('active', 'failed', 'completed');
    expect(after).toEqual({ active: 0, failed: 0, completed: 0 });
    expect(await c.conn.llen(`${c.prefix}:${c.ingress.name}:active`)).toBe(0);
    expect(await c.conn.scard(`${c.prefix}:${c.ingress.name}:stalled`)).toBe(0);
    const locks = await c.conn.keys(`${c.prefix}:${c.ingress.name}:*:lock`);
    expect(locks).toEqual([]);

    // With no gate running nothing moves out of ingress, and every job is in exactly one place: a
    // promotion cut halfway would show as a job both in ingress and in an execution queue.
    const remaining = (await c.ingress.getJobCounts('waiting')).waiting;
    await new Promise((r) => setTimeout(r, 1000));
    expect((await c.ingress.getJobCounts('waiting')).waiting).toBe(remaining);
    expect(remaining).toBeGreaterThan(0);
    const mid = await c.conservation(ids, exec);
    expectConserved('sigterm, both gates stopped', mid, { ingress: remaining });

    // A new gate finishes the rest.
    const next = c.spawn('gate', gateEnv);
    await waitForLog(next, 'database migrations applied');
    await c.settleIngress(ids, 30_000);
    await waitFor(() => exec.runs.size >= good.length, 'every good job executed', 30_000, 50);
    await new Promise((r) => setTimeout(r, 500)); // a late duplicate, if any, has the time to show up
    const peaks = await sampler.stop();
    sampler = undefined;
    const result = await c.conservation(ids, exec);
    expectConserved('sigterm, after a new gate', result, { exec: good.length, 'dead-letter': bad.length, ingress: 0, waiting: 0 });
    expect(result.deadReasons).toEqual({ 'missing-tenant': bad.length });
    expect(errorLines(next)).toEqual([]);
    expectWithinCapacity(exec, peaks);
  } finally {
    producing = false;
    await producer.catch(() => undefined);
    await sampler?.stop();
    await c.close();
  }
});
