/**
 * Per-test-file isolation on the shared Redis and Postgres: a random BullMQ/governance prefix and a
 * database of its own, dropped afterwards. Also builds Env and Config objects for tests.
 */
import { randomBytes } from 'node:crypto';
import { Cluster, Redis } from 'ioredis';
import { Client } from 'pg';
import type { Env } from '../../src/config/env';
import { parseConfig, type Config, type ConfigInput } from '../../src/config/file';
import { schemaForPrefix } from '../../src/db/pg-schema';
import { deleteKeysWithPrefix } from '../../src/redis/maintenance';

export const REDIS_URL = process.env.REDIS_URL || 'redis://127.0.0.1:6379';
export const DATABASE_URL = process.env.DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/postgres';

export function uniquePrefix(label = 't'): string {
  return `tgtest-${label}-${randomBytes(4).toString('hex')}`;
}

/**
 * The Redis Cluster the run uses instead of REDIS_URL, when `TOLLGATE_TEST_CLUSTER=1` (global-setup
 * starts a private one and sets TOLLGATE_TEST_CLUSTER_NODES): tests written against the harness then
 * run on it unchanged, their queue names given a hash tag (`clusterQueueName`).
 */
export const CLUSTER_NODES: Array<{ host: string; port: number }> | undefined = process.env.TOLLGATE_TEST_CLUSTER_NODES
  ? process.env.TOLLGATE_TEST_CLUSTER_NODES.split(',').map((a) => ({ host: a.split(':')[0]!, port: Number(a.split(':')[1]) }))
  : undefined;

/** A queue name as the run's Redis needs it: on a cluster, with a hash tag (`{exec.scanner}`). */
export function clusterQueueName(name: string): string {
  return CLUSTER_NODES ? withHashTag(name) : name;
}

/** `name` with a hash tag: itself if it has one, else `{name}`. */
function withHashTag(name: string): string {
  return name.includes('{') ? name : `{${name}}`;
}

export function testRedis(url = REDIS_URL): Redis {
  if (CLUSTER_NODES && url === REDIS_URL) return new Cluster(CLUSTER_NODES, { redisOptions: { maxRetriesPerRequest: null } }) as unknown as Redis;
  return new Redis(url, { maxRetriesPerRequest: null });
}

export interface TestDatabase {
  url: string;
  name: string;
  drop(): Promise<void>;
}

/**
 * A Postgres URL whose connections work inside `schema` (search_path in the startup options), as
 * tollgate's own pool does: raw SQL in tests then reads the deployment's tables, never `public`.
 */
export function urlInSchema(url: string, schema: string): string {
  const u = new URL(url);
  u.searchParams.set('options', `-c search_path=${schema}`);
  return u.toString();
}

/**
 * A fresh database on the test server; `drop()` removes it (terminating stray connections). With
 * `schema`, `url` works inside that schema (urlInSchema): the harness passes its deployment's.
 */
export async function createTestDatabase(label = 't', opts: { schema?: string } = {}): Promise<TestDatabase> {
  const name = `tgtest_${label.replace(/[^a-z0-9_]/gi, '_')}_${randomBytes(4).toString('hex')}`.toLowerCase();
  const admin = new Client({ connectionString: DATABASE_URL });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE "${name}"`);
  } finally {
    await admin.end();
  }
  const url = new URL(DATABASE_URL);
  url.pathname = `/${name}`;
  return {
    url: opts.schema ? urlInSchema(url.toString(), opts.schema) : url.toString(),
    name,
    async drop() {
      const c = new Client({ connectionString: DATABASE_URL });
      await c.connect();
      try {
        await c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
      } finally {
        await c.end();
      }
    },
  };
}

/** Deletes every Redis key under a test prefix. */
export async function cleanupPrefix(redis: Redis, prefix: string): Promise<void> {
  await deleteKeysWithPrefix(redis, prefix);
}

export function testEnv(overrides: Partial<Env> & { prefix: string; databaseUrl: string }): Env {
  return {
    redisUrl: REDIS_URL,
    configPath: 'unused',
    port: 0,
    host: '127.0.0.1',
    apiTokens: [],
    logLevel: (process.env.TEST_LOG_LEVEL as Env['logLevel']) ?? 'silent',
    failpoints: undefined,
    metricsPort: undefined,
    shutdownGraceMs: 10_000,
    pgSchema: schemaForPrefix(overrides.prefix),
    ...(CLUSTER_NODES ? { redisClusterNodes: CLUSTER_NODES } : {}),
    ...overrides,
  };
}

/** The demo topology with timings short enough for tests. */
export function testConfigInput(overrides: Partial<ConfigInput> = {}): ConfigInput {
  const input = baseConfigInput(overrides);
  return CLUSTER_NODES ? tagQueueNames(input) : input;
}

/** The config with a hash tag in every queue name (ingress, dead-letter, execution, notifications), as a cluster needs. */
export function tagQueueNames(input: ConfigInput): ConfigInput {
  const tag = withHashTag;
  const q = input.queues as { ingress?: string; deadLetter?: string } | undefined;
  const n = (input.notifier as { queue?: { name?: string } } | undefined)?.queue;
  return {
    ...input,
    queues: { ...q, ingress: tag(q?.ingress ?? 'ingress'), deadLetter: tag(q?.deadLetter ?? 'dead-letter') },
    downstreams: (input.downstreams as Array<{ name: string; queue?: string }>).map((d) => ({ ...d, queue: tag(d.queue ?? `exec.${d.name}`) })),
    notifier: { ...input.notifier, queue: { ...n, name: tag(n?.name ?? 'notifications') } },
  } as ConfigInput;
}

function baseConfigInput(overrides: Partial<ConfigInput>): ConfigInput {
  return {
    downstreams: [
      { name: 'scanner', capacity: 50 },
      { name: 'attestor', capacity: 20 },
      { name: 'policy', capacity: 100 },
    ],
    routing: {
      rules: [
        { jobName: 'scan.*', downstream: 'scanner' },
        { jobName: 'attest.*', downstream: 'attestor' },
        { jobName: 'policy.*', downstream: 'policy' },
      ],
    },
    gate: { lockDurationMs: 1000, stalledIntervalMs: 500 },
    scheduler: { leaseMs: 1000, safetyTickMs: 200 },
    observer: { blockMs: 200, reconcileIntervalMs: 500, reconcileMinAgeMs: 1000, claimIdleMs: 1000, syncIntervalMs: 500 },
    ...overrides,
  };
}

export function testConfig(overrides: Partial<ConfigInput> = {}): Config {
  return parseConfig(testConfigInput(overrides), 'test config');
}

export async function waitFor<T>(
  probe: () => Promise<T | undefined | false> | T | undefined | false,
  what: string,
  timeoutMs = 15_000,
  everyMs = 50,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined && v !== false) return v as T;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (last error: ${String(last)})` : ''}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
