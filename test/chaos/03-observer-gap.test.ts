/**
 * RELIABILITY.md scenario 3: the observer is down longer than the events stream keeps. The jobs that
 * finished meanwhile still hold their capacity and tenant slots (nobody released them), so the rest
 * of the load waits behind leaked capacity. When the observer comes back, the stream no longer has the
 * events (trimmed here with XTRIM, as a short `observer.eventsMaxLen` would): the observer detects the
 * gap, its reconciliation sweep frees the leaked capacity, and it says so in a metric
 * (`tollgate_observer_event_gaps_total`, `tollgate_observer_releases_total{source="sweep"}` on its
 * METRICS_PORT) and in log lines. Then the waiting jobs run and every job is conserved.
 */
import { chaosConfigInput, DOWNSTREAMS, expectConserved, JOB_NAMES, sampleInflight, startCluster, type Downstream } from './support/cluster';
import { expectWithinCapacity, freePort, inflightTotals, metricSum, redisStats, scrape, waitInflightDrained } from './support/observe';
import { waitReady } from './support/ops';
import { waitFor } from '../support/services';

jest.setTimeout(60_000);

const CAPACITY: Record<Downstream, number> = { scanner: 30, attestor: 10, policy: 40 };
const JOBS = 240; // 80 per downstream: more than each capacity, so the leak blocks the rest

it('an observer back after its events were trimmed away frees the leaked capacity and reports the gap', async () => {
  const t0 = Date.now();
  const c = await startCluster('observer_gap', chaosConfigInput({ downstreams: DOWNSTREAMS.map((name) => ({ name, capacity: CAPACITY[name] })) }));
  try {
    c.spawn('gate');
    const exec = c.startExec({
      concurrency: 100,
      work: async (job) => {
        await new Promise((r) => setTimeout(r, 2));
        if ((job.data as { fail?: boolean }).fail) throw new Error('downstream answered 500');
      },
    });
    const sampler = sampleInflight(c);
    const jobs = (n: number, from: number) =>
      Array.from({ length: n }, (_, k) => {
        const i = from + k;
        const d = DOWNSTREAMS[i % DOWNSTREAMS.length]!;
        const fail = i % 10 === 0;
        return { name: JOB_NAMES[d], data: { tenantId: `tenant-${i % 5}`, seq: i, ...(fail ? { fail: true } : {}) }, opts: { removeOnComplete: true, attempts: 1 } };
      });

    // 1. A first observer creates the consumer group and releases a first wave, then dies (kill -9).
    const first = c.spawn('observer');
    const firstIds = await c.produce(jobs(60, 0));
    await waitFor(() => firstIds.every((id) => exec.runs.has(`tg-${id}`)) || undefined, 'first wave executed', 20_000, 100);
    await waitFor(async () => Object.values((await inflightTotals(c)).byDownstream).every((n) => n === 0) || undefined, 'first wave released', 15_000, 100);
    first.kill('SIGKILL');
    await first.exited;

    // 2. With no observer, the second wave fills every downstream's capacity and stops there: the jobs
    //    that finished are never released, so the rest waits.
    const secondIds = await c.produce(jobs(JOBS - 60, 60));
    const ids = [...firstIds, ...secondIds];
    await c.settleIngress(ids, 20_000);
    await waitFor(
      async () => {
        const t = await inflightTotals(c);
        const ran = secondIds.filter((id) => exec.runs.has(`tg-${id}`)).length;
        return DOWNSTREAMS.every((d) => t.byDownstream[d] === CAPACITY[d]) && ran === sum(Object.values(CAPACITY));
      },
      'capacity leaked: every downstream full of finished jobs',
      20_000,
      100,
    );
    const leaked = await inflightTotals(c);
    const stuck = await c.conservation(ids, exec);
    process.stdout.write(`[chaos] observer gap, while down: in flight ${JSON.stringify(leaked.byDownstream)}, places ${JSON.stringify(stuck.byPlace)}\n`);
    expect(stuck.byPlace.waiting).toBe(JOBS - 60 - sum(Object.values(CAPACITY)));
    // A little longer than the sweep's minimum age, so the leaked jobs qualify at once.
    await new Promise((r) => setTimeout(r, 1100));

    // 3. The stream keeps less than the observer missed: trim every unread event away.
    for (const d of DOWNSTREAMS) await c.conn.xtrim(c.keys.events(`exec.${d}`), 'MAXLEN', 0);

    // 4. A new observer: it detects the gap, the sweep frees the leaked capacity, the rest runs.
    const port = await freePort();
    const second = c.spawn('observer', { LOG_LEVEL: 'info', METRICS_PORT: String(port) });
    await waitReady(port, 'restarted observer');
    await waitFor(() => ids.every((id) => exec.runs.has(`tg-${id}`)) || undefined, 'every job executed after the restart', 20_000, 100);
    await waitInflightDrained(c);
    const peaks = await sampler.stop();
    const metrics = await scrape(port);

    // The metric: one gap per downstream, and the sweep released exactly the leaked jobs.
    const sweepReleased = Object.fromEntries(DOWNSTREAMS.map((d) => [d, metricSum(metrics, 'tollgate_observer_releases_total', { downstream: d, source: 'sweep' })]));
    const gaps = Object.fromEntries(DOWNSTREAMS.map((d) => [d, metricSum(metrics, 'tollgate_observer_event_gaps_total', { downstream: d })]));
    process.stdout.write(`[chaos] observer gap: gaps ${JSON.stringify(gaps)}, released by the sweep ${JSON.stringify(sweepReleased)}\n`);
    expect(gaps).toEqual({ scanner: 1, attestor: 1, policy: 1 });
    expect(sweepReleased).toEqual(CAPACITY);

    // The log lines: the gap (with how many events were lost) and the reconciliation (with how many released).
    const gapLines = second.logs.filter((l) => String(l.msg).startsWith('event stream was trimmed past unread events'));
    const sweepLines = second.logs.filter((l) => l.msg === 'reconciliation released admitted jobs whose completion events were missed');
    expect(gapLines.map((l) => l.downstream).sort()).toEqual([...DOWNSTREAMS].sort());
    for (const l of gapLines) expect(Number(l.lostEvents)).toBeGreaterThan(0);
    const releasedInLogs: Record<string, number> = {};
    for (const l of sweepLines) releasedInLogs[String(l.downstream)] = (releasedInLogs[String(l.downstream)] ?? 0) + Number(l.released);
    expect(releasedInLogs).toEqual(CAPACITY);

    // Every release counted once: admitted = released, per downstream.
    for (const d of DOWNSTREAMS) {
      const s = await redisStats(c, d);
      const released = (s.completed ?? 0) + (s.failed ?? 0) + (s.vanished ?? 0);
      expect({ d, admitted: s.admitted, released }).toEqual({ d, admitted: JOBS / 3, released: JOBS / 3 });
    }
    // Never over capacity, even when the sweep and the gate raced for the freed slots.
    expectWithinCapacity(exec, peaks, CAPACITY);
    expectConserved('observer gap', await c.conservation(ids, exec), { exec: JOBS, ingress: 0, waiting: 0, 'dead-letter': 0 });
    process.stdout.write(`[chaos] observer gap: ${Date.now() - t0} ms\n`);
  } finally {
    await c.close();
  }
});

function sum(values: number[]): number {
  return values.reduce((a, b) => a + b, 0);
}
