/**
 * What the benchmark scenarios share: Redis figures (INFO), process figures (/proc), a tollgate
 * process of its own (prefix, database and config) with its API, and small statistics.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { Client } from 'pg';
import { deleteKeysWithPrefix } from '../src/redis/maintenance';
import { Keys } from '../src/redis/keys';

export const ROOT = join(__dirname, '..');
export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
export const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
export const PAYLOAD = 'x'.repeat(150);

export const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: null });

export async function info(section: string): Promise<Record<string, string>> {
  const text = await redis.info(section);
  const out: Record<string, string> = {};
  for (const line of text.split('\r\n')) {
    const i = line.indexOf(':');
    if (i > 0) out[line.slice(0, i)] = line.slice(i + 1);
  }
  return out;
}

export async function usedMemory(): Promise<number> {
  return Number((await info('memory')).used_memory);
}

/** CPU seconds and RSS of a process, from /proc. */
export function procStats(pid: number): { cpu: number; rssMb: number } {
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

/** Redis used_memory sampled every 100 ms until stop(): the peak growth over the start, in MB. */
export function watchRedisMemory(): { stop(): Promise<number> } {
  let start: number | undefined;
  let peak = 0;
  const sample = async () => {
    const m = await usedMemory();
    start ??= m;
    peak = Math.max(peak, m);
  };
  const first = sample();
  const timer = setInterval(() => void sample().catch(() => undefined), 100);
  return {
    async stop() {
      clearInterval(timer);
      await first;
      await sample();
      return (peak - start!) / 1048576;
    },
  };
}

/** CPU seconds used and peak RSS of a process from now until stop(). */
export function watchProcess(pid: number): { stop(): { cpuSec: number; peakRssMb: number } } {
  const cpu0 = procStats(pid).cpu;
  let peak = procStats(pid).rssMb;
  const timer = setInterval(() => (peak = Math.max(peak, procStats(pid).rssMb)), 100);
  return {
    stop() {
      clearInterval(timer);
      const now = procStats(pid);
      return { cpuSec: now.cpu - cpu0, peakRssMb: Math.max(peak, now.rssMb) };
    },
  };
}

export const cleanup = (prefix: string) => deleteKeysWithPrefix(redis, prefix);
export const newPrefix = () => `bench-${randomBytes(3).toString('hex')}`;
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function waitUntil(probe: () => Promise<boolean> | boolean, what: string, timeoutMs = 120_000, everyMs = 20): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`bench: timed out waiting for ${what}`);
    await sleep(everyMs);
  }
}

export const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

export function quantile(xs: number[], q: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)]!;
}

/** Jain's fairness index: 1 when all values are equal. */
export function jain(xs: number[]): number {
  const sum = xs.reduce((a, b) => a + b, 0);
  const sq = xs.reduce((a, b) => a + b * b, 0);
  return sq === 0 ? 1 : (sum * sum) / (xs.length * sq);
}

/**
 * Max-min fair shares of `capacity` among demands (water-filling): tenants asking less than an equal
 * share get what they ask; the rest split what is left. `Infinity` is a backlogged tenant.
 */
export function maxMinShares(demands: number[], capacity: number): number[] {
  const order = demands.map((d, i) => [d, i] as const).sort((a, b) => a[0] - b[0]);
  const out = new Array<number>(demands.length).fill(0);
  let left = capacity;
  order.forEach(([d, i], k) => {
    const share = left / (order.length - k);
    const give = Math.min(d, share);
    out[i] = give;
    left -= give;
  });
  return out;
}

/** Parsed histogram buckets (cumulative counts by upper bound, summed over labels) of a Prometheus text. */
export function histogram(text: string, name: string): Map<number, number> {
  const buckets = new Map<number, number>();
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}_bucket`)) continue;
    const le = /le="([^"]+)"/.exec(line)![1]!;
    const v = Number(line.slice(line.lastIndexOf(' ') + 1));
    const bound = le === '+Inf' ? Infinity : Number(le);
    buckets.set(bound, (buckets.get(bound) ?? 0) + v);
  }
  return buckets;
}

/** Upper bound of the bucket holding quantile q of (after - before) histogram counts. */
export function bucketQuantile(after: Map<number, number>, q: number, before: Map<number, number> = new Map()): number {
  const sorted = [...after].map(([b, n]) => [b, n - (before.get(b) ?? 0)] as const).sort((a, b) => a[0] - b[0]);
  const total = sorted.at(-1)?.[1] ?? 0;
  if (total === 0) return NaN;
  for (const [bound, count] of sorted) if (count >= q * total) return bound;
  return NaN;
}

export const ADMIN_TOKEN = `bench-admin-${randomBytes(12).toString('hex')}`;

export interface TollgateProcess {
  readonly child: ChildProcess;
  readonly url: string;
  readonly prefix: string;
  metrics(): Promise<string>;
  api(method: string, path: string, body?: unknown): Promise<{ status: number; body: any }>;
  stop(): Promise<void>;
}

/**
 * A tollgate process (gate + observer + API, `workers/all.ts`) with its own config file and its own
 * Postgres database (created here, dropped by stop()), ready when its observer reads events.
 */
export async function startTollgate(prefix: string, config: Record<string, unknown>, extraEnv: Record<string, string> = {}): Promise<TollgateProcess> {
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-bench-'));
  const configFile = join(dir, 'tollgate.config.json');
  writeFileSync(configFile, JSON.stringify(config));
  const dbName = `tgbench_${prefix.replace(/[^a-z0-9]/gi, '_')}`;
  const admin = new Client({ connectionString: DATABASE_URL });
  await admin.connect();
  await admin.query(`CREATE DATABASE "${dbName}"`);
  await admin.end();
  const dbUrl = new URL(DATABASE_URL);
  dbUrl.pathname = `/${dbName}`;
  // BENCH_CPU_PROF=<dir>: the tollgate process writes a V8 CPU profile there when it exits.
  const prof = process.env.BENCH_CPU_PROF ? ['--cpu-prof', '--cpu-prof-dir', process.env.BENCH_CPU_PROF] : [];
  const child = spawn(process.execPath, [...prof, '--import', 'tsx', join(ROOT, 'workers', process.env.BENCH_ROLE_FILE ?? 'all.ts')], {
    cwd: ROOT,
    env: {
      ...process.env,
      REDIS_URL,
      DATABASE_URL: dbUrl.toString(),
      TOLLGATE_PREFIX: prefix,
      TOLLGATE_CONFIG: configFile,
      TOLLGATE_API_TOKENS: `bench:${ADMIN_TOKEN}:admin`,
      HOST: '127.0.0.1',
      PORT: '0',
      METRICS_PORT: '0',
      LOG_LEVEL: 'info',
      ...extraEnv,
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let url = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('bench: tollgate did not start in 30 s')), 30_000);
    let buffered = '';
    const onData = (b: Buffer) => {
      buffered += b.toString();
      const lines = buffered.split('\n');
      buffered = lines.pop() ?? '';
      for (const line of lines) {
        const m = /"url":"([^"]+)"/.exec(line);
        if (m) url = m[1]!;
        if ((line.includes('observer reading execution events') || (process.env.BENCH_ROLE_FILE === 'gate.ts' && line.includes('gate consuming ingress'))) && url) {
          clearTimeout(timer);
          child.stdout!.off('data', onData);
          child.stdout!.resume();
          resolve();
          return;
        }
      }
    };
    child.stdout!.on('data', onData);
    child.on('exit', (code) => reject(new Error(`bench: tollgate exited with ${code} while starting`)));
  });
  // Ready: migrations applied and Redis in step (changes over the API need Postgres).
  for (let i = 0; ; i++) {
    const res = await fetch(`${url}/readyz`).catch(() => undefined);
    if (res?.status === 200) break;
    if (i > 300) throw new Error('bench: tollgate not ready in 30 s');
    await sleep(100);
  }
  const api = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(`${url}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${ADMIN_TOKEN}`,
        'x-operator-reason': 'benchmark',
        ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
      },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      // not JSON
    }
    return { status: res.status, body: parsed as any };
  };
  return {
    child,
    url,
    prefix,
    metrics: async () => (await fetch(`${url}/metrics`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).text(),
    api,
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.on('exit', r));
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 30_000);
        await exited;
        clearTimeout(t);
      }
      const c = new Client({ connectionString: DATABASE_URL });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS "${dbName}" WITH (FORCE)`);
      await c.end();
    },
  };
}

/**
 * What Redis keeps for finished jobs under `prefix` (tollgate's decision records and the execution
 * queue's deduplication keys), per job: MEMORY USAGE of up to 1,000 sampled keys of each kind, times
 * their count, divided by `jobs`. BullMQ's own per-job keys (removed on completion here) are not in it.
 */
export async function retainedBytesPerJob(prefix: string, execQueue: string, jobs: number): Promise<{ recordBytes: number; dedupBytes: number; perJob: number }> {
  const sample = async (pattern: string) => {
    let count = 0;
    const picked: string[] = [];
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 5000);
      cursor = next;
      count += keys.length;
      for (const k of keys) if (picked.length < 1000) picked.push(k);
    } while (cursor !== '0');
    if (picked.length === 0) return { count, avg: 0 };
    const pipe = redis.pipeline();
    for (const k of picked) pipe.memory('USAGE', k, 'SAMPLES', '0');
    const sizes = ((await pipe.exec()) ?? []).map(([, v]) => Number(v) || 0);
    return { count, avg: sizes.reduce((a, b) => a + b, 0) / sizes.length };
  };
  const rec = await sample(new Keys(prefix).record('*'));
  const de = await sample(`${prefix}:${execQueue}:de:*`);
  const recordBytes = (rec.count * rec.avg) / jobs;
  const dedupBytes = (de.count * de.avg) / jobs;
  return { recordBytes, dedupBytes, perJob: recordBytes + dedupBytes };
}
