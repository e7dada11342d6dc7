/**
 * `npm run bench`: raw BullMQ and tollgate side by side on the same Redis, in one run.
 *
 * Scenarios run alternately, RUNS times each; the table gives medians, ratios to the baselines and
 * absolute figures, and docs/benchmarks.md plus bench/results/latest.json are rewritten.
 *
 *   baseline-direct  producer → queue → plain worker (concurrency 50)
 *   baseline-move    producer → q1 → plain mover process (add to q2) → q2 → plain worker: any gate's floor
 *   tollgate-open    producer → ingress → tollgate process (gate + observer + API) → exec.bench → plain worker,
 *                    100 tenants, nothing binding; then a trickle (200 jobs/s) for the uncontended decision latency
 *   tollgate-contended  1,000 tenants, proportional policy, capacity binding, one tenant flooding
 *   tollgate-breaker    a downstream failing then recovering: trip → open, promotions while open, replay
 *   scale (once, BENCH_SCALE=0 skips it)  10,000 tenants with quotas and 200,000 waiting jobs vs 100 tenants
 *
 * `npm run bench -- --report-only` re-renders docs/benchmarks.md from bench/results/latest.json without measuring.
 *
 * Env: BENCH_JOBS (50000), BENCH_RUNS (3), BENCH_SCENARIOS (comma-separated), BENCH_SCALE_JOBS (200000),
 * REDIS_URL, DATABASE_URL (a server where the bench may create and drop its own database).
 */
import { fork, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { breaker, contended, flood, scale, trickleLatency } from './governed';
import { Keys } from '../src/redis/keys';
import { bucketQuantile, cleanup, histogram, info, median, newPrefix, PAYLOAD, procStats, redis, REDIS_URL, retainedBytesPerJob, ROOT, startTollgate, waitUntil, watchRedisMemory } from './lib';

const JOBS = Number(process.env.BENCH_JOBS ?? 50_000);
const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const SCALE_JOBS = Number(process.env.BENCH_SCALE_JOBS ?? 200_000);
const LATEST = join(ROOT, 'bench', 'results', 'latest.json');
const WORKER_CONCURRENCY = 50;
const MIDDLE_CONCURRENCY = 200; // the mover and the gate take the same number of jobs at once

interface Result {
  scenario: string;
  run: number;
  seconds: number;
  jobsPerSec: number;
  redisCmdsPerJob: number;
  redisCpuSec: number;
  benchCpuSec: number;
  childCpuSec: number;
  childPeakRssMb: number;
  redisPeakMemMb: number;
  /** Top Redis commands by time: calls and microseconds per job (EVALSHA's time includes its inner calls). */
  profile: Array<{ cmd: string; callsPerJob: number; usecPerJob: number }>;
  extra: Record<string, number>;
}

async function totalCommands(): Promise<number> {
  const stats = await info('commandstats');
  let n = 0;
  for (const [k, v] of Object.entries(stats)) {
    if (!k.startsWith('cmdstat_') || k === 'cmdstat_info' || k === 'cmdstat_config') continue;
    n += Number(/calls=(\d+)/.exec(v)?.[1] ?? 0);
  }
  return n;
}

/** Per command: calls and microseconds (INFO commandstats), for the profile of where Redis time goes. */
async function commandProfile(): Promise<Map<string, { calls: number; usec: number }>> {
  const stats = await info('commandstats');
  const out = new Map<string, { calls: number; usec: number }>();
  for (const [k, v] of Object.entries(stats)) {
    if (!k.startsWith('cmdstat_') || k === 'cmdstat_info' || k === 'cmdstat_config') continue;
    out.set(k.slice(8), { calls: Number(/calls=(\d+)/.exec(v)?.[1] ?? 0), usec: Number(/usec=(\d+)/.exec(v)?.[1] ?? 0) });
  }
  return out;
}

async function redisCpu(): Promise<number> {
  const c = await info('cpu');
  return Number(c.used_cpu_user) + Number(c.used_cpu_sys);
}

function tenantOf(i: number): string {
  return `tenant-${i % 100}`;
}

async function produce(queue: Queue, name: string): Promise<void> {
  for (let start = 0; start < JOBS; start += 1000) {
    const n = Math.min(1000, JOBS - start);
    await queue.addBulk(
      Array.from({ length: n }, (_, k) => ({
        name,
        data: { tenantId: tenantOf(start + k), seq: start + k, payload: PAYLOAD },
        opts: { removeOnComplete: true },
      })),
    );
  }
}

/** Runs `consume` on queueName in this process until JOBS completed; returns elapsed seconds. */
async function measure(
  prefix: string,
  producerQueue: string,
  jobName: string,
  finalQueue: string,
  child?: ChildProcess,
): Promise<Omit<Result, 'scenario' | 'run' | 'extra'>> {
  const conn = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
  const pconn = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
  const producer = new Queue(producerQueue, { connection: pconn, prefix });
  let done = 0;
  let resolveDone!: () => void;
  const finished = new Promise<void>((r) => (resolveDone = r));
  const worker = new Worker(
    finalQueue,
    async () => {
      if (++done === JOBS) resolveDone();
    },
    { connection: conn, prefix, concurrency: WORKER_CONCURRENCY, removeOnComplete: { count: 0 } },
  );
  worker.on('error', () => undefined);
  await worker.waitUntilReady();
  await redis.config('RESETSTAT');
  const cmds0 = await totalCommands();
  const rcpu0 = await redisCpu();
  const bcpu0 = process.cpuUsage();
  const ccpu0 = child?.pid ? procStats(child.pid).cpu : 0;
  let peakRss = 0;
  const redisMem = watchRedisMemory();
  const sampler = setInterval(() => {
    if (child?.pid) peakRss = Math.max(peakRss, procStats(child.pid).rssMb);
  }, 100);
  const t0 = performance.now();
  await produce(producer, jobName);
  await finished;
  const seconds = (performance.now() - t0) / 1000;
  clearInterval(sampler);
  const bcpu = process.cpuUsage(bcpu0);
  const cmds = (await totalCommands()) - cmds0;
  const rcpu = (await redisCpu()) - rcpu0;
  const ccpu = child?.pid ? procStats(child.pid).cpu - ccpu0 : 0;
  const redisGrowth = await redisMem.stop();
  const profile = [...(await commandProfile())]
    .sort((a, b) => b[1].usec - a[1].usec)
    .slice(0, 14)
    .map(([cmd, v]) => ({ cmd, callsPerJob: +(v.calls / JOBS).toFixed(2), usecPerJob: +(v.usec / JOBS).toFixed(1) }));
  if (process.env.BENCH_PROFILE) process.stdout.write(`${JSON.stringify(profile)}\n`);
  await worker.close();
  await producer.close();
  conn.disconnect();
  pconn.disconnect();
  return {
    seconds,
    jobsPerSec: JOBS / seconds,
    redisCmdsPerJob: cmds / JOBS,
    redisCpuSec: rcpu,
    benchCpuSec: (bcpu.user + bcpu.system) / 1e6,
    childCpuSec: ccpu,
    childPeakRssMb: peakRss,
    redisPeakMemMb: redisGrowth,
    profile,
  };
}

function waitForReady(child: ChildProcess, timeoutMs = 20_000): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('child did not start in time')), timeoutMs);
    child.on('message', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((r) => child.on('exit', r));
  child.kill('SIGTERM');
  await exited;
}

type Scenario = (run: number) => Promise<Result>;

/** A result without a throughput run (the governed scenarios report their own figures). */
const figuresOnly = (scenario: string, run: number, extra: Record<string, number>): Result => ({
  scenario,
  run,
  seconds: NaN,
  jobsPerSec: NaN,
  redisCmdsPerJob: NaN,
  redisCpuSec: NaN,
  benchCpuSec: NaN,
  childCpuSec: NaN,
  childPeakRssMb: NaN,
  redisPeakMemMb: NaN,
  profile: [],
  extra,
});

/** A governed scenario with the Redis and CPU figures around it, per job it handled. */
async function governedRun(scenario: string, run: number, body: () => Promise<Record<string, number>>): Promise<Result> {
  await redis.config('RESETSTAT');
  const cmds0 = await totalCommands();
  const rcpu0 = await redisCpu();
  const bcpu0 = process.cpuUsage();
  const redisMem = watchRedisMemory();
  const extra = await body();
  const bcpu = process.cpuUsage(bcpu0);
  const redisGrowth = await redisMem.stop();
  const jobs = extra.jobs ?? NaN;
  const cmds = (await totalCommands()) - cmds0;
  const rcpu = (await redisCpu()) - rcpu0;
  return {
    ...figuresOnly(scenario, run, {
      ...extra,
      redisCmdsPerJob: cmds / jobs,
      redisCpuUsPerJob: (rcpu * 1e6) / jobs,
      nodeCpuUsPerJob: (((bcpu.user + bcpu.system) / 1e6 + (extra.tollgateCpuSec ?? 0)) * 1e6) / jobs,
      redisPeakGrowthMb: redisGrowth,
    }),
  };
}

const scenarios: Record<string, Scenario> = {
  'baseline-direct': async (run) => {
    const prefix = newPrefix();
    const r = await measure(prefix, 'direct', 'bench.job', 'direct');
    await cleanup(prefix);
    return { scenario: 'baseline-direct', run, ...r, extra: {} };
  },
  'baseline-move': async (run) => {
    const prefix = newPrefix();
    const child = fork(join(__dirname, 'mover.ts'), [prefix, 'q1', 'q2', String(MIDDLE_CONCURRENCY)], {
      execArgv: ['--import', 'tsx'],
      env: { ...process.env, REDIS_URL },
      stdio: ['ignore', 'pipe', 'inherit', 'ipc'],
    });
    await waitForReady(child);
    const r = await measure(prefix, 'q1', 'bench.job', 'q2', child);
    await stopChild(child);
    await cleanup(prefix);
    return { scenario: 'baseline-move', run, ...r, extra: {} };
  },
  'tollgate-open': async (run) => {
    const prefix = newPrefix();
    const tg = await startTollgate(prefix, {
      downstreams: [{ name: 'bench', capacity: 1_000_000 }],
      routing: { rules: [{ jobName: 'bench.*', downstream: 'bench' }] },
      gate: { concurrency: MIDDLE_CONCURRENCY },
    });
    const r = await measure(prefix, 'ingress', 'bench.job', 'exec.bench', tg.child);
    const flood = histogram(await tg.metrics(), 'tollgate_gate_promotion_seconds');
    // What Redis keeps per finished job once every job was released (unchanged after that until the
    // records' retention ends, so the same one minute later).
    await waitUntil(async () => (await redis.zcard(new Keys(prefix).inflight('bench'))) === 0, 'every job released', 120_000);
    const kept = await retainedBytesPerJob(prefix, 'exec.bench', JOBS);
    await tg.stop();
    await cleanup(prefix);
    // Uncontended latency on a fresh process: right after the flood its observer still works through
    // the flood's events, which would be contention, not the cost of a decision.
    const prefix2 = newPrefix();
    const fresh = await startTollgate(prefix2, {
      downstreams: [{ name: 'bench', capacity: 1_000_000 }],
      routing: { rules: [{ jobName: 'bench.*', downstream: 'bench' }] },
      gate: { concurrency: MIDDLE_CONCURRENCY },
    });
    const latency = await trickleLatency(fresh);
    await fresh.stop();
    await cleanup(prefix2);
    return {
      scenario: 'tollgate-open',
      run,
      ...r,
      extra: { floodDecisionP99Ms: bucketQuantile(flood, 0.99) * 1000, ...latency, keptBytesPerFinishedJob: kept.perJob },
    };
  },
  'tollgate-contended': async (run) => governedRun('tollgate-contended', run, contended),
  'tollgate-breaker': async (run) => governedRun('tollgate-breaker', run, breaker),
  'tollgate-flood': async (run) => governedRun('tollgate-flood', run, flood),
};

const fmt = (n: number | undefined, digits = 0) => (n === undefined || Number.isNaN(n) ? '-' : n.toLocaleString('en', { maximumFractionDigits: digits, minimumFractionDigits: digits }));

async function main(): Promise<void> {
  if (process.argv.includes('--report-only')) {
    // Re-renders docs/benchmarks.md from the last run's figures (after editing bench/analysis.md), measuring nothing.
    // JSON wrote a figure not measured (NaN) as null: read it back as NaN.
    report(JSON.parse(readFileSync(LATEST, 'utf8'), (_k, v: unknown) => (v === null ? Number.NaN : v)) as Report);
    redis.disconnect();
    return;
  }
  const names = (process.env.BENCH_SCENARIOS ?? Object.keys(scenarios).join(',')).split(',').filter((n) => n in scenarios);
  const results: Result[] = [];
  for (let run = 1; run <= RUNS; run++) {
    for (const name of names) {
      const r = await scenarios[name]!(run);
      results.push(r);
      process.stdout.write(
        `run ${run} ${name.padEnd(18)} ${Number.isNaN(r.jobsPerSec) ? '' : `${r.jobsPerSec.toFixed(0).padStart(7)} jobs/s  ${r.redisCmdsPerJob.toFixed(1)} cmds/job  `}` +
          `${Object.entries(r.extra).map(([k, v]) => `${k}=${fmt(v, 1)}`).join(' ')}\n`,
      );
    }
  }
  const summary = names.map((name) => {
    const rs = results.filter((r) => r.scenario === name);
    const pick = (f: (r: Result) => number) => median(rs.map(f));
    const extra: Record<string, number> = {};
    for (const k of Object.keys(rs[0]!.extra)) extra[k] = pick((r) => r.extra[k]!);
    return {
      scenario: name,
      jobsPerSec: pick((r) => r.jobsPerSec),
      redisCmdsPerJob: pick((r) => r.redisCmdsPerJob),
      redisCpuSec: pick((r) => r.redisCpuSec),
      redisCpuUsPerJob: pick((r) => (r.redisCpuSec * 1e6) / JOBS),
      nodeCpuUsPerJob: pick((r) => ((r.benchCpuSec + r.childCpuSec) * 1e6) / JOBS),
      childPeakRssMb: pick((r) => r.childPeakRssMb),
      redisPeakMemMb: pick((r) => r.redisPeakMemMb),
      extra,
    };
  });
  const scaleRuns: Array<Record<string, number>> = [];
  if (process.env.BENCH_SCALE !== '0' && (process.env.BENCH_SCENARIOS === undefined || process.env.BENCH_SCENARIOS.includes('scale'))) {
    for (const tenants of [100, 10_000]) {
      const r = await scale(tenants, SCALE_JOBS);
      scaleRuns.push(r);
      process.stdout.write(`scale ${tenants} tenants: ${Object.entries(r).map(([k, v]) => `${k}=${fmt(v, 1)}`).join(' ')}\n`);
    }
  }
  const machine = {
    date: new Date().toISOString().slice(0, 10),
    cpu: `${cpus().length} × ${cpus()[0]?.model ?? 'unknown'}`,
    node: process.version,
    redis: (await info('server')).redis_version ?? 'unknown',
    bullmq: JSON.parse(readFileSync(join(ROOT, 'node_modules', 'bullmq', 'package.json'), 'utf8')).version,
    ioredis: JSON.parse(readFileSync(join(ROOT, 'node_modules', 'ioredis', 'package.json'), 'utf8')).version,
    jobs: JOBS,
    runs: RUNS,
  };
  const data: Report = { machine, summary, scale: scaleRuns, results };
  mkdirSync(join(ROOT, 'bench', 'results'), { recursive: true });
  writeFileSync(LATEST, `${JSON.stringify(data, null, 2)}\n`);
  report(data);
  redis.disconnect();
}

interface Report {
  machine: { date: string; cpu: string; node: string; redis: string; bullmq: string; ioredis: string; jobs: number; runs: number };
  summary: Summary[];
  scale: Array<Record<string, number>>;
  results: Result[];
}

/** Prints the tables and writes docs/benchmarks.md from a run's figures (also from a saved latest.json). */
function report({ machine, summary, scale: scaleRuns, results }: Report): void {
  const RUNS = machine.runs;
  const base = (n: string) => summary.find((s) => s.scenario === n);
  const direct = base('baseline-direct');
  const move = base('baseline-move');
  const throughputRows = summary
    .filter((s) => !Number.isNaN(s.jobsPerSec))
    .map(
      (s) =>
        `| ${s.scenario} | ${fmt(s.jobsPerSec)} | ${direct ? fmt(s.jobsPerSec / direct.jobsPerSec, 2) : '-'} | ${move ? fmt(s.jobsPerSec / move.jobsPerSec, 2) : '-'} | ` +
        `${fmt(s.redisCmdsPerJob, 1)} | ${move ? fmt(s.redisCmdsPerJob / move.redisCmdsPerJob, 2) : '-'} | ${fmt(s.redisCpuUsPerJob)} | ${fmt(s.nodeCpuUsPerJob)} | ` +
        `${s.childPeakRssMb ? fmt(s.childPeakRssMb) : '-'} | ${fmt(s.redisPeakMemMb)} |`,
    );
  const throughput = [
    '| scenario | jobs/s (median) | × direct | × move | Redis cmds/job | cmds × move | Redis CPU µs/job | Node CPU µs/job | middle process peak RSS MB | Redis memory peak growth MB |',
    '|---|---|---|---|---|---|---|---|---|---|',
    ...throughputRows,
  ].join('\n');
  const open = base('tollgate-open');
  const con = base('tollgate-contended');
  const brk = base('tollgate-breaker');
  const fl = base('tollgate-flood');
  const targets: string[] = ['| target | measured | met |', '|---|---|---|'];
  const row = (what: string, value: string, ok: boolean | undefined) => targets.push(`| ${what} | ${value} | ${ok === undefined ? '-' : ok ? 'yes' : '**no**'} |`);
  if (open && move) row('tollgate-open ≥ 1.0 × baseline-move', `${fmt(open.jobsPerSec / move.jobsPerSec, 2)} ×`, open.jobsPerSec >= move.jobsPerSec);
  if (open && direct) row('tollgate-open ≥ 0.6 × baseline-direct', `${fmt(open.jobsPerSec / direct.jobsPerSec, 2)} ×`, open.jobsPerSec >= 0.6 * direct.jobsPerSec);
  if (open) row('gate decision latency (active → exec job added) p99 ≤ 5 ms uncontended (200 jobs/s)', `≤ ${fmt(open.extra.promotionP99Ms, 1)} ms (bucket bound; p50 ≤ ${fmt(open.extra.promotionP50Ms, 1)} ms)`, open.extra.promotionP99Ms! <= 5);
  if (con) row("tollgate-contended Jain's index ≥ 0.99", fmt(con.extra.jain, 4), con.extra.jain! >= 0.99);
  if (con) row('tollgate-contended quiet-tenant p50', `${fmt(con.extra.quietP50Ms)} ms`, undefined);
  if (con) row('tollgate-contended quiet-tenant p99 ≤ 500 ms', `${fmt(con.extra.quietP99Ms)} ms`, con.extra.quietP99Ms! <= 500);
  if (open) row('Redis bytes kept per finished job (records, deduplication keys) < 100 B', `${fmt(open.extra.keptBytesPerFinishedJob)} B`, open.extra.keptBytesPerFinishedJob! < 100);
  if (open && move) row('Redis commands per job ≤ 1.5 × baseline-move', `${fmt(open.redisCmdsPerJob / move.redisCmdsPerJob, 2)} ×`, open.redisCmdsPerJob <= 1.5 * move.redisCmdsPerJob);
  if (fl) row("tollgate-flood quiet tenant's ingress → exec p99 ≤ 500 ms (aim ≤ 100 ms)", `${fmt(fl.extra.quietP99Ms)} ms (p50 ${fmt(fl.extra.quietP50Ms)} ms)`, fl.extra.quietP99Ms! <= 500);
  if (fl) row('tollgate-flood: gate intake keeps pace with the producer', `intake ${fmt(fl.extra.intakePerSec)} jobs/s, producer ${fmt(fl.extra.producerAddsPerSec)} jobs/s; ingress peak backlog ${fmt(fl.extra.peakBacklog)}`, undefined);
  if (brk) row('tollgate-breaker: promotions while open = 0', fmt(brk.extra.promotedWhileOpen), brk.extra.promotedWhileOpen === 0);
  const extrasTable = (s: { scenario: string; extra: Record<string, number> } | undefined) =>
    s ? [`**${s.scenario}** (medians of ${RUNS})`, '', '| figure | value |', '|---|---|', ...Object.entries(s.extra).map(([k, v]) => `| ${k} | ${fmt(v, k === 'jain' ? 4 : 2)} |`), ''].join('\n') : '';
  const scaleTable = scaleRuns.length
    ? [
        '| tenants (each with a quota) | waiting jobs | intake jobs/s | drain (admission) jobs/s | Redis bytes / waiting job | BullMQ\'s own bytes / waiting job | gate peak RSS MB | gate RSS growth bytes / waiting job |',
        '|---|---|---|---|---|---|---|---|',
        ...scaleRuns.map(
          (r) =>
            `| ${fmt(r.tenants)} | ${fmt(r.jobs)} | ${fmt(r.intakePerSec)} | ${fmt(r.drainPerSec)} | ${fmt(r.redisBytesPerWaitingJob)} | ${fmt(r.bullmqBytesPerWaitingJob)} | ${fmt(r.gateRssMb)} | ${fmt(r.gateRssGrowthBytesPerWaitingJob)} |`,
        ),
      ].join('\n')
    : '';
  process.stdout.write(`\n${throughput}\n\n${targets.join('\n')}\n\n${scaleTable}\n`);
  const md = `# Benchmarks

Generated by \`npm run bench\` on ${machine.date}: ${machine.cpu}, Node ${machine.node}, Redis ${machine.redis},
BullMQ ${machine.bullmq}, ioredis ${machine.ioredis}. ${machine.jobs.toLocaleString('en')} jobs of ~200 bytes per throughput scenario,
scenarios alternated, ${machine.runs} runs each, medians shown. Raw numbers: \`bench/results/latest.json\`.
Everything (Redis, the benchmark process, the middle process) shares the machine's cores.

- **baseline-direct**: producer → queue → plain BullMQ worker (concurrency ${WORKER_CONCURRENCY}).
- **baseline-move**: producer → q1 → a plain worker process that only \`add\`s each job to q2 (concurrency ${MIDDLE_CONCURRENCY}) → q2 → plain worker: the cost of any gate.
- **tollgate-open**: producer → ingress → tollgate process (gate + observer + API, gate concurrency ${MIDDLE_CONCURRENCY}) → exec.bench → plain worker; 100 tenants, nothing binding. Then 1,000 more jobs at 200 jobs/s for the uncontended decision latency.
- **tollgate-contended**: 1,000 tenants, proportional policy, capacity 20 with 20 ms jobs (capacity binds at ≤ 1,000 jobs/s); one tenant floods 20,000 jobs at once while 999 quiet tenants send 100 jobs/s between them for 15 s.
- **tollgate-breaker**: capacity 50; execution fails from the start (breaker: 5 consecutive failures, open 2 s, 3 probes, 2 s replay ramp) and recovers once the breaker is open; producers send 400 jobs/s for 6 s.
- **tollgate-flood**: capacity 20 with 5 ms jobs; a producer process adds 100,000 jobs of one tenant with \`addBulk\` (1,000 at a time) as fast as it can while a second tenant adds one job every 50 ms, from the flood's first add until a second after its last. The quiet tenant's ingress add → execution job added (p50/p99), ingress's peak backlog, the producer's add rate and the gate's intake rate.
- **scale**: 100 and 10,000 tenants, each with a quota of its own, ${(scaleRuns[0]?.jobs ?? SCALE_JOBS).toLocaleString('en')} jobs waiting behind a full downstream (capacity 100), then drained by a worker.

Throughput is end to end: first \`add\` to last job executed. Redis commands per job count every command, including those
run inside Lua scripts (INFO commandstats). CPU per job: Redis's own, and Node's (the benchmark process, producer and
final worker, plus the middle process). Promotion latency is the bucket bound of \`tollgate_gate_promotion_seconds\`
(ingress job active in the gate → execution job added) holding the quantile, for the trickled jobs only; decision-only
latency likewise from \`tollgate_gate_decision_seconds\` (active → decided, before the add).

## Throughput

${throughput}

## Targets (issues 6 and 11), as measured in this run

${targets.join('\n')}

## Governed scenarios

${extrasTable(open)}
${extrasTable(con)}
${extrasTable(brk)}
${extrasTable(fl)}
Fairness (contended): each tenant's admissions while the quiet tenants sent (the flood backlogged throughout), divided
by its max-min fair share of all admissions in that window (a quiet tenant is entitled to what it sent, the flooding
tenant to the rest); Jain's index of those ratios over the 1,000 tenants (1 = every tenant got exactly its fair share;
a quiet job not started by the window's end lowers its tenant's ratio).

## Scale check

${scaleTable || '(not run: BENCH_SCALE=0)'}

## Where the time goes (Redis, per job, first run)

${['baseline-move', 'tollgate-open']
  .map((n) => results.find((r) => r.scenario === n))
  .filter((r): r is Result => !!r)
  .map((r) => `**${r.scenario}**: ${r.profile.slice(0, 8).map((p) => `${p.cmd} ${p.callsPerJob}×/${p.usecPerJob} µs`).join(', ')}`)
  .join('\n\n')}

${fillAnalysis(readFileSync(join(__dirname, 'analysis.md'), 'utf8'), analysisFigures(machine, results, summary))}`;
  writeFileSync(join(ROOT, 'docs', 'benchmarks.md'), md);
}

interface Summary {
  scenario: string;
  jobsPerSec: number;
  redisCmdsPerJob: number;
  redisCpuSec: number;
  redisCpuUsPerJob: number;
  nodeCpuUsPerJob: number;
  childPeakRssMb: number;
  redisPeakMemMb: number;
  extra: Record<string, number>;
}

/** This run's figures for the analysis text (bench/analysis.md); a scenario not run leaves its figures "not measured". */
function analysisFigures(machine: { date: string; runs: number }, results: Result[], summary: Summary[]): Record<string, string> {
  const of = (n: string) => summary.find((s) => s.scenario === n);
  const [open, move, con] = [of('tollgate-open'), of('baseline-move'), of('tollgate-contended')];
  const figures: Record<string, string> = { date: machine.date, runs: String(machine.runs) };
  if (open && move) {
    const perRun = results
      .filter((r) => r.scenario === 'tollgate-open')
      .map((r) => r.jobsPerSec / results.find((m) => m.scenario === 'baseline-move' && m.run === r.run)!.jobsPerSec);
    const lo = Math.min(...perRun);
    const hi = Math.max(...perRun);
    figures.openMoveRange = lo.toFixed(2) === hi.toFixed(2) ? lo.toFixed(2) : `${lo.toFixed(2)}–${hi.toFixed(2)}`;
    figures.openMoveMedian = (open.jobsPerSec / move.jobsPerSec).toFixed(2);
    figures.openMovePairedMedian = median(perRun).toFixed(2);
    const moves = results.filter((r) => r.scenario === 'baseline-move').map((r) => r.jobsPerSec);
    figures.moveRange = `${fmt(Math.min(...moves))}–${fmt(Math.max(...moves))}`;
    figures.moveRedisUs = fmt(move.redisCpuUsPerJob);
    figures.openRedisUs = fmt(open.redisCpuUsPerJob);
    figures.redisUsRatio = (open.redisCpuUsPerJob / move.redisCpuUsPerJob).toFixed(2);
    figures.redisUsInverse = (move.redisCpuUsPerJob / open.redisCpuUsPerJob).toFixed(2);
    figures.cmdsRatio = (open.redisCmdsPerJob / move.redisCmdsPerJob).toFixed(2);
  }
  if (open) {
    for (const k of ['promotionP99', 'promotionP50', 'decisionP99', 'decisionP50'] as const) {
      const v = open.extra[k.startsWith('decision') ? `decisionOnly${k.slice(8)}Ms` : `${k}Ms`];
      if (v !== undefined) figures[k] = fmt(v);
    }
  }
  if (con) {
    figures.contendedAdmitted = fmt(con.extra.admittedPerSec!);
    figures.quietP99 = fmt(con.extra.quietP99Ms!);
    figures.jain = fmt(con.extra.jain!, 4);
  }
  const fl = of('tollgate-flood');
  if (fl) {
    const p99s = results.filter((r) => r.scenario === 'tollgate-flood').map((r) => r.extra.quietP99Ms!);
    figures.floodP99Range = `${fmt(Math.min(...p99s))}–${fmt(Math.max(...p99s))}`;
    figures.floodP50 = fmt(fl.extra.quietP50Ms!);
    figures.floodBacklog = fmt(fl.extra.peakBacklog!);
    figures.floodIntake = fmt(fl.extra.intakePerSec!);
    figures.floodProducer = fmt(fl.extra.producerAddsPerSec!);
  }
  if (open?.extra.keptBytesPerFinishedJob !== undefined) figures.keptBytes = fmt(open.extra.keptBytesPerFinishedJob);
  return figures;
}

/** Replaces every {{name}} of the analysis text; an unknown name is a bug in the text and fails the run. */
function fillAnalysis(text: string, figures: Record<string, string>): string {
  const known = new Set(['date', 'runs', 'openMoveRange', 'openMoveMedian', 'openMovePairedMedian', 'moveRange', 'moveRedisUs', 'openRedisUs', 'redisUsRatio', 'redisUsInverse', 'cmdsRatio', 'promotionP99', 'promotionP50', 'decisionP99', 'decisionP50', 'contendedAdmitted', 'quietP99', 'jain', 'floodP99Range', 'floodP50', 'floodBacklog', 'floodIntake', 'floodProducer', 'keptBytes']);
  return text.replace(/\{\{(\w+)\}\}/g, (_, name: string) => {
    if (!known.has(name)) throw new Error(`bench/analysis.md names an unknown figure {{${name}}}`);
    return figures[name] ?? '(not measured in this run)';
  });
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
