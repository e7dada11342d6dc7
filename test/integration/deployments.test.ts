/**
 * Two tollgate deployments (prefixes A and B) on ONE Postgres database are isolated: each works in a
 * schema of its own (TOLLGATE_PG_SCHEMA, derived from the prefix), so B sees none of A's quotas,
 * pauses, throttles, policies, forced breakers, period usage or audit, through its API or its
 * behaviour, and A's live changes never reach B. A deployment whose schema another prefix owns is
 * refused at start (TG_ERR_PG_SCHEMA_OWNED; a process exits 1). An install from before schemas has
 * its tables moved from `public` into the first deployment's schema.
 *
 * Every tollgate here gets the database's plain URL (no search_path in it): the schema is tollgate's
 * own doing. The test's raw SQL names the schemas explicitly.
 */
import { cpSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Job } from 'bullmq';
import { drizzle } from 'drizzle-orm/node-postgres';
import { migrate } from 'drizzle-orm/node-postgres/migrator';
import { Client, Pool } from 'pg';
import { parseApiTokens } from '../../src/config/tokens';
import { MIGRATIONS_DIR, OWNER_TABLE } from '../../src/db/migrate';
import { connectionInSchema } from '../../src/db/pg-schema';
import { startTollgate } from '../../src/runtime';
import { createHarness, recordExecutions, type Harness } from '../support/harness';
import { freePort } from '../support/net';
import { spawnWorker, writeConfigFile } from '../support/processes';
import {
  cleanupPrefix,
  createTestDatabase,
  REDIS_URL,
  testConfig,
  testConfigInput,
  testEnv,
  uniquePrefix,
  waitFor,
  type TestDatabase,
} from '../support/services';

jest.setTimeout(120_000);

const ADMIN = 'admin-secret-0123456789';
const tokens = parseApiTokens(`ops:${ADMIN}:admin`);

async function pgRows<T = Record<string, any>>(url: string, text: string, params: unknown[] = []): Promise<T[]> {
  const c = new Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query(text, params)).rows as T[];
  } finally {
    await c.end();
  }
}

const ran = (executed: Map<string, Job[]>, tenant: string) =>
  [...executed.values()].flat().filter((j) => j.data.tenantId === tenant).length;

describe('two deployments on one database', () => {
  let db: TestDatabase;
  let a: Harness;
  let b: Harness;
  const executedA = new Map<string, Job[]>();
  const executedB = new Map<string, Job[]>();

  beforeAll(async () => {
    db = await createTestDatabase('deploy');
    a = await createHarness('depa', { db, env: { apiTokens: tokens } });
    b = await createHarness('depb', { db, env: { apiTokens: tokens } });
  });
  afterAll(async () => {
    await a?.close();
    await b?.close();
    await db?.drop();
  });

  const api = (h: Harness, method: string, path: string, body?: unknown) => h.api(method, path, { token: ADMIN, ...(body !== undefined ? { body } : {}) });
  const addJobs = (h: Harness, tenant: string, n: number, name = 'policy.eval') =>
    h.ingress.addBulk(Array.from({ length: n }, (_, i) => ({ name, data: { tenantId: tenant, i } })));

  it('A and B each work in a schema of their own, derived from the prefix; nothing lands in public', async () => {
    expect(a.env.pgSchema).toBe(a.prefix.replace(/-/g, '_'));
    expect(b.env.pgSchema).toBe(b.prefix.replace(/-/g, '_'));
    await a.start();
    recordExecutions(a, executedA, 20);

    // A's durable state: the first quota (q1) with period usage, a paused tenant, a throttle, a
    // runtime policy, a forced-open breaker.
    expect((await api(a, 'PUT', '/api/v1/quotas/metered', { periods: { hour: 10 } })).status).toBe(201);
    await addJobs(a, 'metered', 8);
    await waitFor(() => ran(executedA, 'metered') === 8 || undefined, "A runs 8 of metered's 10 for the hour");
    expect((await api(a, 'PUT', '/api/v1/quotas/paused-t', { rate: 1000 })).status).toBe(201);
    expect((await api(a, 'POST', '/api/v1/quotas/paused-t/pause')).body.quotas[0].paused).toBe(true);
    expect((await api(a, 'POST', '/api/v1/throttles', { tenantId: 'throttled', action: 'pause' })).status).toBe(201);
    expect((await api(a, 'PUT', '/api/v1/policies/policy', { kind: 'max-limit', capacity: 8, tenants: { capped: { maxShare: 0.25 } } })).status).toBe(200);
    expect((await api(a, 'POST', '/api/v1/breakers/scanner/open')).body).toMatchObject({ state: 'open', forced: 'open' });
    // The pause holds on A (the control for B below) ...
    await addJobs(a, 'paused-t', 5);
    await waitFor(async () => (await api(a, 'GET', '/api/v1/quotas/paused-t/usage')).body.waiting?.total === 5 || undefined, "A holds paused-t's 5 jobs");
    // ... and all of it is in Postgres, in A's schema: usage snapshotted, breaker snapshotted.
    const sa = `"${a.env.pgSchema}"`;
    await waitFor(async () => (await pgRows(db.url, `SELECT used::int AS used FROM ${sa}.usage_ledger WHERE tenant_id = 'metered'`))[0]?.used === 8 || undefined, 'usage in the ledger');
    await waitFor(async () => (await pgRows(db.url, `SELECT 1 FROM ${sa}.breaker_snapshots WHERE downstream = 'scanner' AND state->>'forced' = 'open'`)).length === 1 || undefined, 'breaker snapshot');
    expect(await pgRows(db.url, `SELECT prefix FROM ${sa}.${OWNER_TABLE}`)).toEqual([{ prefix: a.prefix }]);

    // B starts on the same database after all that (a fresh Redis prefix: it restores what its
    // Postgres holds).
    await b.start();
    recordExecutions(b, executedB, 20);
    const sb = `"${b.env.pgSchema}"`;
    expect(await pgRows(db.url, `SELECT prefix FROM ${sb}.${OWNER_TABLE}`)).toEqual([{ prefix: b.prefix }]);
    // Every table of each, and the migrations journal, in its own schema; none in public or drizzle.
    const where = await pgRows<{ table_schema: string; n: number }>(
      db.url,
      `SELECT table_schema, count(*)::int AS n FROM information_schema.tables WHERE table_schema NOT IN ('pg_catalog', 'information_schema') GROUP BY table_schema ORDER BY table_schema`,
    );
    const tablesOf = async (s: string) =>
      (await pgRows<{ t: string }>(db.url, `SELECT table_name AS t FROM information_schema.tables WHERE table_schema = $1 ORDER BY 1`, [s])).map((r) => r.t);
    expect(await tablesOf(a.env.pgSchema)).toEqual(await tablesOf(b.env.pgSchema));
    expect(await tablesOf(a.env.pgSchema)).toEqual(expect.arrayContaining(['__drizzle_migrations', OWNER_TABLE, 'quotas', 'throttles', 'policies', 'usage_ledger', 'breaker_snapshots', 'audit_log', 'notifications']));
    expect(where.map((w) => w.table_schema).sort()).toEqual([a.env.pgSchema, b.env.pgSchema].sort());
  });

  it("B's API shows none of A's quotas, pauses, throttles, policies, breaker or usage", async () => {
    expect((await api(b, 'GET', '/api/v1/quotas')).body.items).toEqual([]);
    expect((await api(b, 'GET', '/api/v1/quotas/paused-t')).body.quotas).toEqual([]);
    // Only the config's default covers metered on B: no quota, no period used.
    expect((await api(b, 'GET', '/api/v1/quotas/metered/usage')).body.quotas).toEqual([expect.objectContaining({ quotaId: 'default', periods: {} })]);
    expect((await api(b, 'GET', '/api/v1/throttles')).body.items).toEqual([]);
    const policies = (await api(b, 'GET', '/api/v1/policies')).body.items as Array<{ downstream: string; source: string }>;
    expect(policies.map((p) => [p.downstream, p.source])).toEqual([
      ['scanner', 'config'],
      ['attestor', 'config'],
      ['policy', 'config'],
    ]);
    expect((await api(b, 'GET', '/api/v1/breakers/scanner')).body).toMatchObject({ state: 'closed', forced: null });
    // A still has all of it.
    expect((await api(a, 'GET', '/api/v1/quotas')).body.items.map((q: { tenantId: string }) => q.tenantId).sort()).toEqual(['metered', 'paused-t']);
    expect((await api(a, 'GET', '/api/v1/breakers/scanner')).body).toMatchObject({ state: 'open', forced: 'open' });
  });

  it("B admits what A holds: the tenant A paused, the tenant A throttled, jobs for A's forced-open scanner", async () => {
    await addJobs(b, 'paused-t', 5);
    await addJobs(b, 'throttled', 5);
    await addJobs(b, 'scanned', 5, 'scan.image');
    await waitFor(() => (ran(executedB, 'paused-t') === 5 && ran(executedB, 'throttled') === 5 && ran(executedB, 'scanned') === 5) || undefined, 'B runs all 15');
    expect(ran(executedA, 'paused-t')).toBe(0);
  });

  it("B's period usage is its own, also when B's Redis is lost and restored from B's Postgres", async () => {
    // B's first quota is q1 too, the id of A's metered quota with 8 used in A's ledger.
    const put = await api(b, 'PUT', '/api/v1/quotas/metered', { periods: { hour: 10 } });
    expect(put.body).toMatchObject({ id: 'q1' });
    await b.stop();
    await cleanupPrefix(b.redis, b.prefix);
    await b.start();
    const usage = (await api(b, 'GET', '/api/v1/quotas/metered/usage')).body;
    expect(usage.quotas[0].periods.hour).toMatchObject({ used: 0, limit: 10 });
    await addJobs(b, 'metered', 10);
    await waitFor(() => ran(executedB, 'metered') === 10 || undefined, "B runs all 10 of metered's hour");
  });

  it("A's live pause does not reach B", async () => {
    expect((await api(a, 'PUT', '/api/v1/quotas/live', { rate: 1000 })).status).toBe(201);
    expect((await api(b, 'PUT', '/api/v1/quotas/live', { rate: 1000 })).status).toBe(201);
    expect((await api(a, 'POST', '/api/v1/quotas/live/pause')).body.quotas[0].paused).toBe(true);
    await addJobs(a, 'live', 3);
    await waitFor(async () => (await api(a, 'GET', '/api/v1/quotas/live/usage')).body.waiting?.total === 3 || undefined, 'A holds live');
    // The issue saw A's pause reach B within 3 s; B's sync runs every 500 ms here.
    await new Promise((r) => setTimeout(r, 3_000));
    expect((await api(b, 'GET', '/api/v1/quotas/live')).body.quotas[0].paused).toBe(false);
    await addJobs(b, 'live', 5);
    await waitFor(() => ran(executedB, 'live') === 5 || undefined, 'B runs live');
    expect(ran(executedA, 'live')).toBe(0);
    // Audit: each deployment's changes in its own log.
    const auditB = await pgRows<{ tenant_id: string }>(db.url, `SELECT DISTINCT tenant_id FROM "${b.env.pgSchema}".audit_log WHERE tenant_id IS NOT NULL ORDER BY 1`);
    expect(auditB.map((r) => r.tenant_id)).toEqual(['live', 'metered']);
  });

  it('refuses a deployment whose schema another prefix owns, touching nothing in it', async () => {
    const intruder = uniquePrefix('intruder');
    const t = await startTollgate({ roles: ['api'], env: testEnv({ prefix: intruder, databaseUrl: db.url, pgSchema: a.env.pgSchema }), config: testConfig() });
    try {
      const err = await t.fatal;
      expect(err.code).toBe('TG_ERR_PG_SCHEMA_OWNED');
      expect(err.message).toContain(`schema "${a.env.pgSchema}" (TOLLGATE_PG_SCHEMA)`);
      expect(err.message).toContain(`TOLLGATE_PREFIX "${a.prefix}", not "${intruder}"`);
      expect((await fetch(`${t.url}/readyz`)).status).toBe(503);
    } finally {
      await t.close();
    }
    expect(await pgRows(db.url, `SELECT prefix FROM "${a.env.pgSchema}".${OWNER_TABLE}`)).toEqual([{ prefix: a.prefix }]);
    expect((await api(a, 'GET', '/api/v1/quotas')).body.items).toHaveLength(3);
  });

  it('a process whose prefix maps to the same default schema exits 1 with TG_ERR_PG_SCHEMA_OWNED', async () => {
    // `tgtest_depa_…` and `tgtest-depa-…` are two prefixes with one default schema.
    const lookalike = a.prefix.replace(/-/g, '_');
    const child = spawnWorker('all', {
      REDIS_URL,
      DATABASE_URL: db.url,
      TOLLGATE_PREFIX: lookalike,
      TOLLGATE_CONFIG: writeConfigFile(testConfigInput()),
      PORT: String(await freePort()),
    });
    try {
      expect((await child.exited).code).toBe(1);
      const fatal = child.logs.find((l) => l.level === 60 || l.level === 'fatal');
      expect(fatal).toMatchObject({ code: 'TG_ERR_PG_SCHEMA_OWNED', schema: a.env.pgSchema, owner: a.prefix, prefix: lookalike });
    } finally {
      child.kill();
      await cleanupPrefix(a.redis, lookalike);
    }
  });
});

describe('an install from before schemas (tables in public)', () => {
  it('moves its tables into the first deployment schema, with their rows; a second deployment starts empty', async () => {
    const db = await createTestDatabase('legacy');
    // The old version's layout: the first four migrations applied in public, journal in drizzle.
    const folder = mkdtempSync(join(tmpdir(), 'tollgate-legacy-'));
    cpSync(MIGRATIONS_DIR, folder, { recursive: true });
    const journal = JSON.parse(readFileSync(join(folder, 'meta', '_journal.json'), 'utf8')) as { entries: unknown[] };
    const all = journal.entries.length;
    writeFileSync(join(folder, 'meta', '_journal.json'), JSON.stringify({ ...journal, entries: journal.entries.slice(0, 4) }));
    const pool = new Pool({ connectionString: db.url });
    await migrate(drizzle(pool), { migrationsFolder: folder });
    await pool.query(`INSERT INTO quotas (tenant_id, rate, paused) VALUES ('legacy-co', 5, true)`);
    await pool.query(`INSERT INTO audit_log (actor, action, resource_type, resource_id, reason) VALUES ('ops', 'quota.put', 'quota', 'q1', 'before schemas')`);
    await pool.end();

    const first = await createHarness('legfirst', { db, env: { apiTokens: tokens } });
    const second = await createHarness('legsecond', { db, env: { apiTokens: tokens } });
    try {
      await first.start(['api', 'observer']);
      const s = `"${first.env.pgSchema}"`;
      expect((await first.api('GET', '/api/v1/quotas/legacy-co', { token: ADMIN })).body.quotas).toMatchObject([{ id: 'q1', rate: 5, paused: true }]);
      expect(await pgRows(db.url, `SELECT reason FROM ${s}.audit_log`)).toEqual([{ reason: 'before schemas' }]);
      // Journal copied, then the later migrations applied in the schema; its sequences moved along.
      expect((await pgRows(db.url, `SELECT count(*)::int AS n FROM ${s}.__drizzle_migrations`))[0]!.n).toBe(all);
      expect((await first.api('PUT', '/api/v1/quotas/new-co', { body: { rate: 1 }, token: ADMIN })).body).toMatchObject({ id: 'q2' });
      // public is empty of tollgate tables; the old journal stays (an old process restarting creates nothing).
      expect(await pgRows(db.url, `SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'`)).toEqual([]);
      expect((await pgRows(db.url, `SELECT count(*)::int AS n FROM drizzle.__drizzle_migrations`))[0]!.n).toBe(4);

      await second.start(['api', 'observer']);
      expect((await second.api('GET', '/api/v1/quotas', { token: ADMIN })).body.items).toEqual([]);
      expect((await first.api('GET', '/api/v1/quotas', { token: ADMIN })).body.items).toHaveLength(2);
    } finally {
      await first.close();
      await second.close();
      await db.drop();
    }
  });
});

it('migrations never name a schema (they run inside each deployment schema)', () => {
  for (const file of readdirSync(MIGRATIONS_DIR).filter((f) => f.endsWith('.sql'))) {
    const text = readFileSync(join(MIGRATIONS_DIR, file), 'utf8');
    expect({ file, qualified: text.match(/"(public|drizzle)"\s*\./g) ?? [] }).toEqual({ file, qualified: [] });
  }
});

it("keeps the options of DATABASE_URL and puts the schema's search_path after them", async () => {
  const db = await createTestDatabase('dburlopts');
  try {
    const url = `${db.url}?options=${encodeURIComponent('-c work_mem=8MB -c search_path=public')}&application_name=tg-opts`;
    const conn = connectionInSchema(url, 'acme');
    expect(conn).toEqual({ connectionString: `${db.url}?application_name=tg-opts`, options: '-c work_mem=8MB -c search_path=public -c search_path=acme' });
    const c = new Client(conn);
    await c.connect();
    try {
      const { rows } = await c.query(`SELECT current_setting('work_mem') AS w, current_setting('search_path') AS p`);
      expect(rows[0]).toEqual({ w: '8MB', p: 'acme' });
    } finally {
      await c.end();
    }
  } finally {
    await db.drop();
  }
});
