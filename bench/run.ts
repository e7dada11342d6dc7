/**
 * `npm run bench`: raw BullMQ and tollgate side by side on the same Redis, in one run.
 *
 * Scenarios run alternately, RUNS times each; the table gives medians, ratios to the baselines and
 * absolute figures, and docs/benchmarks.md plus bench/results/latest.json are rewritten.
 *
 *   baseline-direct  producer → queue → plain worker (concurrency 50)
 *   baseline-move    producer → q1 → plain mover process (add to q2) → q2 → plain worker: any gate's floor
 *   tollgate-open    producer → ingress → tollgate process (gate + observer + API) → exec.bench → plain worker,
 *                    100 tenants, nothing binding
 *
 * Env: BENCH_JOBS (50000), BENCH_RUNS (3), REDIS_URL.
 */
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { deleteKeysWithPrefix } from '../src/redis/maintenance';

const ROOT = join(__dirname, '..');
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const JOBS = Number(process.env.BENCH_JOBS ?? 50_000);
const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const WORKER_CONCURRENCY = 50;
const MIDDLE_CONCURRENCY = 200; // the mover and the gate take the same number of jobs at once
const PAYLOAD = 'x'.repeat(150);

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
  extra: Record<string, number>;
}

const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: null });

async function info(section: string): Promise<Record<string, string>> {
  const text = await redis.info(section);
  const out: Record<string, string> = {};
  for (const line of text.split('\r\n')) {
    const i = line.indexOf(':');
    if (i > 0) out[line.slice(0, i)] = line.slice(i + 1);
  }
  return out;
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

async function redisCpu(): Promise<number> {
  const c = await info('cpu');
  return Number(c.used_cpu_user) + Number(c.used_cpu_sys);
}

/** CPU seconds and RSS of a child process, from /proc. */
function procStats(pid: number): { cpu: number; rssMb: number } {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[11]) + Number(fields[12]);
    const rssPages = Number(fields[21]);
    return { cpu: ticks / 100, rssMb: (rssPages * 4096) / 1048576 };
  } catch {
    return { cpu: 0, rssMb: 0 };
  }
}

const cleanup = (prefix: string) => deleteKeysWithPrefix(redis, prefix);

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
  const mem = await info('memory');
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
    redisPeakMemMb: Number(mem.used_memory_peak) / 1048576,
  };
}

function waitForMessage(child: ChildProcess, what: (line: string) => boolean, timeoutMs = 20_000): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('child did not start in time')), timeoutMs);
    const onData = (b: Buffer) => {
      if (b.toString().split('\n').some(what)) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout?.on('data', onData);
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

const scenarios: Record<string, Scenario> = {
  'baseline-direct': async (run) => {
    const prefix = `bench-${randomBytes(3).toString('hex')}`;
    const r = await measure(prefix, 'direct', 'bench.job', 'direct');
    await cleanup(prefix);
    return { scenario: 'baseline-direct', run, ...r, extra: {} };
  },
  'baseline-move': async (run) => {
    const prefix = `bench-${randomBytes(3).toString('hex')}`;
    const child = fork(join(__dirname, 'mover.ts'), [prefix, 'q1', 'q2', String(MIDDLE_CONCURRENCY)], {
      execArgv: ['--import', 'tsx'],
      env: { ...process.env, REDIS_URL },
      stdio: ['ignore', 'pipe', 'inherit', 'ipc'],
    });
    await waitForMessage(child, () => false);
    const r = await measure(prefix, 'q1', 'bench.job', 'q2', child);
    await stopChild(child);
    await cleanup(prefix);
    return { scenario: 'baseline-move', run, ...r, extra: {} };
  },
  'tollgate-open': async (run) => {
    const prefix = `bench-${randomBytes(3).toString('hex')}`;
    const dir = mkdtempSync(join(tmpdir(), 'tollgate-bench-'));
    const configFile = join(dir, 'tollgate.config.json');
    writeFileSync(
      configFile,
      JSON.stringify({
        downstreams: [{ name: 'bench', capacity: 1_000_000 }],
        routing: { rules: [{ jobName: 'bench.*', downstream: 'bench' }] },
        gate: { concurrency: MIDDLE_CONCURRENCY },
      }),
    );
    const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'workers', 'all.ts')], {
      cwd: ROOT,
      env: { ...process.env, REDIS_URL, TOLLGATE_PREFIX: prefix, TOLLGATE_CONFIG: configFile, PORT: '0', LOG_LEVEL: 'info' },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let url = '';
    await waitForMessage(child, (line) => {
      if (line.includes('observer reading execution events')) return true;
      const m = /"url":"([^"]+)"/.exec(line);
      if (m) url = m[1]!;
      return false;
    });
    const r = await measure(prefix, 'ingress', 'bench.job', 'exec.bench', child);
    const metrics = await (await fetch(`${url}/metrics`)).text();
    const p99 = histogramQuantile(metrics, 'tollgate_gate_promotion_seconds', 0.99);
    const p50 = histogramQuantile(metrics, 'tollgate_gate_promotion_seconds', 0.5);
    await stopChild(child);
    await cleanup(prefix);
    return { scenario: 'tollgate-open', run, ...r, extra: { decisionP50Ms: p50 * 1000, decisionP99Ms: p99 * 1000 } };
  },
};

/** Upper bound of the bucket holding quantile q of a Prometheus histogram (summed over labels). */
function histogramQuantile(text: string, name: string, q: number): number {
  const buckets = new Map<number, number>();
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}_bucket`)) continue;
    const le = /le="([^"]+)"/.exec(line)![1]!;
    const v = Number(line.slice(line.lastIndexOf(' ') + 1));
    const bound = le === '+Inf' ? Infinity : Number(le);
    buckets.set(bound, (buckets.get(bound) ?? 0) + v);
  }
  const sorted = [...buckets].sort((a, b) => a[0] - b[0]);
  const total = sorted.at(-1)?.[1] ?? 0;
  for (const [bound, count] of sorted) if (count >= q * total) return bound;
  return NaN;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

async function main(): Promise<void> {
  const names = (process.env.BENCH_SCENARIOS ?? Object.keys(scenarios).join(',')).split(',');
  const results: Result[] = [];
  for (let run = 1; run <= RUNS; run++) {
    for (const name of names) {
      const r = await scenarios[name]!(run);
      results.push(r);
      process.stdout.write(
        `run ${run} ${name.padEnd(16)} ${r.jobsPerSec.toFixed(0).padStart(7)} jobs/s  ${r.redisCmdsPerJob.toFixed(1)} cmds/job` +
          `${r.extra.decisionP99Ms !== undefined ? `  decision p99 ≤ ${r.extra.decisionP99Ms} ms` : ''}\n`,
      );
    }
  }
  const summary = names.map((name) => {
    const rs = results.filter((r) => r.scenario === name);
    const pick = (f: (r: Result) => number) => median(rs.map(f));
    return {
      scenario: name,
      jobsPerSec: pick((r) => r.jobsPerSec),
      redisCmdsPerJob: pick((r) => r.redisCmdsPerJob),
      redisCpuSec: pick((r) => r.redisCpuSec),
      benchCpuSec: pick((r) => r.benchCpuSec),
      childCpuSec: pick((r) => r.childCpuSec),
      childPeakRssMb: pick((r) => r.childPeakRssMb),
      redisPeakMemMb: pick((r) => r.redisPeakMemMb),
      decisionP50Ms: rs[0]!.extra.decisionP50Ms !== undefined ? pick((r) => r.extra.decisionP50Ms!) : undefined,
      decisionP99Ms: rs[0]!.extra.decisionP99Ms !== undefined ? pick((r) => r.extra.decisionP99Ms!) : undefined,
    };
  });
  const base = (n: string) => summary.find((s) => s.scenario === n);
  const machine = {
    date: new Date().toISOString().slice(0, 10),
    cpu: `${cpus().length} × ${cpus()[0]?.model ?? 'unknown'}`,
    node: process.version,
    redis: (await info('server')).redis_version,
    bullmq: JSON.parse(readFileSync(join(ROOT, 'node_modules', 'bullmq', 'package.json'), 'utf8')).version,
    ioredis: JSON.parse(readFileSync(join(ROOT, 'node_modules', 'ioredis', 'package.json'), 'utf8')).version,
    jobs: JOBS,
    runs: RUNS,
  };
  const rows = summary.map((s) => {
    const direct = base('baseline-direct');
    const move = base('baseline-move');
    return `| ${s.scenario} | ${s.jobsPerSec.toFixed(0)} | ${direct ? (s.jobsPerSec / direct.jobsPerSec).toFixed(2) : '-'} | ${
      move ? (s.jobsPerSec / move.jobsPerSec).toFixed(2) : '-'
    } | ${s.redisCmdsPerJob.toFixed(1)} | ${move ? (s.redisCmdsPerJob / move.redisCmdsPerJob).toFixed(2) : '-'} | ${s.redisCpuSec.toFixed(1)} | ${(
      s.benchCpuSec + s.childCpuSec
    ).toFixed(1)} | ${s.childPeakRssMb ? s.childPeakRssMb.toFixed(0) : '-'} | ${s.decisionP99Ms !== undefined ? `≤ ${s.decisionP99Ms}` : '-'} |`;
  });
  const table = [
    '| scenario | jobs/s (median) | × direct | × move | Redis cmds/job | cmds × move | Redis CPU s | Node CPU s | middle process peak RSS MB | decision p99 ms |',
    '|---|---|---|---|---|---|---|---|---|---|',
    ...rows,
  ].join('\n');
  process.stdout.write(`\n${table}\n`);
  mkdirSync(join(ROOT, 'bench', 'results'), { recursive: true });
  writeFileSync(join(ROOT, 'bench', 'results', 'latest.json'), `${JSON.stringify({ machine, summary, results }, null, 2)}\n`);
  const md = `# Benchmarks

Generated by \`npm run bench\` on ${machine.date}: ${machine.cpu}, Node ${machine.node}, Redis ${machine.redis},
BullMQ ${machine.bullmq}, ioredis ${machine.ioredis}. ${machine.jobs.toLocaleString('en')} jobs of ~200 bytes per scenario,
scenarios alternated, ${machine.runs} runs each, medians shown. Raw numbers: \`bench/results/latest.json\`.

- **baseline-direct**: producer → queue → plain BullMQ worker (concurrency ${WORKER_CONCURRENCY}).
- **baseline-move**: producer → q1 → a plain worker process that only \`add\`s each job to q2 (concurrency ${MIDDLE_CONCURRENCY}) → q2 → plain worker: the cost of any gate.
- **tollgate-open**: producer → ingress → tollgate process (gate + observer + API, gate concurrency ${MIDDLE_CONCURRENCY}) → exec.bench → plain worker; 100 tenants, nothing binding.

Throughput is end to end: first \`add\` to last job executed. Redis commands per job count every command, including those
run inside Lua scripts (INFO commandstats). Node CPU is the benchmark process (producer and final worker) plus the middle
process. Decision p99 is the upper bound of the histogram bucket holding the 99th percentile of
\`tollgate_gate_promotion_seconds\` (ingress job active in the gate → execution job added).

${table}
`;
  writeFileSync(join(ROOT, 'docs', 'benchmarks.md'), md);
  redis.disconnect();
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
