/**
 * The fault suite's rig (RELIABILITY.md): a private redis-server and a private Postgres on random
 * loopback ports, tollgate's workers as child processes, plain BullMQ execution workers in the test
 * process that record what they run, and the conservation invariant checked with counts.
 *
 * Every scenario: `const c = await startCluster('name', { ...config })`, spawn roles with
 * `c.spawn('gate')`, produce with `c.produce(...)`, then `expectConserved(await c.conservation(ids))`
 * and `c.close()` in a finally.
 *
 * With `{ redisCluster: true }` the private Redis is a Redis Cluster of three masters with one replica
 * each (test/support/private-cluster.ts): the children get REDIS_CLUSTER_NODES, every queue name a hash
 * tag, and the checks read each key on its own slot.
 */
import { Queue, Worker, type Job, type WorkerOptions } from 'bullmq';
import { Cluster as RedisCluster, Redis } from 'ioredis';
import { randomBytes } from 'node:crypto';
import type { ConfigInput } from '../../../src/config/file';
import { schemaForPrefix } from '../../../src/db/pg-schema';
import { execJobId, jobKey, Keys } from '../../../src/redis/keys';
import { startPrivatePostgres, type PrivatePostgres } from '../../support/private-postgres';
import { startPrivateCluster, type PrivateCluster } from '../../support/private-cluster';
import { startPrivateRedis, type PrivateRedis } from '../../support/private-redis';
import { spawnWorker, writeConfigFile, type Child } from '../../support/processes';
import { tagQueueNames, testConfigInput, urlInSchema, waitFor } from '../../support/services';

export const DOWNSTREAMS = ['scanner', 'attestor', 'policy'] as const;
export type Downstream = (typeof DOWNSTREAMS)[number];
export const JOB_NAMES: Record<Downstream, string> = { scanner: 'scan.image', attestor: 'attest.sbom', policy: 'policy.eval' };

/** What the execution workers saw: runs per execution job id, and the most jobs running at once. */
export interface ExecTracker {
  /** execution job id → times its processor ran (a completed job is removed, so a re-add would run again). */
  readonly runs: Map<string, number>;
  readonly peakByDownstream: Map<string, number>;
  /** `downstream/tenant` → most jobs of that tenant running at once on that downstream. */
  readonly peakByTenant: Map<string, number>;
  readonly workers: Worker[];
  close(): Promise<void>;
}

export interface ExecOptions {
  concurrency?: number;
  /** Processor body; default: resolve at once. Throwing fails the job (a downstream failure). */
  work?: (job: Job, downstream: Downstream) => Promise<void>;
  downstreams?: readonly Downstream[];
  /**
   * Extra BullMQ worker options, e.g. a short `lockDuration` / `stalledInterval` so an execution job
   * whose move to active lost its reply (a cut connection) is recovered in seconds, not 30 s.
   */
  worker?: Partial<Pick<WorkerOptions, 'lockDuration' | 'stalledInterval' | 'maxStalledCount'>>;
}

export type Place = 'ingress' | 'waiting' | 'exec' | 'dead-letter';

export interface Conservation {
  jobs: number;
  /** How many ids are in each place (each id counted once, in the place found). */
  byPlace: Record<Place, number>;
  /** Ids found in no place. */
  missing: string[];
  /** Ids found in more than one place, with the places. */
  multiple: Array<{ id: string; places: Place[] }>;
  /** Ids whose execution job ran more than once. */
  duplicated: string[];
  /** Dead-lettered ids without a machine-readable reason. */
  deadWithoutReason: string[];
  /** Dead-letter reasons → count. */
  deadReasons: Record<string, number>;
}

export interface ClusterOptions {
  /** Run on a private Redis Cluster (three masters, one replica each) instead of one redis-server. */
  redisCluster?: boolean;
}

export interface Cluster {
  readonly label: string;
  /** The private redis-server (on a cluster rig: stop() stops the whole cluster, restart() is refused). */
  readonly redis: PrivateRedis;
  /** The private Redis Cluster, on a cluster rig. */
  readonly redisCluster?: PrivateCluster;
  /** Each downstream's execution queue name (hash-tagged on a cluster rig). */
  execQueue(d: Downstream): string;
  /** The dead-letter queue's name. */
  readonly deadLetterQueue: string;
  readonly pg: PrivatePostgres;
  readonly prefix: string;
  /** The cluster's database, its connections inside the deployment's schema (raw SQL reads its tables). */
  readonly dbUrl: string;
  readonly configFile: string;
  readonly keys: Keys;
  /** The test's own connection to the private Redis (reconnects after a Redis restart). */
  readonly conn: Redis;
  readonly ingress: Queue;
  /** Set by close(): samplers and other loops of the scenario stop. */
  readonly closed: boolean;
  /** Environment for a tollgate child process pointed at the private services. */
  env(extra?: Record<string, string | undefined>): Record<string, string | undefined>;
  /** Spawns a tollgate role as a child process; killed (-9) by close(). */
  spawn(role: 'gate' | 'observer' | 'api' | 'all', extra?: Record<string, string | undefined>): Child;
  startExec(opts?: ExecOptions): ExecTracker;
  /** Adds jobs to ingress in batches of 500; returns their ids. */
  produce(jobs: Array<{ name: string; data: unknown; opts?: Record<string, unknown> }>): Promise<string[]>;
  /** n good jobs spread over the three downstreams and `tenants` tenants. */
  goodJobs(n: number, tenants?: number): Array<{ name: string; data: unknown; opts?: Record<string, unknown> }>;
  /** Waits until ingress has nothing waiting or active and every id is out of ingress. */
  settleIngress(ids: string[], timeoutMs?: number): Promise<void>;
  conservation(ids: string[], exec: ExecTracker): Promise<Conservation>;
  close(): Promise<void>;
}

/** Short locks and intervals so recovery fits in seconds (RELIABILITY.md, Technique). */
export function chaosConfigInput(overrides: Partial<ConfigInput> = {}): ConfigInput {
  return testConfigInput({
    gate: { lockDurationMs: 1000, stalledIntervalMs: 300, concurrency: 50 },
    ...overrides,
  });
}

export async function startCluster(label: string, configInput: ConfigInput = chaosConfigInput(), opts: ClusterOptions = {}): Promise<Cluster> {
  const config = opts.redisCluster ? tagQueueNames(configInput) : configInput;
  const [redisCluster, single, pg] = await Promise.all([
    opts.redisCluster ? startPrivateCluster({ masters: 3, replicas: 1 }) : undefined,
    opts.redisCluster ? undefined : startPrivateRedis(),
    startPrivatePostgres(),
  ]);
  const redis: PrivateRedis = single ?? {
    url: `redis://${redisCluster!.nodes[0]!.address}`,
    port: redisCluster!.nodes[0]!.port,
    stop: () => redisCluster!.stop(),
    restart: () => Promise.reject(new Error('a cluster rig does not restart its Redis; kill its nodes with redisCluster.kill')),
  };
  const clusterNodes = redisCluster?.nodes.map((n) => ({ host: '127.0.0.1', port: n.port }));
  const newConn = (): Redis => {
    const c = clusterNodes
      ? (new RedisCluster(clusterNodes, { redisOptions: { maxRetriesPerRequest: null }, retryDelayOnClusterDown: 200, retryDelayOnFailover: 200, maxRedirections: 32 }) as unknown as Redis)
      : new Redis(redis.url, { maxRetriesPerRequest: null });
    c.on('error', () => undefined);
    return c;
  };
  const dbName = `chaos_${label.replace(/[^a-z0-9_]/gi, '_').toLowerCase()}`;
  const prefix = `chaos-${label}-${randomBytes(3).toString('hex')}`;
  const dbUrl = urlInSchema(await pg.createDatabase(dbName), schemaForPrefix(prefix));
  const keys = new Keys(prefix);
  const configFile = writeConfigFile(config);
  const conn = newConn();
  const execNames = new Map((config.downstreams as Array<{ name: string; queue?: string }>).map((d) => [d.name, d.queue ?? `exec.${d.name}`]));
  const execQueue = (d: Downstream) => execNames.get(d) ?? `exec.${d}`;
  const deadLetterQueue = (config.queues as { deadLetter?: string } | undefined)?.deadLetter ?? 'dead-letter';
  const ingress = new Queue(config.queues?.ingress ?? 'ingress', { connection: conn, prefix });
  ingress.on('error', () => undefined);
  const children: Child[] = [];
  const trackers: ExecTracker[] = [];

  const env = (extra: Record<string, string | undefined> = {}) => ({
    ...(clusterNodes ? { REDIS_CLUSTER_NODES: clusterNodes.map((n) => `${n.host}:${n.port}`).join(',') } : { REDIS_URL: redis.url }),
    DATABASE_URL: dbUrl,
    TOLLGATE_PREFIX: prefix,
    TOLLGATE_CONFIG: configFile,
    ...extra,
  });

  const cluster: Cluster = {
    label,
    redis,
    ...(redisCluster ? { redisCluster } : {}),
    execQueue,
    deadLetterQueue,
    pg,
    prefix,
    dbUrl,
    configFile,
    keys,
    conn,
    ingress,
    closed: false,
    env,
    spawn(role, extra) {
      const child = spawnWorker(role, env(extra));
      children.push(child);
      return child;
    },
    startExec(opts = {}) {
      const runs = new Map<string, number>();
      const peakByDownstream = new Map<string, number>();
      const peakByTenant = new Map<string, number>();
      const running = new Map<string, number>();
      const bump = (map: Map<string, number>, key: string, by: number) => {
        const n = (running.get(key) ?? 0) + by;
        running.set(key, n);
        if (n > (map.get(key) ?? 0)) map.set(key, n);
      };
      const conns: Redis[] = [];
      const workers = (opts.downstreams ?? DOWNSTREAMS).map((d) => {
        const wconn = newConn();
        conns.push(wconn);
        const w = new Worker(
          execQueue(d),
          async (job) => {
            const tenant = `${d}/${String((job.data as { tenantId?: unknown })?.tenantId)}`;
            runs.set(job.id!, (runs.get(job.id!) ?? 0) + 1);
            bump(peakByDownstream, d, 1);
            bump(peakByTenant, tenant, 1);
            try {
              if (opts.work) await opts.work(job, d);
            } finally {
              bump(peakByDownstream, d, -1);
              bump(peakByTenant, tenant, -1);
            }
          },
          { connection: wconn, prefix, concurrency: opts.concurrency ?? 100, removeOnComplete: { count: 0 }, ...opts.worker },
        );
        w.on('error', () => undefined);
        return w;
      });
      const tracker: ExecTracker = {
        runs,
        peakByDownstream,
        peakByTenant,
        workers,
        async close() {
          await Promise.all(workers.map((w) => w.close(true).catch(() => undefined)));
          conns.forEach((x) => x.disconnect());
        },
      };
      trackers.push(tracker);
      return tracker;
    },
    async produce(jobs) {
      const ids: string[] = [];
      for (let i = 0; i < jobs.length; i += 500) {
        const added = await ingress.addBulk(jobs.slice(i, i + 500).map((j) => ({ name: j.name, data: j.data, opts: j.opts ?? {} })));
        ids.push(...added.map((j) => j.id!));
      }
      return ids;
    },
    goodJobs(n, tenants = 7) {
      return Array.from({ length: n }, (_, i) => {
        const d = DOWNSTREAMS[i % DOWNSTREAMS.length]!;
        return {
          name: JOB_NAMES[d],
          data: { tenantId: `tenant-${i % tenants}`, seq: i, payload: 'x'.repeat(120) },
          opts: { removeOnComplete: true, attempts: 2 },
        };
      });
    },
    async settleIngress(ids, timeoutMs = 30_000) {
      await waitFor(
        async () => {
          const c = await ingress.getJobCounts('waiting', 'active', 'delayed', 'prioritized');
          if (Object.values(c).some((n) => n > 0)) return false;
          const pipe = conn.pipeline();
          for (const id of ids) pipe.exists(keys.bullJob(ingress.name, id));
          const res = (await pipe.exec()) ?? [];
          return res.every(([, n]) => Number(n) === 0);
        },
        `ingress to empty (${ids.length} jobs)`,
        timeoutMs,
        100,
      );
    },
    async conservation(ids, exec) {
      return conservation(cluster, ids, exec);
    },
    async close() {
      (cluster as { closed: boolean }).closed = true;
      for (const c of children) c.kill('SIGKILL');
      await Promise.all(children.map((c) => c.exited));
      await Promise.all(trackers.map((t) => t.close()));
      await ingress.close().catch(() => undefined);
      conn.disconnect();
      await redis.stop();
      await pg.destroy();
    },
  };
  return cluster;
}

/**
 * Where every ingress id is now, from the places themselves (not from tollgate's own counters),
 * under its job key (src/redis/keys.ts; the first job of each id):
 * the ingress job hash, the waiting place's per-flow sorted set, the execution queue's job hash or
 * the execution workers' record of having run it (completed jobs are removed), the dead-letter job.
 */
async function conservation(c: Cluster, ids: string[], exec: ExecTracker): Promise<Conservation> {
  // One command per key, not a pipeline: on a cluster rig the keys of one id are in several slots
  // (ingress, each execution queue, dead-letter, governance), and a pipeline must stay in one.
  const records: Array<Record<string, string>> = [];
  const chunk = 1000;
  for (let i = 0; i < ids.length; i += chunk) {
    records.push(...(await Promise.all(ids.slice(i, i + chunk).map((id) => c.conn.hgetall(c.keys.record(jobKey(id)))))));
  }
  const out: Conservation = {
    jobs: ids.length,
    byPlace: { ingress: 0, waiting: 0, exec: 0, 'dead-letter': 0 },
    missing: [],
    multiple: [],
    duplicated: [],
    deadWithoutReason: [],
    deadReasons: {},
  };
  for (let i = 0; i < ids.length; i += chunk) {
    const slice = ids.slice(i, i + chunk);
    const reads: Array<Promise<unknown>> = [];
    for (const [k, id] of slice.entries()) {
      const rec = records[i + k]!;
      reads.push(c.conn.exists(c.keys.bullJob(c.ingress.name, id)));
      reads.push(c.conn.hget(c.keys.bullJob(c.deadLetterQueue, execJobId(jobKey(id))), 'data'));
      for (const d of DOWNSTREAMS) reads.push(c.conn.exists(c.keys.bullJob(c.execQueue(d), execJobId(jobKey(id)))));
      if (rec.ds && rec.t && rec.n) reads.push(c.conn.zscore(c.keys.flow(rec.ds, `${rec.t}/${rec.n}`), jobKey(id)));
      else reads.push(Promise.resolve(''));
    }
    const res = await Promise.all(reads);
    const per = 2 + DOWNSTREAMS.length + 1;
  for (const [k, id] of slice.entries()) {
      const r = res.slice(k * per, (k + 1) * per);
      const places: Place[] = [];
      if (Number(r[0]) === 1) places.push('ingress');
      const deadData = r[1] as string | null;
      if (deadData !== null) {
        places.push('dead-letter');
        let reason: unknown;
        try {
          reason = (JSON.parse(deadData) as { reason?: unknown }).reason;
        } catch {
          reason = undefined;
        }
        if (typeof reason === 'string' && reason) out.deadReasons[reason] = (out.deadReasons[reason] ?? 0) + 1;
        else out.deadWithoutReason.push(id);
      }
      const execId = execJobId(jobKey(id));
      if (r.slice(2, 2 + DOWNSTREAMS.length).some((n) => Number(n) === 1) || exec.runs.has(execId)) places.push('exec');
      const waitScore = r[2 + DOWNSTREAMS.length];
      if (waitScore !== null && waitScore !== '') places.push('waiting');
      if (places.length === 0) out.missing.push(id);
      else out.byPlace[places[0]!]++;
      if (places.length > 1) out.multiple.push({ id, places });
      if ((exec.runs.get(execId) ?? 0) > 1) out.duplicated.push(id);
    }
  }
  return out;
}

/** Asserts the conservation invariant and prints the counts (the scenario's evidence in CI output). */
export function expectConserved(label: string, result: Conservation, expected: Partial<Record<Place, number>> = {}): void {
  process.stdout.write(
    `[chaos] ${label}: ${result.jobs} jobs, ${JSON.stringify(result.byPlace)}, missing ${result.missing.length}, ` +
      `in two places ${result.multiple.length}, duplicated ${result.duplicated.length}, dead-letter reasons ${JSON.stringify(result.deadReasons)}\n`,
  );
  expect({
    missing: result.missing.slice(0, 10),
    multiple: result.multiple.slice(0, 10),
    duplicated: result.duplicated.slice(0, 10),
    deadWithoutReason: result.deadWithoutReason.slice(0, 10),
  }).toEqual({ missing: [], multiple: [], duplicated: [], deadWithoutReason: [] });
  const total = Object.values(result.byPlace).reduce((a, b) => a + b, 0);
  expect(total).toBe(result.jobs);
  for (const [place, n] of Object.entries(expected)) expect({ place, n: result.byPlace[place as Place] }).toEqual({ place, n });
}

/**
 * Samples admitted-but-unfinished jobs per downstream (tollgate's in-flight set, which the gate
 * checks) every `everyMs` until stopped (or the cluster closed, so a failed test cannot leave it
 * running); returns the largest sample per downstream.
 */
export function sampleInflight(c: Cluster, everyMs = 20): { stop(): Promise<Map<string, number>> } {
  const peaks = new Map<string, number>();
  let running = true;
  const loop = (async () => {
    while (running && !c.closed) {
      try {
        const pipe = c.conn.pipeline();
        for (const d of DOWNSTREAMS) pipe.zcard(c.keys.inflight(d));
        const res = (await pipe.exec()) ?? [];
        DOWNSTREAMS.forEach((d, i) => peaks.set(d, Math.max(peaks.get(d) ?? 0, Number(res[i]?.[1] ?? 0))));
      } catch {
        // Redis down in this scenario: nothing to sample.
      }
      await new Promise((r) => setTimeout(r, everyMs));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return peaks;
    },
  };
}
