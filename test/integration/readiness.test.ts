/**
 * Readiness per role, on real processes (`workers/gate.ts`, `workers/observer.ts` with METRICS_PORT):
 * a gate needs only Redis, so it is ready while Postgres is down (a Postgres outage does not stall a
 * rollout of gates); an observer needs Redis and Postgres. METRICS_PORT serves `/healthz`, `/readyz`
 * and `/metrics` and nothing else: every other path is a TG_ERR_NOT_FOUND.
 */
import { freePort, LateForwarder } from '../support/net';
import { spawnWorker, writeConfigFile, type Child } from '../support/processes';
import { cleanupPrefix, createTestDatabase, DATABASE_URL, REDIS_URL, testConfigInput, testRedis, uniquePrefix, waitFor, type TestDatabase } from '../support/services';

jest.setTimeout(90_000);

const READ = 'read-secret-0123456789';
const TOKENS = `dash:${READ}:read`;

const prefix = uniquePrefix('ready');
const configFile = writeConfigFile(testConfigInput());
const children: Child[] = [];
let db: TestDatabase;
let pg: LateForwarder;
let pgOpen = false;

async function get(port: number, path: string, token?: string): Promise<{ status: number; body: any; text: string; type: string | null }> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`, { headers: token ? { authorization: `Bearer ${token}` } : {}, signal: AbortSignal.timeout(5000) });
  const text = await res.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    /* not JSON */
  }
  return { status: res.status, body, text, type: res.headers.get('content-type') };
}

async function spawnRole(role: 'gate' | 'observer', port: number): Promise<Child> {
  const dbUrl = new URL(db.url);
  dbUrl.port = String(pg.port);
  const child = spawnWorker(role, {
    REDIS_URL,
    DATABASE_URL: dbUrl.toString(),
    TOLLGATE_PREFIX: prefix,
    TOLLGATE_CONFIG: configFile,
    METRICS_PORT: String(port),
    TOLLGATE_API_TOKENS: TOKENS,
  });
  children.push(child);
  await waitFor(async () => (await get(port, '/healthz')).status === 200, `${role} /healthz`, 30_000, 100);
  return child;
}

beforeAll(async () => {
  db = await createTestDatabase('ready');
  // Postgres behind a port nothing listens on until the test opens it.
  pg = new LateForwarder(await freePort(), { host: new URL(DATABASE_URL).hostname, port: Number(new URL(DATABASE_URL).port || 5432) });
});
afterAll(async () => {
  for (const c of children) c.kill('SIGTERM');
  await Promise.all(children.map((c) => Promise.race([c.exited, new Promise((r) => setTimeout(r, 15_000))])));
  for (const c of children) c.kill('SIGKILL');
  await pg.close();
  const redis = testRedis();
  await cleanupPrefix(redis, prefix);
  redis.disconnect();
  await db.drop();
});

it('a standalone gate is ready with Postgres down; an observer is not until Postgres answers', async () => {
  const gatePort = await freePort();
  const observerPort = await freePort();
  await spawnRole('gate', gatePort);
  await spawnRole('observer', observerPort);

  const gate = await waitFor(async () => {
    const r = await get(gatePort, '/readyz');
    return r.status === 200 ? r : undefined;
  }, 'the gate ready with Postgres down', 20_000, 100).catch(async (err) => {
    throw new Error(`${(err as Error).message}: ${(await get(gatePort, '/readyz')).text}`);
  });
  expect(gate.body).toEqual({ status: 'ready', checks: { redis: { ok: true }, gate: { ok: true } } });

  const observer = await get(observerPort, '/readyz');
  expect(observer.status).toBe(503);
  expect(observer.body.checks.redis).toEqual({ ok: true });
  expect(observer.body.checks.postgres).toMatchObject({ ok: false, detail: expect.stringContaining('DATABASE_URL') });

  await pg.open();
  pgOpen = true;
  await waitFor(async () => (await get(observerPort, '/readyz')).status === 200, 'the observer ready once Postgres answers', 30_000, 100);
  expect((await get(gatePort, '/readyz')).status).toBe(200);
});

it('METRICS_PORT serves /healthz, /readyz and /metrics only', async () => {
  if (!pgOpen) await pg.open();
  pgOpen = true;
  const port = await freePort();
  await spawnRole('gate', port);
  await waitFor(async () => (await get(port, '/readyz')).status === 200, 'the gate ready', 20_000, 100);
  const metrics = await get(port, '/metrics', READ);
  expect(metrics.status).toBe(200);
  expect(metrics.type).toMatch(/text\/plain/);
  expect(metrics.text).toMatch(/^tollgate_redis_up 1$/m);
  // /metrics keeps the API's rules: a token when tokens are configured.
  expect((await get(port, '/metrics')).status).toBe(401);
  for (const path of ['/', '/assets/dashboard.js', '/api/v1/queues', '/api/v1/whoami', '/api/v1/openapi.json', '/api/v1/jobs/1', '/api/v1/quotas']) {
    const res = await get(port, path, READ);
    expect({ path, status: res.status, error: res.body?.error }).toEqual({ path, status: 404, error: 'TG_ERR_NOT_FOUND' });
  }
});
