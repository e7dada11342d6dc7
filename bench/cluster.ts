/**
 * `npm run bench:cluster`: tollgate on a private Redis Cluster (three masters, no replicas, random
 * loopback ports), three downstreams, gate + observer + API in one process, plain BullMQ workers.
 * The queues are placed by their hash tags so each master serves one role: the governance slot (every
 * decision), ingress, and the three execution queues. Reports throughput and, per master, the Redis
 * CPU and commands per job: the per-role costs docs/benchmarks.md's shard model is built from.
 *
 * BENCH_CLUSTER_JOBS (default 30,000), DATABASE_URL (a server where it may create and drop a database).
 * Writes bench/results/cluster-latest.json.
 */
import { Queue, Worker } from 'bullmq';
import { Cluster, Redis } from 'ioredis';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, hostname, totalmem } from 'node:os';
import { join } from 'node:path';
import { Keys } from '../src/redis/keys';
import { startPrivateCluster } from '../test/support/private-cluster';
import { newPrefix, PAYLOAD, ROOT, startTollgate, waitUntil } from './lib';

const JOBS = Number(process.env.BENCH_CLUSTER_JOBS ?? 30_000);
const DOWNSTREAMS = [
  { name: 'scanner', job: 'scan.image' },
  { name: 'attestor', job: 'attest.sbom' },
  { name: 'policy', job: 'policy.eval' },
] as const;

/** A node's Redis CPU (user + sys, seconds) and commands served so far. */
async function cpuOf(port: number): Promise<{ cpuSec: number; calls: number }> {
  const r = new Redis(port, '127.0.0.1');
  try {
    const text = (await r.info('cpu')) + (await r.info('commandstats'));
    const user = Number(/used_cpu_user:([\d.]+)/.exec(text)?.[1] ?? 0);
    const sys = Number(/used_cpu_sys:([\d.]+)/.exec(text)?.[1] ?? 0);
    let calls = 0;
    for (const m of text.matchAll(/cmdstat_[^:]+:calls=(\d+)/g)) calls += Number(m[1]);
    return { cpuSec: user + sys, calls };
  } finally {
    r.disconnect();
  }
}

async function main(): Promise<void> {
  const cluster = await startPrivateCluster({ masters: 3, replicas: 0 });
  const nodes = cluster.nodes.map((n) => ({ host: '127.0.0.1', port: n.port }));
  const newConn = () => new Cluster(nodes, { redisOptions: { maxRetriesPerRequest: null } });
  const prefix = newPrefix();
  const keys = new Keys(prefix);
  const govMaster = (await cluster.masterOfKey(keys.throttles())).port;
  const place = async (base: string, ok: (master: number) => boolean) => {
    const { queue, master } = await cluster.queueTagOn(base, (q) => keys.bullKey(q, 'wait'), (m) => ok(m.port));
    return { queue, master: master.port };
  };
  // Ingress on a master without governance; the execution queues together on the third.
  const { queue: ingressQueue, master: ingressMaster } = await place('ingress', (m) => m !== govMaster);
  const execMaster = cluster.nodes.map((n) => n.port).find((p) => p !== govMaster && p !== ingressMaster)!;
  const placed: Array<{ name: string; job: string; queue: string; master: number }> = [];
  for (const d of DOWNSTREAMS) placed.push({ ...d, ...(await place(`exec.${d.name}`, (m) => m === execMaster)) });
  const config = {
    queues: { ingress: ingressQueue, deadLetter: '{dead-letter}' },
    downstreams: placed.map((d) => ({ name: d.name, capacity: 200, queue: d.queue })),
    routing: { rules: DOWNSTREAMS.map((d) => ({ jobName: `${d.job.split('.')[0]}.*`, downstream: d.name })) },
    notifier: { queue: { name: '{notifications}' } },
  };
  const roles = (port: number) =>
    [port === govMaster && 'governance', port === ingressMaster && 'ingress', ...placed.filter((d) => d.master === port).map((d) => d.queue)].filter(Boolean).join(' + ');
  process.stdout.write(`bench:cluster: ${JOBS} jobs over 3 masters: ${cluster.nodes.map((n) => `${n.port} (${roles(n.port)})`).join(', ')}\n`);

  const tollgate = await startTollgate(prefix, config, { REDIS_CLUSTER_NODES: cluster.nodesEnv });
  const done = { n: 0 };
  const workerConns: Cluster[] = [];
  const workers = placed.map((d) => {
    const c = newConn();
    workerConns.push(c);
    const w = new Worker(d.queue, async () => void done.n++, { connection: c, prefix, concurrency: 100, removeOnComplete: { count: 0 } });
    w.on('error', () => undefined);
    return w;
  });
  const producerConn = newConn();
  const ingress = new Queue(ingressQueue, { connection: producerConn, prefix });
  try {
    const before = await Promise.all(cluster.nodes.map((n) => cpuOf(n.port)));
    const t0 = performance.now();
    for (let i = 0; i < JOBS; i += 1000) {
      await ingress.addBulk(
        Array.from({ length: Math.min(1000, JOBS - i) }, (_, k) => {
          const d = DOWNSTREAMS[(i + k) % DOWNSTREAMS.length]!;
          return { name: d.job, data: { tenantId: `tenant-${(i + k) % 20}`, payload: PAYLOAD }, opts: { removeOnComplete: true } };
        }),
      );
    }
    await waitUntil(() => done.n >= JOBS, `${JOBS} jobs executed`, 600_000, 50);
    const seconds = (performance.now() - t0) / 1000;
    // The observer's releases trail the last execution: let them land before reading the CPU.
    await new Promise((r) => setTimeout(r, 1500));
    const after = await Promise.all(cluster.nodes.map((n) => cpuOf(n.port)));
    const perShard = cluster.nodes.map((n, i) => ({
      port: n.port,
      serves: roles(n.port),
      redisCpuUsPerJob: Math.round(((after[i]!.cpuSec - before[i]!.cpuSec) * 1e6) / JOBS),
      commandsPerJob: Number(((after[i]!.calls - before[i]!.calls) / JOBS).toFixed(1)),
    }));
    const result = {
      date: new Date().toISOString(),
      machine: { host: hostname(), cpus: `${cpus().length} × ${cpus()[0]?.model ?? '?'}`, memoryGiB: Math.round(totalmem() / 2 ** 30), node: process.version },
      jobs: JOBS,
      seconds: Number(seconds.toFixed(1)),
      jobsPerSecond: Math.round(JOBS / seconds),
      perShard,
      totalRedisCpuUsPerJob: perShard.reduce((a, s) => a + s.redisCpuUsPerJob, 0),
    };
    process.stdout.write(`bench:cluster: ${JOBS} jobs in ${result.seconds} s (${result.jobsPerSecond} jobs/s), Redis CPU ${result.totalRedisCpuUsPerJob} µs/job in all\n`);
    for (const s of perShard) process.stdout.write(`  master ${s.port} (${s.serves}): ${s.redisCpuUsPerJob} µs of Redis CPU and ${s.commandsPerJob} commands per job\n`);
    mkdirSync(join(ROOT, 'bench', 'results'), { recursive: true });
    writeFileSync(join(ROOT, 'bench', 'results', 'cluster-latest.json'), `${JSON.stringify(result, null, 2)}\n`);
  } finally {
    await Promise.all(workers.map((w) => w.close()));
    await ingress.close();
    await tollgate.stop();
    for (const c of [...workerConns, producerConn]) c.disconnect();
    await cluster.stop();
  }
}

main().then(
  () => process.exit(0),
  (err: Error) => {
    process.stderr.write(`bench:cluster failed: ${err.stack ?? err.message}\n`);
    process.exit(1);
  },
);
