/**
 * Promotion survives kill -9 of the gate at any moment: real gate processes are killed mid-stream
 * and restarted while 10,000+ jobs flow; every job is executed exactly once.
 *
 * Capacities (50 / 20 / 100) bind, so most jobs pass through the waiting place and the scheduler, and
 * an observer process releases capacity as jobs finish: both promotion paths (at intake, and from the
 * waiting place under a lease) are killed mid-step.
 *
 * Execution jobs are removed on completion, so a second promotion of a finished job would run it
 * again (BullMQ would accept the re-add); counting executions per id catches any duplicate.
 */
import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { execJobId, Keys } from '../../src/redis/keys';
import { spawnWorker, writeConfigFile, type Child } from '../support/processes';
import {
  cleanupPrefix,
  clusterQueueName,
  createTestDatabase,
  REDIS_URL,
  testConfigInput,
  testRedis,
  uniquePrefix,
  waitFor,
  type TestDatabase,
} from '../support/services';

jest.setTimeout(300_000);

const DOWNSTREAMS = ['scanner', 'attestor', 'policy'] as const;
const NAMES = { scanner: 'scan.image', attestor: 'attest.sbom', policy: 'policy.eval' } as const;

interface Run {
  prefix: string;
  db: TestDatabase;
  redis: Redis;
  ingress: Queue;
  workers: Worker[];
  executions: Map<string, number>;
  close(): Promise<void>;
}

async function setUp(label: string): Promise<Run> {
  const prefix = uniquePrefix(label);
  const db = await createTestDatabase(label);
  const redis = testRedis();
  const ingress = new Queue(clusterQueueName('ingress'), { connection: redis, prefix });
  const executions = new Map<string, number>();
  const conns: Redis[] = [];
  const workers = DOWNSTREAMS.map((d) => {
    const conn = testRedis();
    conns.push(conn);
    const w = new Worker(clusterQueueName(`exec.${d}`), async (job) => void executions.set(job.id!, (executions.get(job.id!) ?? 0) + 1), {
      connection: conn,
      prefix,
      concurrency: 100,
    });
    w.on('error', () => undefined);
    return w;
  });
  return {
    prefix,
    db,
    redis,
    ingress,
    workers,
    executions,
    async close() {
      await Promise.all(workers.map((w) => w.close()));
      await ingress.close();
      await cleanupPrefix(redis, prefix);
      redis.disconnect();
      conns.forEach((c) => c.disconnect());
      await db.drop();
    },
  };
}

async function produce(run: Run, total: number): Promise<string[]> {
  const ids: string[] = [];
  for (let start = 0; start < total; start += 500) {
    const batch = Array.from({ length: Math.min(500, total - start) }, (_, i) => {
      const d = DOWNSTREAMS[(start + i) % DOWNSTREAMS.length]!;
      return {
        name: NAMES[d],
        data: { tenantId: `tenant-${(start + i) % 7}`, seq: start + i, payload: 'x'.repeat(120) },
        opts: { removeOnComplete: true, attempts: 2 },
      };
    });
    const jobs = await run.ingress.addBulk(batch);
    ids.push(...jobs.map((j) => j.id!));
  }
  return ids;
}

function gateEnv(run: Run, configFile: string, failpoints?: string) {
  return {
    REDIS_URL,
    DATABASE_URL: run.db.url,
    TOLLGATE_PREFIX: run.prefix,
    TOLLGATE_CONFIG: configFile,
    TOLLGATE_FAILPOINTS: failpoints,
  };
}

async function diagnose(run: Run): Promise<string> {
  const k = new Keys(run.prefix);
  const out: Record<string, unknown> = { executed: run.executions.size, ingress: await run.ingress.getJobCounts() };
  for (const d of DOWNSTREAMS) {
    out[d] = {
      inflight: await run.redis.zcard(k.inflight(d)),
      promoting: await run.redis.zcard(k.downstream(d, 'promoting')),
      waiting: await run.redis.hgetall(k.downstream(d, 'waitingCounts')),
      flows: await run.redis.hgetall(k.downstream(d, 'flowStates')),
      tiers: await run.redis.zrange(k.downstream(d, 'tiers'), '0', '-1', 'WITHSCORES'),
    };
  }
  return JSON.stringify(out);
}

async function settle(run: Run, ids: string[]) {
  await waitFor(
    async () => {
      const c = await run.ingress.getJobCounts('waiting', 'active', 'delayed', 'prioritized');
      return sum(c) === 0 && run.executions.size >= ids.length;
    },
    'every ingress job to be promoted and executed',
    120_000,
    200,
  ).catch(async (err: Error) => {
    throw new Error(`${err.message}; state: ${await diagnose(run)}`);
  });
  // Give a late duplicate (if any) the chance to show up before counting.
  await new Promise((r) => setTimeout(r, 1500));
  const lost = ids.filter((id) => !run.executions.has(execJobId(id)));
  const duplicated = [...run.executions.values()].filter((n) => n > 1).length;
  const ingressFailed = (await run.ingress.getJobCounts('failed')).failed;
  return { jobs: ids.length, executed: run.executions.size, lost: lost.length, duplicated, ingressFailed };
}

const sum = (counts: Record<string, number>) => Object.values(counts).reduce((a, b) => a + b, 0);

const config = writeConfigFile(testConfigInput({ gate: { lockDurationMs: 1000, stalledIntervalMs: 500, concurrency: 100 } }));

it('loses and duplicates nothing over 10,000 jobs while two gates are killed -9 at random moments', async () => {
  const run = await setUp('kill9');
  const gates: Child[] = [];
  let kills = 0;
  const observer = spawnWorker('observer', gateEnv(run, config));
  // Outside the try: a failed wait must stop the killing too, or the loop would go on spawning gates
  // after the test (and slow every test after it).
  let chaos = true;
  let monkey: Promise<void> = Promise.resolve();
  try {
    const spawnGate = () => spawnWorker('gate', gateEnv(run, config));
    gates.push(spawnGate(), spawnGate());
    const producing = produce(run, 10_000);
    monkey = (async () => {
      while (chaos) {
        await new Promise((r) => setTimeout(r, 250 + Math.random() * 500));
        if (!chaos) break;
        const i = Math.floor(Math.random() * gates.length);
        gates[i]!.kill('SIGKILL');
        await gates[i]!.exited;
        kills++;
        gates[i] = spawnGate();
      }
    })();
    const ids = await producing;
    // Keep killing until half the jobs ran (at least 20 kills), then let the survivors finish. Bounded
    // by kills, not by progress, so a slow machine gets as much chaos, not an endless one.
    await waitFor(() => run.executions.size >= ids.length / 2 && kills >= 20, 'half executed under fire', 120_000, 100);
    chaos = false;
    await monkey;
    const result = await settle(run, ids);
    process.stdout.write(`kill -9 run: ${JSON.stringify({ ...result, kills })}\n`);
    expect(kills).toBeGreaterThanOrEqual(5);
    expect(result).toEqual({ jobs: 10_000, executed: 10_000, lost: 0, duplicated: 0, ingressFailed: 0 });
  } finally {
    chaos = false;
    await monkey.catch(() => undefined);
    [...gates, observer].forEach((g) => g.kill('SIGKILL'));
    await Promise.all([...gates, observer].map((g) => g.exited));
    await run.close();
  }
});

it('loses and duplicates nothing when gates die exactly at each promotion failpoint', async () => {
  const run = await setUp('failpoints');
  const gates: Child[] = [];
  let deaths = 0;
  let stop = false;
  // A gate that exits any other way than by its failpoint crashed: that is a bug, and fails the test.
  const crashes: unknown[] = [];
  const observer = spawnWorker('observer', gateEnv(run, config));
  try {
    // Each gate kills itself at a random small share of hits of each step; a supervisor restarts it.
    const failpoints = [
      'gate.after-decision=kill%0.15',
      'gate.after-exec-add=kill%0.15',
      'gate.after-enqueue=kill%0.15',
      'gate.after-dead-letter=kill%5',
      'scheduler.after-admit=kill%1',
      'scheduler.after-exec-add=kill%1',
    ].join(',');
    const supervise = (slot: number): void => {
      const g = spawnWorker('gate', gateEnv(run, config, failpoints));
      gates[slot] = g;
      void g.exited.then(({ code, signal }) => {
        if (stop) return;
        if (signal === 'SIGKILL') deaths++;
        else crashes.push({ code, signal, logs: g.logs.slice(-5) });
        supervise(slot);
      });
    };
    supervise(0);
    supervise(1);
    const ids = await produce(run, 3000);
    // Refused jobs take the dead-letter path, which has its own failpoint.
    const bad = await run.ingress.addBulk(Array.from({ length: 100 }, (_, i) => ({ name: 'scan.image', data: { seq: i } })));
    const result = await settle(run, ids);
    await waitFor(async () => (await new Queue(clusterQueueName('dead-letter'), { connection: run.redis, prefix: run.prefix }).count()) === bad.length, 'all refused jobs dead-lettered');
    process.stdout.write(`failpoint run: ${JSON.stringify({ ...result, deaths })}\n`);
    expect(crashes).toEqual([]);
    expect(deaths).toBeGreaterThanOrEqual(3);
    expect(result).toEqual({ jobs: 3000, executed: 3000, lost: 0, duplicated: 0, ingressFailed: 0 });
  } finally {
    stop = true;
    [...gates, observer].forEach((g) => g.kill('SIGKILL'));
    await Promise.all([...gates, observer].map((g) => g.exited));
    await run.close();
  }
});
