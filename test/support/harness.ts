/**
 * An isolated tollgate for one integration test file: its own prefix and database, tollgate running
 * in-process with the chosen roles, and plain BullMQ producers and workers around it.
 */
import { Queue, Worker, type Job, type Processor } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Env } from '../../src/config/env';
import type { Config, ConfigInput } from '../../src/config/file';
import { schemaForPrefix } from '../../src/db/pg-schema';
import { Keys } from '../../src/redis/keys';
import { startTollgate, type Role, type Tollgate } from '../../src/runtime';
import {
  cleanupPrefix,
  clusterQueueName,
  createTestDatabase,
  testConfig,
  testEnv,
  testRedis,
  uniquePrefix,
  waitFor,
  type TestDatabase,
} from './services';

export interface Harness {
  prefix: string;
  db: TestDatabase;
  config: Config;
  env: Env;
  tollgate?: Tollgate;
  redis: Redis;
  ingress: Queue;
  /**
   * Intake is done: nothing waits in ingress and no gate holds a claim on an ingress job (claimed jobs
   * are out of BullMQ's counts while the gate decides them, up to gate.concurrency at once).
   */
  intakeDone(): Promise<boolean>;
  queue(name: string): Queue;
  worker(name: string, processor: Processor, opts?: { concurrency?: number }): Worker;
  /** Closes the execution workers started so far (call in afterEach so tests do not share them). */
  closeWorkers(): Promise<void>;
  start(roles?: readonly Role[], envOverrides?: Partial<Env>, now?: () => number): Promise<Tollgate>;
  /** Calls the API of the running tollgate; JSON in and out. */
  api(method: string, path: string, opts?: { body?: unknown; token?: string; reason?: string | null; ticket?: string }): Promise<{ status: number; body: any }>;
  stop(): Promise<void>;
  close(): Promise<void>;
}

export async function createHarness(
  label: string,
  /** `db`: a database the test shares between harnesses (its own to drop; `close()` leaves it). */
  opts: { config?: Partial<ConfigInput>; env?: Partial<Env>; db?: TestDatabase } = {},
): Promise<Harness> {
  const prefix = uniquePrefix(label);
  // The database URL works inside the deployment's schema, so tests' raw SQL reads its tables.
  const db = opts.db ?? (await createTestDatabase(label, { schema: opts.env?.pgSchema ?? schemaForPrefix(prefix) }));
  const config = testConfig(opts.config);
  const env = testEnv({ prefix, databaseUrl: db.url, ...opts.env });
  const redis = testRedis(env.redisUrl);
  const queues = new Map<string, Queue>();
  const workers: Worker[] = [];
  const workerConnections: Redis[] = [];
  const queue = (plain: string) => {
    const name = clusterQueueName(plain);
    let q = queues.get(name);
    if (!q) queues.set(name, (q = new Queue(name, { connection: redis, prefix })));
    return q;
  };
  const h: Harness = {
    prefix,
    db,
    config,
    env,
    redis,
    ingress: queue(config.queues.ingress),
    async intakeDone() {
      return (await this.ingress.count()) === 0 && (await redis.zcard(new Keys(prefix).ingressClaims(config.queues.ingress))) === 0;
    },
    queue,
    worker(name, processor, wopts = {}) {
      const conn = testRedis(env.redisUrl);
      workerConnections.push(conn);
      const w = new Worker(clusterQueueName(name), processor, { connection: conn, prefix, concurrency: wopts.concurrency ?? 20 });
      w.on('error', () => undefined);
      workers.push(w);
      return w;
    },
    async closeWorkers() {
      const ws = workers.splice(0);
      await Promise.all(ws.map((w) => w.close()));
    },
    async start(roles = ['gate', 'observer', 'api'], envOverrides = {}, now) {
      h.tollgate = await startTollgate({ roles, env: { ...env, ...envOverrides }, config, ...(now ? { now } : {}) });
      await h.tollgate.started;
      // Tests start once the process is ready (migrations applied), as a load balancer would.
      if (h.tollgate.url) await waitFor(async () => (await fetch(`${h.tollgate!.url}/readyz`)).status === 200, 'readiness');
      return h.tollgate;
    },
    async api(method, path, opts = {}) {
      const headers: Record<string, string> = {};
      if (opts.body !== undefined) headers['content-type'] = 'application/json';
      if (opts.token) headers.authorization = `Bearer ${opts.token}`;
      if (opts.reason !== null && method !== 'GET') headers['x-operator-reason'] = opts.reason ?? 'test';
      if (opts.ticket) headers['x-operator-ticket'] = opts.ticket;
      const res = await fetch(`${h.tollgate!.url}${path}`, {
        method,
        headers,
        ...(opts.body !== undefined ? { body: JSON.stringify(opts.body) } : {}),
      });
      const text = await res.text();
      return { status: res.status, body: text ? JSON.parse(text) : undefined };
    },
    async stop() {
      await h.tollgate?.close();
      h.tollgate = undefined;
    },
    async close() {
      await h.closeWorkers();
      await h.stop();
      await Promise.all([...queues.values()].map((q) => q.close()));
      await cleanupPrefix(redis, prefix);
      redis.disconnect();
      for (const c of workerConnections) c.disconnect();
      if (!opts.db) await db.drop();
    },
  };
  return h;
}

/**
 * A worker on each execution queue that records every job it runs in `executed` (by queue), sleeps
 * `data.sleepMs` when the job asks for it, and fails its first `data.failAttempts` attempts.
 */
export function recordExecutions(h: Harness, executed: Map<string, Job[]>, concurrency: number): void {
  for (const q of ['exec.scanner', 'exec.attestor', 'exec.policy']) {
    h.worker(
      q,
      async (job) => {
        executed.set(q, [...(executed.get(q) ?? []), job]);
        if (job.data.sleepMs) await new Promise((r) => setTimeout(r, job.data.sleepMs));
        if (job.data.failAttempts && job.attemptsMade < job.data.failAttempts) throw new Error(`attempt ${job.attemptsMade + 1} fails`);
        return { ok: true };
      },
      { concurrency },
    );
  }
}
