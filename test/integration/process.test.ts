/**
 * tollgate as real processes: configuration errors stop it with a message naming the culprit,
 * missing services are waited for (healthy, not ready), concurrent migrations serialize, and
 * SIGTERM under load finishes in-flight promotions and exits 0 with nothing lost.
 */
import { Queue, Worker } from 'bullmq';
import { Client } from 'pg';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { schemaForPrefix } from '../../src/db/pg-schema';
import { execJobId } from '../../src/redis/keys';
import { spawnWorker, writeConfigFile, type Child } from '../support/processes';
import { freePort, LateForwarder } from '../support/net';
import {
  cleanupPrefix,
  createTestDatabase,
  REDIS_URL,
  testConfigInput,
  testRedis,
  uniquePrefix,
  waitFor,
} from '../support/services';

jest.setTimeout(90_000);

const configFile = writeConfigFile(testConfigInput());

async function getJson(url: string): Promise<{ status: number; body: any }> {
  const res = await fetch(url);
  return { status: res.status, body: await res.json() };
}

function fatalLine(child: Child): Record<string, unknown> | undefined {
  return child.logs.find((l) => l.level === 'fatal' || l.level === 60);
}

describe('bad configuration', () => {
  it('exits 1 naming the environment variable', async () => {
    const child = spawnWorker('all', { PORT: 'eighty', TOLLGATE_CONFIG: configFile });
    expect((await child.exited).code).toBe(1);
    expect(fatalLine(child)).toMatchObject({ code: 'TG_ERR_ENV', msg: expect.stringContaining('PORT: ') });
  });

  it('exits 1 naming the file and the path inside it', async () => {
    const bad = writeConfigFile({ ...testConfigInput(), downstreams: [{ name: 'scanner', capacity: -3 }] } as never);
    const child = spawnWorker('all', { TOLLGATE_CONFIG: bad });
    expect((await child.exited).code).toBe(1);
    expect(fatalLine(child)).toMatchObject({ code: 'TG_ERR_CONFIG', msg: expect.stringContaining(`${bad}: downstreams[0].capacity: `) });
    writeFileSync(bad, '{ not json');
    const again = spawnWorker('all', { TOLLGATE_CONFIG: bad });
    expect((await again.exited).code).toBe(1);
    expect(fatalLine(again)).toMatchObject({ code: 'TG_ERR_CONFIG', msg: expect.stringContaining('not valid JSON') });
  });
});

describe('services that appear late', () => {
  it('is healthy but not ready until Redis and Postgres answer, then works normally, and logs a later Redis outage as JSON lines only', async () => {
    const db = await createTestDatabase('late');
    const prefix = uniquePrefix('late');
    const pgTarget = new URL(db.url);
    const redisTarget = new URL(REDIS_URL);
    const pgProxy = new LateForwarder(await freePort(), { host: pgTarget.hostname, port: Number(pgTarget.port || 5432) });
    const redisProxy = new LateForwarder(await freePort(), { host: redisTarget.hostname, port: Number(redisTarget.port || 6379) });
    const lateDb = new URL(db.url);
    lateDb.port = String(pgProxy.port);
    const port = await freePort();
    const child = spawnWorker('all', {
      PORT: String(port),
      TOLLGATE_CONFIG: configFile,
      TOLLGATE_PREFIX: prefix,
      REDIS_URL: `redis://127.0.0.1:${redisProxy.port}`,
      DATABASE_URL: lateDb.toString(),
    });
    const redis = testRedis();
    try {
      const base = `http://127.0.0.1:${port}`;
      await waitFor(async () => (await fetch(`${base}/healthz`)).status === 200, '/healthz');
      const notReady = await getJson(`${base}/readyz`);
      expect(notReady.status).toBe(503);
      expect(notReady.body.checks.redis).toMatchObject({ ok: false, detail: expect.stringContaining('REDIS_URL') });
      expect(notReady.body.checks.postgres).toMatchObject({ ok: false, detail: expect.stringContaining('DATABASE_URL') });
      await waitFor(() => child.logs.some((l) => String(l.msg).includes('DATABASE_URL')), 'a log line naming DATABASE_URL');
      await waitFor(() => child.logs.some((l) => String(l.msg).includes('REDIS_URL')), 'a log line naming REDIS_URL');

      await redisProxy.open();
      await pgProxy.open();
      await waitFor(async () => (await fetch(`${base}/readyz`)).status === 200, '/readyz to turn ready', 30_000, 200);
      const ingress = new Queue('ingress', { connection: redis, prefix });
      const job = await ingress.add('scan.image', { tenantId: 'acme' });
      await waitFor(
        async () => (await new Queue('exec.scanner', { connection: redis, prefix }).getJobState(execJobId(job.id!))) === 'waiting' || undefined,
        'promotion once Redis is there',
      );
      await ingress.close();

      // Redis vanishes mid-run: the outage is logged as JSON lines, never as raw stack traces (BullMQ
      // prints those for a Queue's connection errors when the Queue has no 'error' listener).
      await redisProxy.close();
      await waitFor(async () => (await fetch(`${base}/readyz`)).status === 503 || undefined, '/readyz to turn not ready', 15_000, 100);
      await new Promise((r) => setTimeout(r, 1500)); // a few reconnection attempts
      expect(child.logs.filter((l) => 'raw' in l).slice(0, 3)).toEqual([]);
    } finally {
      child.kill('SIGKILL');
      await child.exited;
      await redisProxy.close();
      await pgProxy.close();
      await cleanupPrefix(redis, prefix);
      redis.disconnect();
      await db.drop();
    }
  });
});

it('serializes three processes migrating an empty database at once', async () => {
  const db = await createTestDatabase('migrate');
  const prefix = uniquePrefix('migrate');
  const ports = await Promise.all([freePort(), freePort(), freePort()]);
  const children = ports.map((port) =>
    spawnWorker('api', { PORT: String(port), TOLLGATE_CONFIG: configFile, TOLLGATE_PREFIX: prefix, DATABASE_URL: db.url, LOG_LEVEL: 'info' }),
  );
  try {
    for (const port of ports) {
      await waitFor(async () => (await fetch(`http://127.0.0.1:${port}/readyz`)).status === 200, `process on ${port} ready`, 30_000);
    }
    const applied = children.map((c) => c.logs.find((l) => l.msg === 'database migrations applied'));
    expect(applied.every(Boolean)).toBe(true);
    expect(children.flatMap((c) => c.logs.filter((l) => Number(l.level) >= 50))).toEqual([]);
    const pg = new Client({ connectionString: db.url });
    await pg.connect();
    try {
      // Each migration of the journal applied exactly once.
      const journal = JSON.parse(readFileSync(join(__dirname, '..', '..', 'drizzle', 'meta', '_journal.json'), 'utf8')) as { entries: unknown[] };
      // ... in the deployment's schema: its journal, its tables, and nothing in public or drizzle.
      const schema = schemaForPrefix(prefix);
      const { rows } = await pg.query(`SELECT count(*)::int AS n FROM "${schema}".__drizzle_migrations`);
      expect(rows[0].n).toBe(journal.entries.length);
      const tables = await pg.query(`SELECT table_schema FROM information_schema.tables WHERE table_name IN ('downstream_counters', '__drizzle_migrations')`);
      expect(tables.rows.map((r) => r.table_schema)).toEqual([schema, schema]);
    } finally {
      await pg.end();
    }
  } finally {
    children.forEach((c) => c.kill('SIGKILL'));
    await Promise.all(children.map((c) => c.exited));
    await db.drop();
  }
});

it('on SIGTERM under load, finishes in-flight promotions, leaves nothing active and exits 0', async () => {
  const db = await createTestDatabase('sigterm');
  const prefix = uniquePrefix('sigterm');
  const redis = testRedis();
  const ingress = new Queue('ingress', { connection: redis, prefix });
  const executed = new Map<string, number>();
  const conn = testRedis();
  const worker = new Worker('exec.scanner', async (job) => void executed.set(job.id!, (executed.get(job.id!) ?? 0) + 1), {
    connection: conn,
    prefix,
    concurrency: 50,
  });
  const env = { TOLLGATE_CONFIG: configFile, TOLLGATE_PREFIX: prefix, DATABASE_URL: db.url, REDIS_URL, LOG_LEVEL: 'info' };
  // The observer releases capacity as jobs finish (scanner capacity is 50).
  const observer = spawnWorker('observer', env);
  let gate = spawnWorker('gate', env);
  try {
    const jobs = await ingress.addBulk(Array.from({ length: 5000 }, (_, i) => ({ name: 'scan.image', data: { tenantId: `t${i % 5}`, i } })));
    await waitFor(() => executed.size >= 500, 'promotions under way');
    gate.kill('SIGTERM');
    const exit = await gate.exited;
    expect(exit).toEqual({ code: 0, signal: null });
    expect(gate.logs.some((l) => l.msg === 'shut down cleanly')).toBe(true);
    const counts = await ingress.getJobCounts('active', 'failed');
    expect(counts).toEqual({ active: 0, failed: 0 });

    // What it had not taken is still in ingress; a new gate finishes the rest, each exactly once.
    gate = spawnWorker('gate', env);
    await waitFor(() => executed.size === jobs.length, 'all jobs executed', 60_000, 100);
    expect([...executed.values()].every((n) => n === 1)).toBe(true);
    expect(jobs.every((j) => executed.has(execJobId(j.id!)))).toBe(true);
  } finally {
    gate.kill('SIGKILL');
    observer.kill('SIGKILL');
    await Promise.all([gate.exited, observer.exited]);
    await worker.close();
    await ingress.close();
    await cleanupPrefix(redis, prefix);
    redis.disconnect();
    conn.disconnect();
    await db.drop();
  }
});

