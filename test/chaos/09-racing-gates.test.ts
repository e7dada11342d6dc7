/**
 * RELIABILITY.md scenario 9: four gate processes (each with its scheduler) race on one tenant with a
 * small concurrency quota (`quotas.default.maxConcurrent: 3`, tenant-wide: it spans downstreams).
 * The tenant's jobs arrive at once on every downstream, so the gates' intakes and the schedulers woken
 * by each release all compete for the same three slots. Never exceeded: not by what the execution
 * workers see running (per downstream and across them), not by tollgate's own in-flight accounting
 * sampled every few milliseconds; and every job is conserved. A second tenant, with its own allowance,
 * runs alongside and is held to its own three.
 */
import { chaosConfigInput, DOWNSTREAMS, expectConserved, JOB_NAMES, startCluster } from './support/cluster';
import { freePort, metricSum, redisStats, scrape, waitInflightDrained } from './support/observe';
import { waitReady } from './support/ops';
import { waitFor } from '../support/services';

jest.setTimeout(60_000);

const LIMIT = 3;
const GATES = 4;
const TENANTS = { acme: 180, globex: 45 } as const;

it(`${GATES} gates racing on one tenant never admit more than maxConcurrent = ${LIMIT}`, async () => {
  const t0 = Date.now();
  const c = await startCluster(
    'racing_gates',
    chaosConfigInput({
      quotas: { default: { maxConcurrent: LIMIT } },
      // Small per-gate concurrency so the ingress jobs are spread over every gate.
      gate: { lockDurationMs: 1000, stalledIntervalMs: 300, concurrency: 10 },
    }),
  );
  let sampling = true;
  try {
    const ports = await Promise.all(Array.from({ length: GATES }, () => freePort()));
    for (const port of ports) c.spawn('gate', { METRICS_PORT: String(port) });
    c.spawn('observer');
    await Promise.all(ports.map((p, i) => waitReady(p, `gate ${i + 1}`)));
    const tReady = Date.now();

    // What the execution workers see: jobs of each tenant running at once, across every downstream.
    const running = new Map<string, number>();
    const peakAcross = new Map<string, number>();
    const exec = c.startExec({
      concurrency: 50,
      work: async (job) => {
        const t = String((job.data as { tenantId: string }).tenantId);
        const n = (running.get(t) ?? 0) + 1;
        running.set(t, n);
        peakAcross.set(t, Math.max(peakAcross.get(t) ?? 0, n));
        try {
          await new Promise((r) => setTimeout(r, 2 + Math.floor(Math.random() * 6)));
        } finally {
          running.set(t, (running.get(t) ?? 1) - 1);
        }
      },
    });

    // tollgate's own accounting, sampled: the tenant's in-flight units per downstream (summed) and
    // the quota's in-flight counter.
    const sampledPeak = new Map<string, number>();
    const quotaPeak = new Map<string, number>();
    let samples = 0;
    const sampler = (async () => {
      while (sampling) {
        const pipe = c.conn.pipeline();
        for (const t of Object.keys(TENANTS)) for (const d of DOWNSTREAMS) pipe.hget(c.keys.downstream(d, 'tenantInflight'), t);
        const quotaKeys = await c.conn.keys(c.keys.quotaStatePattern());
        for (const k of quotaKeys) pipe.hget(k, 'inf');
        const res = ((await pipe.exec()) ?? []).map(([, v]) => Number(v ?? 0));
        let i = 0;
        for (const t of Object.keys(TENANTS)) {
          let total = 0;
          for (const _ of DOWNSTREAMS) total += res[i++]!;
          sampledPeak.set(t, Math.max(sampledPeak.get(t) ?? 0, total));
        }
        for (const k of quotaKeys) quotaPeak.set(k, Math.max(quotaPeak.get(k) ?? 0, res[i++]!));
        samples++;
        await new Promise((r) => setTimeout(r, 5));
      }
    })();

    const jobs = Object.entries(TENANTS).flatMap(([tenantId, n]) =>
      Array.from({ length: n }, (_, i) => {
        const d = DOWNSTREAMS[i % DOWNSTREAMS.length]!;
        return { name: JOB_NAMES[d], data: { tenantId, seq: i }, opts: { removeOnComplete: true, attempts: 1 } };
      }),
    );
    // Interleave the tenants so both are waiting at once.
    jobs.sort((a, b) => a.data.seq - b.data.seq);
    const ids = await c.produce(jobs);
    await c.settleIngress(ids, 20_000);
    await waitFor(() => exec.runs.size >= ids.length || undefined, 'every job executed', 25_000, 100);
    await waitInflightDrained(c);
    sampling = false;
    await sampler;
    const tDone = Date.now();

    const perGate = await Promise.all(ports.map(async (p) => metricSum(await scrape(p), 'tollgate_gate_promotion_seconds_count')));
    const tenantPeaks = Object.fromEntries([...exec.peakByTenant.entries()].sort());
    process.stdout.write(
      `[chaos] racing gates: immediate promotions per gate ${JSON.stringify(perGate)}; peak running per downstream/tenant ${JSON.stringify(tenantPeaks)}; ` +
        `across downstreams ${JSON.stringify(Object.fromEntries(peakAcross))}; sampled in-flight ${JSON.stringify(Object.fromEntries(sampledPeak))} ` +
        `(${samples} samples); quota in-flight ${JSON.stringify(Object.fromEntries([...quotaPeak].map(([k, v]) => [k.slice(c.keys.gov.length), v])))}\n`,
    );

    // The load really was constrained by the limit, on every downstream, and reached it.
    for (const t of Object.keys(TENANTS)) {
      expect({ t, peak: peakAcross.get(t) }).toEqual({ t, peak: LIMIT });
      expect({ t, sampledWithinLimit: (sampledPeak.get(t) ?? 0) <= LIMIT, sampledSeen: (sampledPeak.get(t) ?? 0) > 0 }).toEqual({
        t,
        sampledWithinLimit: true,
        sampledSeen: true,
      });
      for (const d of DOWNSTREAMS) {
        const peak = exec.peakByTenant.get(`${d}/${t}`) ?? 0;
        expect({ key: `${d}/${t}`, withinLimit: peak <= LIMIT, ran: peak > 0 }).toEqual({ key: `${d}/${t}`, withinLimit: true, ran: true });
      }
    }
    expect(quotaPeak.size).toBeGreaterThan(0);
    for (const [k, v] of quotaPeak) expect({ k, withinLimit: v <= LIMIT }).toEqual({ k, withinLimit: true });
    // The quota's counter went back to 0 as well.
    for (const k of quotaPeak.keys()) expect({ k, inf: Number((await c.conn.hget(k, 'inf')) ?? 0) }).toEqual({ k, inf: 0 });

    // Each job admitted once and released once.
    const total = Object.values(TENANTS).reduce((a, b) => a + b, 0);
    let admitted = 0;
    let released = 0;
    for (const d of DOWNSTREAMS) {
      const s = await redisStats(c, d);
      admitted += s.admitted ?? 0;
      released += (s.completed ?? 0) + (s.failed ?? 0) + (s.vanished ?? 0);
    }
    expect({ admitted, released }).toEqual({ admitted: total, released: total });
    expectConserved('racing gates', await c.conservation(ids, exec), { exec: total, ingress: 0, waiting: 0, 'dead-letter': 0 });
    process.stdout.write(`[chaos] racing gates: ${Date.now() - t0} ms (${tReady - t0} ms to start, ${tDone - tReady} ms of load)\n`);
  } finally {
    sampling = false;
    await c.close();
  }
});
