/**
 * The definitions mirror under concurrent writers, on real Postgres and Redis: an operator's change
 * (mirrored by the API right after its commit) racing a rebuild of the whole mirror (by a gate's mirror
 * guard or the observer's sync, from a Postgres read taken just before the change committed). Once the
 * change has answered, Redis must hold it: a rebuild from an older read must not overwrite it, or the
 * gates enforce the old quota until the next sync (a chaos run admitted 15 jobs of a tenant whose
 * maxConcurrent 2 could never admit them, the PUT having answered 201 before they were sent).
 */
import { Client } from 'pg';
import pino from 'pino';
import { createDatabase, type Database } from '../../src/db/client';
import { Definitions } from '../../src/governance/definitions';
import { Governance } from '../../src/redis/governance';
import { Keys } from '../../src/redis/keys';
import { createHarness, type Harness } from '../support/harness';
import { freePort } from '../support/net';
import { spawnWorker, writeConfigFile, type Child } from '../support/processes';
import { testConfigInput, waitFor } from '../support/services';

jest.setTimeout(120_000);

const ADMIN = 'admin-secret-0123456789';
let h: Harness;
const databases: Database[] = [];
/** The API that takes the operator's change: a process of its own, as in a deployment. */
let api: Child;
let apiUrl: string;

beforeAll(async () => {
  h = await createHarness('mirror-race');
  const port = await freePort();
  apiUrl = `http://127.0.0.1:${port}`;
  api = spawnWorker('api', { PORT: String(port), TOLLGATE_CONFIG: writeConfigFile(testConfigInput()), TOLLGATE_PREFIX: h.prefix, DATABASE_URL: h.db.url, TOLLGATE_API_TOKENS: `ops:${ADMIN}:admin` });
  await waitFor(async () => (await fetch(`${apiUrl}/readyz`).catch(() => undefined))?.status === 200, 'API process ready', 30_000);
});
afterAll(async () => {
  api?.kill();
  await api?.exited;
  await Promise.all(databases.map((d) => d.close()));
  await h.close();
});

function definitions(): Definitions {
  const log = pino({ level: 'silent' });
  const database = createDatabase(h.db.url, log, { schema: h.env.pgSchema });
  databases.push(database);
  const governance = new Governance(h.redis, new Keys(h.prefix), 60_000, h.config.downstreams.map((d) => d.name));
  return new Definitions(database, governance, h.config, log);
}

it('a rebuild of the mirror racing an operator change never leaves Redis without the change once it answered', async () => {
  // 5,000 tenants with quotas of their own: a rebuild then takes long enough between its Postgres read
  // and its Redis write for an operator's change to commit and mirror itself in between.
  const pg = new Client({ connectionString: h.db.url });
  await pg.connect();
  await pg.query(`INSERT INTO quotas (tenant_id, rate) SELECT 'bulk-' || g, 10 FROM generate_series(1, 5000) g`);
  await pg.end();
  const repairer = definitions();
  const keys = new Keys(h.prefix);
  const put = async (tenant: string) => {
    const res = await fetch(`${apiUrl}/api/v1/quotas/${tenant}`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json', 'x-operator-reason': 'mirror race' },
      body: JSON.stringify({ maxConcurrent: 2 }),
    });
    expect(res.status).toBe(201);
  };
  const lost: string[] = [];
  const trials = 12;
  for (let i = 0; i < trials; i++) {
    const tenant = `race-${i}`;
    // A Redis that lost the mirror (or one not written yet, as at a deployment's first start): the
    // next guard or sync rebuilds it from Postgres.
    await h.redis.del(keys.mirrorVersion());
    const offsetMs = i;
    await Promise.all([repairer.repairMirror(), new Promise((r) => setTimeout(r, offsetMs)).then(() => put(tenant))]);
    const held = await h.redis.hgetall(keys.quotaDefs(tenant));
    if (Object.keys(held).length === 0) lost.push(`${tenant} (change sent ${offsetMs} ms into the rebuild)`);
  }
  process.stdout.write(`mirror rebuild racing a quota change: ${lost.length} of ${trials} changes missing from Redis after they answered ${lost.slice(0, 5).join(', ')}\n`);
  expect(lost).toEqual([]);
  // And the mirror is consistent at the end: every tenant's quota in it.
  await repairer.repairMirror();
  for (let i = 0; i < trials; i++) expect(Object.keys(await h.redis.hgetall(keys.quotaDefs(`race-${i}`))).length).toBe(1);
});
