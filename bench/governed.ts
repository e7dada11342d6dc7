/**
 * The benchmark scenarios where governance binds: contention among 1,000 tenants, a breaker that
 * trips and recovers, the uncontended decision latency, and the scale check (10,000 tenants, 200,000
 * waiting jobs). Each returns figures for the table; none asserts (the bench measures, tests assert).
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { Keys } from '../src/redis/keys';
import {
  bucketQuantile,
  cleanup,
  histogram,
  jain,
  maxMinShares,
  newPrefix,
  PAYLOAD,
  procStats,
  quantile,
  REDIS_URL,
  sleep,
  startTollgate,
  usedMemory,
  waitUntil,
  watchProcess,
  type TollgateProcess,
} from './lib';

const conn = () => new Redis(REDIS_URL, { maxRetriesPerRequest: null });

/** Ends a governed scenario: its execution worker, producer queue, tollgate process, connections and keys. */
async function teardown(parts: { worker: Worker; ingress: Queue; tg: TollgateProcess; conns: Redis[]; prefix: string }): Promise<void> {
  await parts.worker.close();
  await parts.ingress.close();
  await parts.tg.stop();
  for (const c of parts.conns) c.disconnect();
  await cleanup(parts.prefix);
}

/**
 * Uncontended decision latency on a running tollgate: `count` jobs added one at a time at `perSec`,
 * each waited for end to end. Returns, for these jobs only, the p50/p99 bucket bounds of the promotion
 * histogram (gate: ingress job active → execution job added) and of the decision histogram (active →
 * decided, before the add), and the measured ingress add → exec start.
 */
export async function trickleLatency(tg: TollgateProcess, count = 1000, perSec = 200): Promise<Record<string, number>> {
  const pc = conn();
  const wc = conn();
  const ingress = new Queue('ingress', { connection: pc, prefix: tg.prefix });
  const latencies: number[] = [];
  let seen = 0;
  const worker = new Worker(
    'exec.bench',
    async (job) => {
      if (job.data.trickle) {
        latencies.push(Date.now() - job.data.sentAt);
        seen++;
      }
    },
    { connection: wc, prefix: tg.prefix, concurrency: 50, removeOnComplete: { count: 0 } },
  );
  worker.on('error', () => undefined);
  await worker.waitUntilReady();
  const m0 = await tg.metrics();
  const before = histogram(m0, 'tollgate_gate_promotion_seconds');
  const beforeDecision = histogram(m0, 'tollgate_gate_decision_seconds');
  const t0 = Date.now();
  for (let i = 0; i < count; i++) {
    const due = t0 + (i * 1000) / perSec;
    const wait = due - Date.now();
    if (wait > 0) await sleep(wait);
    await ingress.add('bench.job', { tenantId: `tenant-${i % 100}`, trickle: true, sentAt: Date.now(), payload: PAYLOAD }, { removeOnComplete: true });
  }
  await waitUntil(() => seen >= count, 'the trickle to finish', 60_000);
  const m1 = await tg.metrics();
  const after = histogram(m1, 'tollgate_gate_promotion_seconds');
  const afterDecision = histogram(m1, 'tollgate_gate_decision_seconds');
  await worker.close();
  await ingress.close();
  pc.disconnect();
  wc.disconnect();
  return {
    promotionP50Ms: bucketQuantile(after, 0.5, before) * 1000,
    promotionP99Ms: bucketQuantile(after, 0.99, before) * 1000,
    decisionOnlyP50Ms: bucketQuantile(afterDecision, 0.5, beforeDecision) * 1000,
    decisionOnlyP99Ms: bucketQuantile(afterDecision, 0.99, beforeDecision) * 1000,
    trickleE2eP50Ms: quantile(latencies, 0.5),
    trickleE2eP99Ms: quantile(latencies, 0.99),
  };
}

/**
 * 1,000 tenants on a downstream of capacity 20 with 20 ms jobs (≤ 1,000 jobs/s: capacity binds), a
 * proportional policy, one tenant flooding: a burst of 20,000 jobs, then 300 jobs/s more, while 999
 * quiet tenants send 100 jobs/s between them for 15 s. Fairness over the flood: each tenant's admissions in the window divided by
 * its max-min fair share of what was admitted (quiet tenants are entitled to what they asked, the
 * flood to the rest); Jain's index of those ratios.
 */
export async function contended(): Promise<Record<string, number>> {
  const prefix = newPrefix();
  const tg = await startTollgate(prefix, {
    downstreams: [{ name: 'bench', capacity: 20, policy: { kind: 'proportional' } }],
    routing: { rules: [{ jobName: 'bench.*', downstream: 'bench' }] },
    gate: { concurrency: 200 },
  });
  const pc = conn();
  const wc = conn();
  const ingress = new Queue('ingress', { connection: pc, prefix });
  const starts = new Map<string, number[]>();
  const quietLatency: number[] = [];
  const worker = new Worker(
    'exec.bench',
    async (job) => {
      const now = Date.now();
      const t = job.data.tenantId as string;
      let list = starts.get(t);
      if (!list) starts.set(t, (list = []));
      list.push(now);
      if (t !== 'flood') quietLatency.push(now - job.data.sentAt);
      await sleep(20);
    },
    { connection: wc, prefix, concurrency: 50, removeOnComplete: { count: 0 } },
  );
  worker.on('error', () => undefined);
  await worker.waitUntilReady();
  const watch = watchProcess(tg.child.pid!);
  const BURST = 20_000;
  const FLOOD_PER_SEC = 300;
  const QUIET_TENANTS = 999;
  const QUIET_PER_SEC = 100;
  const QUIET_SECONDS = 15;
  // The flood's burst first: the gate takes it into the waiting place (ingress is one FIFO queue, so
  // jobs sent during the burst's intake wait behind it there; that time is reported on its own).
  const b0 = Date.now();
  for (let i = 0; i < BURST; i += 1000) {
    await ingress.addBulk(
      Array.from({ length: 1000 }, (_, k) => ({ name: 'bench.job', data: { tenantId: 'flood', seq: i + k, sentAt: Date.now(), payload: PAYLOAD }, opts: { removeOnComplete: true } })),
    );
  }
  await waitUntil(async () => (await ingress.count()) === 0, 'the burst to leave ingress', 120_000, 50);
  const burstIntakeSeconds = (Date.now() - b0) / 1000;
  // Then, while the flood's backlog saturates the capacity and it keeps sending, the quiet tenants send.
  const sent = new Map<string, number>();
  const quietTotal = QUIET_PER_SEC * QUIET_SECONDS;
  const t0 = Date.now();
  const floodBefore = (starts.get('flood') ?? []).length;
  let floodSent = BURST - floodBefore;
  for (let i = 0; i < quietTotal; i++) {
    const due = t0 + (i * 1000) / QUIET_PER_SEC;
    const wait = due - Date.now();
    if (wait > 0) await sleep(wait);
    const tenant = `quiet-${(i % QUIET_TENANTS) + 1}`;
    sent.set(tenant, (sent.get(tenant) ?? 0) + 1);
    const floodDue = Math.floor(((Date.now() - t0) / 1000) * FLOOD_PER_SEC) - (floodSent - (BURST - floodBefore));
    const jobs = [
      { name: 'bench.job', data: { tenantId: tenant, sentAt: Date.now(), payload: PAYLOAD }, opts: { removeOnComplete: true } },
      ...Array.from({ length: Math.max(0, floodDue) }, () => ({ name: 'bench.job', data: { tenantId: 'flood', sentAt: Date.now(), payload: PAYLOAD }, opts: { removeOnComplete: true } })),
    ];
    floodSent += Math.max(0, floodDue);
    await ingress.addBulk(jobs);
  }
  // The window ends with the last quiet job sent: quiet jobs not started by then count against fairness.
  const tEnd = Date.now();
  await waitUntil(() => quietLatency.length >= quietTotal, 'every quiet job to start', 120_000);
  const inWindow = (t: number) => t >= t0 && t <= tEnd;
  const floodStarts = (starts.get('flood') ?? []).filter(inWindow).length;
  // Still jobs of the flood waiting at the end: it was backlogged through the window (entitled to the rest).
  const floodBacklogged = Number((await pc.hget(new Keys(prefix).downstream('bench', 'waitingCounts'), 'flood')) ?? 0) > 0;
  // Admissions in [t0, tEnd] per tenant, against max-min fair shares of the total admitted.
  const tenants = [...sent.keys()];
  const served = tenants.map((t) => (starts.get(t) ?? []).filter(inWindow).length);
  const totalServed = served.reduce((a, b) => a + b, 0) + floodStarts;
  const demands = [...tenants.map((t) => sent.get(t)!), floodBacklogged ? Infinity : floodStarts];
  const fair = maxMinShares(demands, totalServed);
  const ratios = [...served, floodStarts].map((s, i) => (fair[i]! > 0 ? s / fair[i]! : 1));
  const seconds = (tEnd - t0) / 1000;
  const proc = watch.stop();
  const jobs = BURST + floodSent - (BURST - floodBefore) + quietTotal;
  await teardown({ worker, ingress, tg, conns: [pc, wc], prefix });
  return {
    admittedPerSec: totalServed / seconds,
    jain: jain(ratios),
    quietP50Ms: quantile(quietLatency, 0.5),
    quietP99Ms: quantile(quietLatency, 0.99),
    floodAdmittedInWindow: floodStarts,
    quietJobs: quietTotal,
    burstIntakeSeconds,
    jobs,
    tollgateCpuSec: proc.cpuSec,
    tollgatePeakRssMb: proc.peakRssMb,
  };
}

/**
 * A downstream (capacity 50) whose execution fails from the start and recovers once its breaker
 * opened: producers keep sending 400 jobs/s for 6 s. Measures the time from the tripping failure
 * (the 5th consecutive one) to the breaker open, the execution jobs added while it was open (must be
 * 0: probes go out only half-open), and the throughput of the held jobs' replay after it closed.
 */
export async function breaker(): Promise<Record<string, number>> {
  const prefix = newPrefix();
  const keys = new Keys(prefix);
  const tg = await startTollgate(prefix, {
    downstreams: [
      {
        name: 'bench',
        capacity: 50,
        breaker: { consecutiveFailures: 5, minimumCalls: 1000, openMs: 2000, jitter: 0, halfOpenProbes: 3, replayRampMs: 2000 },
      },
    ],
    routing: { rules: [{ jobName: 'bench.*', downstream: 'bench' }] },
    gate: { concurrency: 200 },
  });
  const pc = conn();
  const wc = conn();
  const ingress = new Queue('ingress', { connection: pc, prefix });
  let failing = true;
  const failTimes: number[] = [];
  const added: Array<{ at: number; id: string }> = [];
  const done = new Map<string, number>();
  const worker = new Worker(
    'exec.bench',
    async (job) => {
      added.push({ at: job.timestamp, id: job.id! });
      if (failing) {
        failTimes.push(Date.now());
        throw new Error('ScannerDown: 503 from the scanner');
      }
      done.set(job.id!, Date.now());
    },
    { connection: wc, prefix, concurrency: 50, removeOnComplete: { count: 0 }, removeOnFail: { count: 0 } },
  );
  worker.on('error', () => undefined);
  await worker.waitUntilReady();
  const state = async () => (await pc.hget(keys.downstream('bench', 'breaker'), 'st')) ?? 'closed';
  const watch = watchProcess(tg.child.pid!);
  const TOTAL = 2400;
  const PER_SEC = 400;
  const t0 = Date.now();
  let openSeen = 0;
  const producing = (async () => {
    for (let i = 0; i < TOTAL; i++) {
      const due = t0 + (i * 1000) / PER_SEC;
      const wait = due - Date.now();
      if (wait > 0) await sleep(wait);
      await ingress.add('bench.job', { tenantId: `tenant-${i % 20}`, sentAt: Date.now(), payload: PAYLOAD }, { removeOnComplete: true, removeOnFail: true });
    }
  })();
  await waitUntil(async () => (await state()) === 'open', 'the breaker to open', 30_000, 5);
  openSeen = Date.now();
  failing = false; // the downstream recovers; the breaker finds out by probing after openMs
  await waitUntil(async () => (await state()) === 'closed', 'the breaker to close', 60_000, 10);
  await producing;
  const view = (await tg.api('GET', '/api/v1/breakers/bench')).body as {
    trips: number;
    transitions: Array<{ from: string; to: string; at: string; reason?: string }>;
  };
  const ts = [...view.transitions].reverse(); // oldest first
  const opened = Date.parse(ts.find((t) => t.to === 'open')!.at);
  const halfOpened = Date.parse(ts.find((t) => t.to === 'half-open')!.at);
  const closed = Date.parse(ts.find((t) => t.to === 'closed' && Date.parse(t.at) >= halfOpened)!.at);
  // Every job sent eventually runs once.
  await waitUntil(() => done.size >= TOTAL - failTimes.length, 'every job not failed to run', 120_000);
  const lastDone = Math.max(...done.values());
  const replayed = [...done.entries()].filter(([, at]) => at >= closed).length;
  // Promotions decided while open (the record's admission time, from the gate's decision), probes aside;
  // and execution adds that landed while open for jobs admitted just before it opened.
  const recs = await Promise.all(added.map((a) => pc.hmget(keys.record(a.id.replace(/^tg-/, '')), 'at', 'probe')));
  const whileOpen = recs.filter(([at, probe]) => Number(at) > opened && Number(at) < halfOpened && !probe).length;
  const addsLandingWhileOpen = added.filter((a, i) => a.at > opened && a.at < halfOpened && Number(recs[i]![0]) <= opened).length;
  const tripping = failTimes[4]!;
  const proc = watch.stop();
  await teardown({ worker, ingress, tg, conns: [pc, wc], prefix });
  return {
    tripToOpenMs: opened - tripping,
    openObservedAfterMs: openSeen - tripping,
    failedBeforeOpen: failTimes.length,
    promotedWhileOpen: whileOpen,
    addsOfEarlierAdmissionsLandingWhileOpen: addsLandingWhileOpen,
    openMs: halfOpened - opened,
    replayedAfterClose: replayed,
    replayPerSec: replayed / Math.max(0.001, (lastDone - closed) / 1000),
    jobs: TOTAL,
    tollgateCpuSec: proc.cpuSec,
    tollgatePeakRssMb: proc.peakRssMb,
  };
}

/**
 * Scale check: `tenants` tenants, each with a quota of its own (set over the REST API), and `jobs`
 * jobs waiting on a downstream whose capacity (100) is full and whose workers are not running yet.
 * Measures intake (ingress → waiting place) throughput, Redis memory and gate RSS per waiting job,
 * then the admission throughput draining the first 50,000 once workers start.
 */
/** BullMQ's own Redis bytes per waiting job: `n` jobs like the scale check's added to a queue nobody consumes. */
async function bullmqBytesPerWaitingJob(n = 20_000): Promise<number> {
  const prefix = newPrefix();
  const pc = conn();
  const q = new Queue('plain', { connection: pc, prefix });
  await q.waitUntilReady();
  const mem0 = await usedMemory();
  for (let i = 0; i < n; i += 1000) {
    await q.addBulk(Array.from({ length: Math.min(1000, n - i) }, (_, k) => ({ name: 'bench.job', data: { tenantId: `t-${(i + k) % 100}`, seq: i + k, payload: PAYLOAD }, opts: { removeOnComplete: true } })));
  }
  const bytes = ((await usedMemory()) - mem0) / n;
  await q.close();
  pc.disconnect();
  await cleanup(prefix);
  return bytes;
}

export async function scale(tenants: number, jobs: number): Promise<Record<string, number>> {
  const bullmqBytes = await bullmqBytesPerWaitingJob();
  const prefix = newPrefix();
  const tg = await startTollgate(prefix, {
    downstreams: [{ name: 'bench', capacity: 100 }],
    routing: { rules: [{ jobName: 'bench.*', downstream: 'bench' }] },
    gate: { concurrency: 200 },
  });
  const keys = new Keys(prefix);
  const pc = conn();
  const ingress = new Queue('ingress', { connection: pc, prefix });
  const tq0 = Date.now();
  for (let i = 0; i < tenants; i += 50) {
    await Promise.all(
      Array.from({ length: Math.min(50, tenants - i) }, async (_, k) => {
        const r = await tg.api('PUT', `/api/v1/quotas/t-${i + k}`, { rate: 10_000, maxConcurrent: 50 });
        if (r.status >= 300) throw new Error(`bench: PUT quota failed: ${r.status} ${JSON.stringify(r.body)}`);
      }),
    );
  }
  const quotaSeconds = (Date.now() - tq0) / 1000;
  await sleep(1000);
  const mem0 = await usedMemory();
  const rss0 = procStats(tg.child.pid!).rssMb;
  const t0 = Date.now();
  for (let i = 0; i < jobs; i += 1000) {
    await ingress.addBulk(
      Array.from({ length: Math.min(1000, jobs - i) }, (_, k) => ({
        name: 'bench.job',
        data: { tenantId: `t-${(i + k) % tenants}`, seq: i + k, payload: PAYLOAD },
        opts: { removeOnComplete: true },
      })),
    );
  }
  let peakRss = rss0;
  await waitUntil(
    async () => {
      peakRss = Math.max(peakRss, procStats(tg.child.pid!).rssMb);
      return Number((await pc.get(keys.downstream('bench', 'waitingTotal'))) ?? 0) >= jobs - 100;
    },
    'every job to reach the waiting place',
    600_000,
    200,
  );
  const intakeSeconds = (Date.now() - t0) / 1000;
  const mem1 = await usedMemory();
  const wc = conn();
  let admitted = 0;
  const DRAIN = Math.min(50_000, jobs);
  let drained!: () => void;
  const drainedP = new Promise<void>((r) => (drained = r));
  const d0 = Date.now();
  const worker = new Worker(
    'exec.bench',
    async () => {
      if (++admitted === DRAIN) drained();
    },
    { connection: wc, prefix, concurrency: 50, removeOnComplete: { count: 0 } },
  );
  worker.on('error', () => undefined);
  await drainedP;
  const drainSeconds = (Date.now() - d0) / 1000;
  await teardown({ worker, ingress, tg, conns: [pc, wc], prefix });
  return {
    tenants,
    jobs,
    quotaSetupSeconds: quotaSeconds,
    intakePerSec: jobs / intakeSeconds,
    redisBytesPerWaitingJob: (mem1 - mem0) / jobs,
    bullmqBytesPerWaitingJob: bullmqBytes,
    gateRssMb: peakRss,
    gateRssGrowthBytesPerWaitingJob: ((peakRss - rss0) * 1048576) / jobs,
    drainPerSec: DRAIN / drainSeconds,
  };
}

/**
 * A live flood (issue 11): capacity binds (20 slots, 5 ms jobs); a producer process adds FLOOD_JOBS jobs
 * of one tenant with addBulk as fast as it can while a second tenant adds one job every 50 ms, from the
 * flood's first add until a second after its last. Measures the quiet tenant's ingress add → execution
 * job added (p50/p99), ingress's peak backlog (sampled every 50 ms), the producer's add rate and the
 * gate's intake rate (flood jobs out of ingress per second, until ingress is empty).
 */
export async function flood(floodJobs = Number(process.env.BENCH_FLOOD_JOBS ?? 100_000)): Promise<Record<string, number>> {
  const prefix = newPrefix();
  const tg = await startTollgate(prefix, {
    downstreams: [{ name: 'bench', capacity: 20, policy: { kind: 'proportional' } }],
    routing: { rules: [{ jobName: 'bench.*', downstream: 'bench' }] },
    ...(process.env.BENCH_FLOOD_GATE ? { gate: JSON.parse(process.env.BENCH_FLOOD_GATE) } : {}),
  });
  const pc = conn();
  const wc = conn();
  const ingress = new Queue('ingress', { connection: pc, prefix });
  const quiet: number[] = [];
  const worker = new Worker(
    'exec.bench',
    async (job) => {
      if (job.data.tenantId === 'quiet') quiet.push(job.timestamp - job.data.sentAt);
      await sleep(5);
    },
    { connection: wc, prefix, concurrency: 40, removeOnComplete: { count: 0 } },
  );
  worker.on('error', () => undefined);
  await worker.waitUntilReady();
  const watch = watchProcess(tg.child.pid!);
  const producer = spawn(process.execPath, ['--import', 'tsx', join(__dirname, 'flood-producer.ts')], {
    env: { ...process.env, REDIS_URL, FLOOD_PREFIX: prefix, FLOOD_QUEUE: 'ingress', FLOOD_JOBS: String(floodJobs), FLOOD_NAME: 'bench.job' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const events = new Map<string, number>();
  const started = new Promise<void>((resolve, reject) => {
    createInterface({ input: producer.stdout! }).on('line', (line) => {
      const ev = JSON.parse(line) as { event: string; at: number };
      events.set(ev.event, ev.at);
      if (ev.event === 'start') resolve();
    });
    producer.on('exit', (code) => (code === 0 ? undefined : reject(new Error(`flood producer exited with ${code}`))));
  });
  const producerDone = new Promise<void>((resolve) => producer.on('exit', () => resolve()));
  await started;
  let peakBacklog = 0;
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      const n = await ingress.getJobCounts('waiting', 'prioritized');
      peakBacklog = Math.max(peakBacklog, (n.waiting ?? 0) + (n.prioritized ?? 0));
      await sleep(50);
    }
  })();
  let floodDone = false;
  let quietSent = 0;
  const quietLoop = (async () => {
    for (let after = 0; !floodDone || after++ < 20; ) {
      await ingress.add('bench.job', { tenantId: 'quiet', sentAt: Date.now(), payload: PAYLOAD }, { removeOnComplete: true });
      quietSent++;
      await sleep(50);
    }
  })();
  await producerDone;
  floodDone = true;
  const t0 = events.get('start')!;
  const addSeconds = (events.get('done')! - t0) / 1000;
  await quietLoop;
  await waitUntil(
    async () => {
      const n = await ingress.getJobCounts('waiting', 'prioritized');
      return (n.waiting ?? 0) + (n.prioritized ?? 0) === 0;
    },
    'ingress to empty',
    300_000,
    20,
  );
  const intakeSeconds = (Date.now() - t0) / 1000;
  sampling = false;
  await sampler;
  await waitUntil(() => quiet.length >= quietSent, 'every quiet job to reach its execution queue', 120_000);
  const proc = watch.stop();
  await teardown({ worker, ingress, tg, conns: [pc, wc], prefix });
  return {
    quietP50Ms: quantile(quiet, 0.5),
    quietP99Ms: quantile(quiet, 0.99),
    quietJobs: quiet.length,
    peakBacklog,
    producerAddsPerSec: floodJobs / addSeconds,
    intakePerSec: floodJobs / intakeSeconds,
    jobs: floodJobs + quietSent,
    tollgateCpuSec: proc.cpuSec,
    tollgatePeakRssMb: proc.peakRssMb,
  };
}
