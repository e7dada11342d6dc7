/**
 * `npm run bench:stages`: where Redis spends its time per job along tollgate's path, stage by stage
 * (claim, decide, wait, add, finish, the execution worker's own BullMQ calls, release), measured with
 * SLOWLOG at a 0 µs threshold while a tollgate process (gate + observer + API) moves BENCH_JOBS jobs
 * (default 10,000) of 100 tenants to a plain worker. Each script call is named from its SHA (tollgate's
 * own scripts) or from its key count and first key (BullMQ's). Prints a table; writes nothing.
 *
 * SLOWLOG itself costs Redis time, so the totals run above an unprofiled run; the shares hold.
 */
import { fork } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { scriptsFor } from '../src/redis/scripts';
import { Keys } from '../src/redis/keys';
import { cleanup, newPrefix, PAYLOAD, redis, REDIS_URL, retainedBytesPerJob, startTollgate, waitUntil } from './lib';

const JOBS = Number(process.env.BENCH_JOBS ?? 10_000);

/** tollgate's scripts by SHA, as ioredis loads them (the loader's inlined source). */
function ownScripts(): Map<string, string> {
  // Defined on a throwaway client exactly as tollgate defines them; ioredis keeps each script's SHA.
  const client = new Redis(REDIS_URL, { lazyConnect: true });
  scriptsFor(client);
  const out = new Map<string, string>();
  const set = (client as unknown as { scriptsSet: Record<string, { sha: string }> }).scriptsSet;
  for (const [name, script] of Object.entries(set)) out.set(script.sha, name.replace(/^tg_/, ''));
  client.disconnect();
  return out;
}

/** BullMQ's scripts, named by file: the key count of each, as a fallback label with the first key. */
function bullmqKeyCounts(): Map<number, string[]> {
  const dir = join(require.resolve('bullmq'), '..', '..', 'cjs', 'commands');
  const out = new Map<number, string[]>();
  for (const f of readdirSync(dir)) {
    const m = /^(\w+)-(\d+)\.lua$/.exec(f);
    if (m) out.set(Number(m[2]), [...(out.get(Number(m[2])) ?? []), m[1]!]);
  }
  return out;
}

/** baseline-move's mover as its own process (bench/mover.ts), with the stop() of a tollgate process. */
async function startMover(prefix: string): Promise<{ stop(): Promise<void> }> {
  const child = fork(join(__dirname, 'mover.ts'), [prefix, 'q1', 'q2', '200'], { execArgv: ['--import', 'tsx'], env: { ...process.env, REDIS_URL }, stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
  await new Promise((r) => child.once('message', r));
  return {
    async stop() {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    },
  };
}

async function main(): Promise<void> {
  const own = ownScripts();
  const bull = bullmqKeyCounts();
  const prefix = newPrefix();
  // BENCH_STAGES_BASELINE=move: the same through baseline-move's plain mover (q1 -> mover -> q2), to compare.
  const baseline = process.env.BENCH_STAGES_BASELINE === 'move';
  const flood = process.env.BENCH_STAGES_FLOOD === '1';
  const [from, to] = baseline ? ['q1', 'q2'] : ['ingress', 'exec.bench'];
  const tg = baseline
    ? await startMover(prefix)
    : await startTollgate(prefix, {
        // BENCH_STAGES_FLOOD=1: capacity binds (20 slots, 5 ms jobs), one tenant: the waiting place's path.
        downstreams: [{ name: 'bench', capacity: flood ? 20 : 1_000_000 }],
        routing: { rules: [{ jobName: 'bench.*', downstream: 'bench' }] },
        gate: { concurrency: 200 },
      });
  const pc = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
  const wc = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
  const ingress = new Queue(from, { connection: pc, prefix });
  let done = 0;
  let resolveDone!: () => void;
  const finished = new Promise<void>((r) => (resolveDone = r));
  const worker = new Worker(to, async () => {
    if (flood) await new Promise((r) => setTimeout(r, 5));
    if (++done === JOBS) resolveDone();
  }, { connection: wc, prefix, concurrency: 50, removeOnComplete: { count: 0 } });
  await worker.waitUntilReady();
  // BENCH_STAGES_SLOWLOG=0: no SLOWLOG (for a CPU profile of the tollgate process, BENCH_CPU_PROF).
  const logging = process.env.BENCH_STAGES_SLOWLOG !== '0';
  if (logging) await redis.config('SET', 'slowlog-log-slower-than', '0');
  // BENCH_STAGES_MONITOR=1: also count the commands each connection sends outside scripts (MONITOR).
  const top = new Map<string, number>();
  const monitor = process.env.BENCH_STAGES_MONITOR === '1' ? await new Redis(REDIS_URL).monitor() : undefined;
  monitor?.on('monitor', (_time: string, args: string[], source: string) => {
    if (source.startsWith('lua')) return;
    const k = `${source.replace(/:\d+$/, '')} ${String(args[0]).toLowerCase()}`;
    top.set(k, (top.get(k) ?? 0) + 1);
  });
  await redis.config('SET', 'slowlog-max-len', String(JOBS * 250));
  await redis.slowlog('RESET');
  const stats = async () => {
    const text = await redis.info('stats');
    const cpu = await redis.info('cpu');
    const num = (t: string, k: string) => Number(new RegExp(`${k}:([\\d.]+)`).exec(t)?.[1] ?? 0);
    return { in: num(text, 'total_net_input_bytes'), out: num(text, 'total_net_output_bytes'), cmds: num(text, 'total_commands_processed'), cpu: num(cpu, 'used_cpu_user') + num(cpu, 'used_cpu_sys') };
  };
  const s0 = await stats();
  for (let start = 0; start < JOBS; start += 1000) {
    await ingress.addBulk(Array.from({ length: Math.min(1000, JOBS - start) }, (_, k) => ({ name: 'bench.job', data: { tenantId: flood ? 'flood' : `tenant-${(start + k) % 100}`, seq: start + k, payload: PAYLOAD }, opts: { removeOnComplete: true } })));
  }
  await finished;
  const s1 = await stats();
  process.stdout.write(
    `per job: ${((s1.in - s0.in) / JOBS).toFixed(0)} bytes in, ${((s1.out - s0.out) / JOBS).toFixed(0)} bytes out, ${((s1.cmds - s0.cmds) / JOBS).toFixed(1)} commands, ${(((s1.cpu - s0.cpu) * 1e6) / JOBS).toFixed(0)} µs Redis CPU\n`,
  );
  if (monitor) {
    const names = new Map<string, string>();
    for (const line of String(await redis.client('LIST')).split('\n')) {
      const addr = /addr=(\S+)/.exec(line)?.[1];
      const name = /name=(\S*)/.exec(line)?.[1];
      if (addr) names.set(addr.replace(/:\d+$/, ''), name ?? '');
    }
    monitor.disconnect();
    process.stdout.write('commands sent outside scripts, per job:\n');
    for (const [k, n] of [...top].sort((a, b) => b[1] - a[1]).slice(0, 30)) process.stdout.write(`  ${(n / JOBS).toFixed(2)}  ${k}\n`);
  }
  // The observer's last releases.
  await new Promise((r) => setTimeout(r, 1500));
  const log = (await redis.slowlog('GET', String(JOBS * 250))) as Array<[number, number, number, string[]]>;
  await redis.config('SET', 'slowlog-log-slower-than', '10000');
  const by = new Map<string, { calls: number; usec: number }>();
  for (const [, , usec, args] of log) {
    const cmd = String(args[0]).toLowerCase();
    let name = cmd;
    if (cmd === 'evalsha' || cmd === 'eval') {
      const sha = String(args[1]);
      const keys = Number(args[2]);
      const first = String(args[3] ?? '');
      name = own.get(sha) ?? `bullmq ${(bull.get(keys) ?? ['?']).join('|')} (${first.replace(`${prefix}:`, '').replace(/:[^:]*$/, ':…')})`;
    } else if (args.some((a) => String(a).includes('slowlog'))) continue;
    const e = by.get(name) ?? { calls: 0, usec: 0 };
    e.calls++;
    e.usec += usec;
    by.set(name, e);
  }
  const total = [...by.values()].reduce((s, e) => s + e.usec, 0);
  process.stdout.write(`${JOBS} jobs through ${baseline ? 'baseline-move' : 'tollgate-open'}; ${log.length} commands logged; ${(total / JOBS).toFixed(1)} µs of Redis per job\n\n`);
  process.stdout.write('| stage (script or command) | calls / job | µs / job | share |\n|---|---|---|---|\n');
  for (const [name, e] of [...by].sort((a, b) => b[1].usec - a[1].usec).slice(0, 25)) {
    process.stdout.write(`| ${name} | ${(e.calls / JOBS).toFixed(2)} | ${(e.usec / JOBS).toFixed(1)} | ${((100 * e.usec) / total).toFixed(1)} % |\n`);
  }
  if (!baseline) {
    // What Redis keeps per finished job once every job was released (nothing changes after that until the
    // records' retention ends: the figure one minute later is the same).
    await waitUntil(async () => (await redis.zcard(new Keys(prefix).inflight('bench'))) === 0, 'every job released', 60_000);
    const kept = await retainedBytesPerJob(prefix, to, JOBS);
    process.stdout.write(`\nkept per finished job: ${kept.perJob.toFixed(0)} B (decision record ${kept.recordBytes.toFixed(0)} B, deduplication key ${kept.dedupBytes.toFixed(0)} B)\n`);
  }
  await worker.close();
  await ingress.close();
  await tg.stop();
  pc.disconnect();
  wc.disconnect();
  await cleanup(prefix);
  redis.disconnect();
}

void main().catch((err) => {
  process.stderr.write(`${(err as Error).stack}\n`);
  process.exit(1);
});
