/**
 * Every error the API answers, whoever raises it (a route, Fastify's body parser and router, Node's
 * HTTP parser, a dependency that does not answer), is `{error, message, details}` with a TG_ERR_* code
 * of docs/errors.md and that code's status: out-of-range ids and cursors are 400s, never Postgres
 * overflows; Postgres or Redis unreachable (a closed port, a dropped database) is a 503 with
 * `Retry-After` on every route; a 401 says how to authenticate (`WWW-Authenticate`); a tenant token
 * sees no figure of other tenants. Real Redis and Postgres; tollgate in-process.
 */
import { Redis } from 'ioredis';
import { connect } from 'node:net';
import { Pool } from 'pg';
import { driverErrorCode } from '../../src/api/errors';
import { ERRORS } from '../../src/errors';
import { openApiDocument } from '../../src/api/document';
import { parseApiTokens } from '../../src/config/tokens';
import { createHarness, type Harness } from '../support/harness';
import { freePort, LateForwarder } from '../support/net';
import { DATABASE_URL, REDIS_URL, waitFor } from '../support/services';

jest.setTimeout(90_000);

const ADMIN = 'admin-secret-0123456789';
const READ = 'read-secret-0123456789';
const ACME = 'acme-secret-0123456789';
const TOKENS = parseApiTokens(`ops:${ADMIN}:admin,dash:${READ}:read,acme:${ACME}:tenant:acme`);
const INT4_MAX = 2 ** 31 - 1;

interface Res {
  status: number;
  headers: Headers;
  body: any;
  text: string;
}

async function call(base: string, method: string, path: string, opts: { token?: string; body?: unknown; raw?: string; headers?: Record<string, string> } = {}): Promise<Res> {
  const headers: Record<string, string> = { ...opts.headers };
  if (opts.token) headers.authorization = `Bearer ${opts.token}`;
  if (method !== 'GET' && headers['x-operator-reason'] === undefined) headers['x-operator-reason'] = 'http-errors test';
  if (opts.body !== undefined || opts.raw !== undefined) headers['content-type'] ??= 'application/json';
  const res = await fetch(`${base}${path}`, {
    method,
    headers,
    ...(opts.raw !== undefined ? { body: opts.raw } : opts.body !== undefined ? { body: JSON.stringify(opts.body) } : {}),
    signal: AbortSignal.timeout(15_000),
  });
  const text = await res.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    /* not JSON */
  }
  return { status: res.status, headers: res.headers, body, text };
}

/** Sends bytes as they are (what fetch refuses to send) and parses the HTTP response. */
function rawHttp(port: number, request: string): Promise<{ status: number; headers: Record<string, string>; body: any }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    socket.on('data', (c) => chunks.push(c));
    socket.on('error', () => undefined);
    socket.on('close', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      const [head = '', ...rest] = text.split('\r\n\r\n');
      const [statusLine = '', ...lines] = head.split('\r\n');
      const m = /^HTTP\/1\.1 (\d{3})/.exec(statusLine);
      if (!m) return reject(new Error(`no HTTP response: ${JSON.stringify(text.slice(0, 200))}`));
      const headers = Object.fromEntries(lines.map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]));
      const bodyText = rest.join('\r\n\r\n');
      let body: unknown = bodyText;
      try {
        body = JSON.parse(bodyText);
      } catch {
        /* not JSON */
      }
      resolve({ status: Number(m[1]), headers, body });
    });
    socket.setTimeout(10_000, () => socket.destroy());
    socket.write(request);
    // Ask the server to close once it answered (keep-alive would leave the socket open).
    setTimeout(() => socket.end(), 500);
  });
}

/** The answer is a TG_ERR body whose code is documented with exactly this status. */
function expectCoded(res: { status: number; body: any }, status: number, code: keyof typeof ERRORS): void {
  expect({ status: res.status, error: res.body?.error }).toEqual({ status, error: code });
  expect(ERRORS[code].status).toBe(status);
  expect(typeof res.body.message).toBe('string');
  expect(Object.keys(res.body).filter((k) => !['error', 'message', 'details'].includes(k))).toEqual([]);
}

const cursor = (after: number) => Buffer.from(`{"after":${after}}`).toString('base64url');

let h: Harness;
let base: string;
let port: number;

beforeAll(async () => {
  h = await createHarness('http-errors', { env: { apiTokens: TOKENS } });
  await h.start();
  base = h.tollgate!.url!;
  port = Number(new URL(base).port);
});
afterAll(async () => {
  await h?.close();
});

describe("Fastify's and Node's own errors answer in the TG_ERR body", () => {
  it('malformed JSON: 400 TG_ERR_VALIDATION naming the body', async () => {
    const res = await call(base, 'PUT', '/api/v1/quotas/acme', { token: ADMIN, raw: '{"rate": ' });
    expectCoded(res, 400, 'TG_ERR_VALIDATION');
    expect(res.body.details).toEqual([expect.objectContaining({ field: 'body' })]);
    expectCoded(await call(base, 'PUT', '/api/v1/quotas/acme', { token: ADMIN, raw: '' }), 400, 'TG_ERR_VALIDATION');
  });

  it('a body over 1 MiB: 413 TG_ERR_BODY_TOO_LARGE', async () => {
    const res = await call(base, 'PUT', '/api/v1/quotas/acme', { token: ADMIN, raw: JSON.stringify({ pad: 'x'.repeat(1_100_000) }) });
    expectCoded(res, 413, 'TG_ERR_BODY_TOO_LARGE');
  });

  it('a body that is not JSON: 415 TG_ERR_UNSUPPORTED_MEDIA_TYPE', async () => {
    const res = await call(base, 'PUT', '/api/v1/quotas/acme', { token: ADMIN, raw: 'rate=1', headers: { 'content-type': 'text/plain' } });
    expectCoded(res, 415, 'TG_ERR_UNSUPPORTED_MEDIA_TYPE');
  });

  it('a path parameter over 1024 characters, or a request line over 16 KB: 414 TG_ERR_URI_TOO_LONG', async () => {
    expectCoded(await call(base, 'GET', `/api/v1/jobs/${'x'.repeat(1100)}`, { token: ADMIN }), 414, 'TG_ERR_URI_TOO_LONG');
    const res = await rawHttp(port, `GET /api/v1/jobs/${'y'.repeat(20_000)} HTTP/1.1\r\nHost: x\r\n\r\n`);
    expectCoded(res, 414, 'TG_ERR_URI_TOO_LONG');
    expect(res.headers['content-type']).toMatch(/application\/json/);
  });

  it('headers over 16 KB: 431 TG_ERR_HEADERS_TOO_LARGE', async () => {
    const res = await rawHttp(port, `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'z'.repeat(20_000)}\r\n\r\n`);
    expectCoded(res, 431, 'TG_ERR_HEADERS_TOO_LARGE');
  });

  it('a request that is not HTTP, or a malformed URL: 400 TG_ERR_BAD_REQUEST', async () => {
    expectCoded(await rawHttp(port, 'NOT HTTP AT ALL\r\n\r\n'), 400, 'TG_ERR_BAD_REQUEST');
    expectCoded(await call(base, 'GET', '/api/v1/jobs/%E0%A4%A', { token: ADMIN }), 400, 'TG_ERR_BAD_REQUEST');
  });

  it('an unknown route: 404 TG_ERR_NOT_FOUND', async () => {
    expectCoded(await call(base, 'DELETE', '/api/v1/nothing-here', { token: ADMIN }), 404, 'TG_ERR_NOT_FOUND');
  });
});

describe('authentication', () => {
  it('401 says how to authenticate: WWW-Authenticate: Bearer realm="tollgate"', async () => {
    const attempts: Array<Record<string, string>> = [{}, { authorization: 'Bearer not-a-real-token-at-all' }, { authorization: 'Basic dXNlcjpwYXNz' }];
    for (const headers of attempts) {
      const res = await call(base, 'GET', '/api/v1/queues', { headers });
      expectCoded(res, 401, 'TG_ERR_UNAUTHORIZED');
      expect(res.headers.get('www-authenticate')).toBe('Bearer realm="tollgate"');
    }
    const forbidden = await call(base, 'POST', '/api/v1/quotas/acme/pause', { token: READ });
    expectCoded(forbidden, 403, 'TG_ERR_FORBIDDEN');
  });
});

describe('out-of-range ids and cursors', () => {
  it('a cursor past the id range is a 400 naming query.cursor, not a Postgres overflow', async () => {
    for (const path of ['/api/v1/quotas', '/api/v1/throttles', '/api/v1/alerts', '/api/v1/tenants', '/api/v1/dead-letter']) {
      for (const after of [3e9, INT4_MAX + 1, 1e300]) {
        const res = await call(base, 'GET', `${path}?cursor=${cursor(after)}`, { token: ADMIN });
        expectCoded(res, 400, 'TG_ERR_VALIDATION');
        expect(res.body.details).toEqual([expect.objectContaining({ field: 'query.cursor' })]);
      }
      expect((await call(base, 'GET', `${path}?cursor=${cursor(INT4_MAX)}`, { token: ADMIN })).status).toBe(200);
    }
  });

  it('a throttle id past the id range is a 400; the largest one is a plain 404', async () => {
    for (const id of ['t999999999999', `t${INT4_MAX + 1}`]) {
      const res = await call(base, 'DELETE', `/api/v1/throttles/${id}`, { token: ADMIN });
      expectCoded(res, 400, 'TG_ERR_VALIDATION');
    }
    expectCoded(await call(base, 'DELETE', `/api/v1/throttles/t${INT4_MAX}`, { token: ADMIN }), 404, 'TG_ERR_NOT_FOUND');
  });

  it('a numeric filter past the column range is a 400', async () => {
    expectCoded(await call(base, 'GET', '/api/v1/notifications?alertId=99999999999999999999', { token: ADMIN }), 400, 'TG_ERR_VALIDATION');
    expectCoded(await call(base, 'GET', '/api/v1/alerts/99999999999999999999', { token: ADMIN }), 400, 'TG_ERR_VALIDATION');
  });
});

describe('the OpenAPI document declares the security scheme, the headers and the answers the API gives', () => {
  type Op = { key: string; method: string; path: string; op: { parameters?: Array<Record<string, unknown>>; responses: Record<string, unknown>; security?: unknown; requestBody?: unknown } };
  let doc: any;
  let ops: Op[];
  beforeAll(async () => {
    doc = (await call(base, 'GET', '/api/v1/openapi.json')).body;
    ops = everyRoute().map((r) => {
      const template = Object.keys(doc.paths).find((t) => new RegExp(`^${t.replace(/\{\w+\}/g, '[^/]+')}$`).test(r.path))!;
      return { key: `${r.method} ${template}`, method: r.method, path: r.path, op: doc.paths[template][r.method.toLowerCase()] };
    });
  });
  const declaresReason = (o: Op) =>
    (o.op.parameters ?? []).some((p) => p.$ref === '#/components/parameters/OperatorReason' || (String(p.name).toLowerCase() === 'x-operator-reason' && p.required === true));

  it('bearer security, X-Operator-Reason on every change, 401 / 403 / 503 with their headers', () => {
    expect(doc.components.securitySchemes.bearer).toMatchObject({ type: 'http', scheme: 'bearer' });
    expect(doc.components.parameters.OperatorReason).toMatchObject({ name: 'X-Operator-Reason', in: 'header', required: true });
    expect(doc.components.responses.Unauthorized.headers['WWW-Authenticate']).toBeDefined();
    expect(doc.components.responses.Unavailable.headers['Retry-After']).toBeDefined();
    const secured = ops.filter((o) => o.op.security !== undefined);
    const changes = secured.filter((o) => o.method !== 'GET' && o.key !== 'POST /api/v1/policies/{downstream}/simulate');
    expect(changes.length).toBeGreaterThan(15);
    expect(ops.filter(declaresReason).map((o) => o.key)).toEqual(changes.map((o) => o.key));
    for (const o of secured) expect({ key: o.key, statuses: ['401', '403', '503'].filter((s) => o.op.responses[s] === undefined) }).toEqual({ key: o.key, statuses: [] });
  });

  it('what it declares is what the API does: 401 without a token, 400 without X-Operator-Reason', async () => {
    for (const o of ops.filter((x) => x.op.security !== undefined)) {
      const res = await call(base, o.method, o.path, o.op.requestBody ? { body: {} } : {});
      expect({ key: o.key, status: res.status, auth: res.headers.get('www-authenticate') }).toEqual({ key: o.key, status: 401, auth: 'Bearer realm="tollgate"' });
    }
    for (const o of ops.filter(declaresReason)) {
      const res = await call(base, o.method, o.path, { token: ADMIN, headers: { 'x-operator-reason': '' }, ...(o.op.requestBody ? { body: {} } : {}) });
      expect({ key: o.key, status: res.status, error: res.body.error }).toEqual({ key: o.key, status: 400, error: 'TG_ERR_VALIDATION' });
    }
  });
});

describe("what a driver's error means, on real errors of pg and ioredis", () => {
  const caught = async (f: () => Promise<unknown>) => f().then(() => undefined, (e: unknown) => e);
  it('refused, unknown database, terminated and closed connections are outages; an int4 overflow is the request\'s fault; a syntax error is a bug', async () => {
    const closed = await freePort();
    const pgAt = (mutate: (u: URL) => void) => {
      const u = new URL(DATABASE_URL);
      mutate(u);
      return new Pool({ connectionString: u.toString(), connectionTimeoutMillis: 2000 });
    };
    const pools = { refused: pgAt((u) => (u.port = String(closed))), missing: pgAt((u) => (u.pathname = '/tgtest_no_such_database')), live: pgAt(() => undefined) };
    const redis = new Redis(`redis://127.0.0.1:${closed}`, { enableOfflineQueue: false, maxRetriesPerRequest: 1, retryStrategy: () => null, lazyConnect: true });
    redis.on('error', () => undefined);
    try {
      const terminated = await caught(async () => {
        const client = await pools.live.connect();
        client.on('error', () => undefined);
        const pid = (await client.query('SELECT pg_backend_pid() AS pid')).rows[0].pid;
        await pools.live.query('SELECT pg_terminate_backend($1)', [pid]);
        try {
          await client.query('SELECT 1');
        } finally {
          client.release(true);
        }
      });
      const errors = {
        refused: await caught(() => pools.refused.query('SELECT 1')),
        missing: await caught(() => pools.missing.query('SELECT 1')),
        terminated,
        redisClosed: await caught(() => redis.get('x')),
        overflow: await caught(() => pools.live.query('SELECT $1::int4 AS n', [3_000_000_000])),
        syntax: await caught(() => pools.live.query('SELEC 1')),
      };
      expect(Object.fromEntries(Object.entries(errors).map(([k, e]) => [k, driverErrorCode(e)]))).toEqual({
        refused: 'TG_ERR_UNAVAILABLE',
        missing: 'TG_ERR_UNAVAILABLE',
        terminated: 'TG_ERR_UNAVAILABLE',
        redisClosed: 'TG_ERR_UNAVAILABLE',
        overflow: 'TG_ERR_VALIDATION',
        syntax: 'TG_ERR_INTERNAL',
      });
      // Wrapped as drizzle wraps a failed query, the meaning is the same.
      expect(driverErrorCode(Object.assign(new Error('Failed query: select 1'), { cause: errors.missing }))).toBe('TG_ERR_UNAVAILABLE');
    } finally {
      redis.disconnect();
      await Promise.all(Object.values(pools).map((p) => p.end()));
    }
  });
});

/** Every route of the OpenAPI document, with sample parameters and a minimal body. */
function everyRoute(): Array<{ method: string; path: string; body?: unknown }> {
  const sample: Record<string, string> = { tenantId: 'acme', downstream: 'scanner' };
  const idFor = (path: string) => (path.startsWith('/api/v1/throttles') ? 't1' : path.startsWith('/api/v1/dead-letter') ? 'tg-1' : '1');
  const out: Array<{ method: string; path: string; body?: unknown }> = [];
  const paths = (openApiDocument() as { paths: Record<string, Record<string, { requestBody?: unknown }>> }).paths;
  for (const [template, ops] of Object.entries(paths)) {
    const path = template.replace(/\{(\w+)\}/g, (_, p: string) => (p === 'id' ? idFor(template) : (sample[p] ?? 'x')));
    for (const [method, op] of Object.entries(ops)) out.push({ method: method.toUpperCase(), path, ...(op.requestBody ? { body: {} } : {}) });
  }
  return out;
}

/**
 * Calls every route and returns what is wrong: a 500, a 503 without Retry-After or without the
 * TG_ERR_UNAVAILABLE body, or one of `mustBe503` answering anything else.
 */
async function sweep(target: string, mustBe503: readonly string[]): Promise<string[]> {
  const problems: string[] = [];
  const seen = new Set<string>();
  for (const r of everyRoute()) {
    const res = await call(target, r.method, r.path, { token: ADMIN, ...(r.body !== undefined ? { body: r.body } : {}) });
    const key = `${r.method} ${r.path}`;
    seen.add(key);
    if (res.status >= 500 && res.status !== 503) problems.push(`${key}: ${res.status} ${res.text.slice(0, 200)}`);
    if (mustBe503.includes(key) && res.status !== 503) problems.push(`${key}: ${res.status}, not 503`);
    if (res.status !== 503) continue;
    if (!/^\d+$/.test(res.headers.get('retry-after') ?? '')) problems.push(`${key}: 503 without Retry-After`);
    if (r.path !== '/readyz' && res.body?.error !== 'TG_ERR_UNAVAILABLE') problems.push(`${key}: 503 with ${res.text.slice(0, 200)}`);
  }
  for (const key of mustBe503) if (!seen.has(key)) problems.push(`${key}: no such route`);
  return problems;
}

/** Routes that cannot answer without Postgres: each must be a 503 while it is unreachable. */
const POSTGRES_ROUTES = [
  'GET /api/v1/quotas',
  'GET /api/v1/quotas/summary',
  'GET /api/v1/quotas/acme',
  'GET /api/v1/quotas/acme/usage',
  'PUT /api/v1/quotas/acme',
  'PATCH /api/v1/quotas/acme',
  'DELETE /api/v1/quotas/acme',
  'POST /api/v1/quotas/acme/pause',
  'POST /api/v1/quotas/acme/resume',
  'GET /api/v1/throttles',
  'POST /api/v1/throttles',
  'DELETE /api/v1/throttles/t1',
  'GET /api/v1/tenants',
  'GET /api/v1/policies',
  'PUT /api/v1/policies/scanner',
  'GET /api/v1/alerts',
  'GET /api/v1/alerts/1',
  'POST /api/v1/alerts/1/ack',
  'GET /api/v1/alert-rules',
  'GET /api/v1/alert-rules/acme',
  'PUT /api/v1/alert-rules/acme',
  'DELETE /api/v1/alert-rules/acme',
  'GET /api/v1/notifications',
  'POST /api/v1/notifications/1/retry',
  'GET /readyz',
];
const REDIS_ROUTES = ['GET /api/v1/jobs/1', 'GET /api/v1/queues', 'GET /api/v1/backpressure', 'GET /api/v1/breakers', 'GET /api/v1/flow', 'GET /api/v1/dead-letter', 'GET /readyz'];

describe('a dependency that does not answer is a 503 with Retry-After on every route', () => {
  let o: Harness;
  let pg: LateForwarder;
  let redis: LateForwarder;
  let target: string;

  beforeAll(async () => {
    o = await createHarness('http-errors-down', { env: { apiTokens: TOKENS } });
    const dbUrl = new URL(o.db.url);
    pg = new LateForwarder(await freePort(), { host: new URL(DATABASE_URL).hostname, port: Number(new URL(DATABASE_URL).port || 5432) });
    redis = new LateForwarder(await freePort(), { host: new URL(REDIS_URL).hostname, port: Number(new URL(REDIS_URL).port || 6379) });
    await pg.open();
    await redis.open();
    dbUrl.port = String(pg.port);
    const redisUrl = new URL(REDIS_URL);
    redisUrl.port = String(redis.port);
    await o.start(['api'], { databaseUrl: dbUrl.toString(), redisUrl: redisUrl.toString() });
    target = o.tollgate!.url!;
    expect((await call(target, 'PUT', '/api/v1/quotas/acme', { token: ADMIN, body: { rate: 5 } })).status).toBe(201);
  });
  afterAll(async () => {
    await pg?.close();
    await redis?.close();
    await o?.close();
  });

  it('Postgres refusing connections (a closed port)', async () => {
    await pg.close();
    try {
      expect(await sweep(target, POSTGRES_ROUTES)).toEqual([]);
    } finally {
      await pg.open();
    }
    await waitFor(async () => (await call(target, 'GET', '/readyz')).status === 200, 'ready again once Postgres answers', 20_000, 100);
  });

  it('Redis refusing connections', async () => {
    await redis.close();
    try {
      expect(await sweep(target, REDIS_ROUTES)).toEqual([]);
    } finally {
      await redis.open();
    }
    // Redis back (the changes made meanwhile wait in Postgres for an observer's sync: this API runs alone).
    await waitFor(async () => (await call(target, 'GET', '/readyz')).body.checks.redis.ok, 'Redis answering again', 20_000, 100);
  });

  it('the database dropped under a running API', async () => {
    await o.db.drop();
    expect(await sweep(target, POSTGRES_ROUTES)).toEqual([]);
  });

  it('a request that arrives while the process shuts down', async () => {
    // A request in flight (its body half sent) keeps the connection open across the start of the
    // shutdown; the one pipelined behind it arrives while the server closes.
    const socket = connect(Number(new URL(target).port), '127.0.0.1');
    let received = '';
    socket.on('data', (d) => (received += d.toString('utf8')));
    const closed = new Promise((r) => socket.on('close', r));
    socket.write(`PUT /api/v1/quotas/late HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${ADMIN}\r\nX-Operator-Reason: t\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{`);
    await new Promise((r) => setTimeout(r, 200));
    const stopping = o.stop();
    await new Promise((r) => setTimeout(r, 300));
    socket.write('}GET /api/v1/queues HTTP/1.1\r\nHost: x\r\n\r\n');
    await Promise.race([closed, new Promise((r) => setTimeout(r, 10_000))]);
    socket.destroy();
    await stopping;
    const second = received.slice(received.indexOf('HTTP/1.1', 1));
    expect(second).toMatch(/^HTTP\/1\.1 503 /);
    expect(second).toMatch(/\r\nretry-after: \d+\r\n/i);
    expect(JSON.parse(second.slice(second.indexOf('\r\n\r\n') + 4))).toMatchObject({ error: 'TG_ERR_UNAVAILABLE' });
  });
});

describe('a tenant token sees its own figures only', () => {
  beforeAll(async () => {
    // Both tenants paused: their jobs wait on the scanner, so there are global figures to leak.
    for (const t of ['acme', 'globex']) {
      expect((await call(base, 'PUT', `/api/v1/quotas/${t}`, { token: ADMIN, body: { paused: true } })).status).toBe(201);
    }
    await h.ingress.addBulk([
      ...Array.from({ length: 2 }, (_, i) => ({ name: 'scan.image', data: { tenantId: 'acme', i } })),
      ...Array.from({ length: 5 }, (_, i) => ({ name: 'scan.image', data: { tenantId: 'globex', i } })),
    ]);
    await waitFor(async () => {
      const bp = await call(base, 'GET', '/api/v1/backpressure', { token: ADMIN });
      return bp.body.downstreams?.find((d: { downstream: string }) => d.downstream === 'scanner')?.waiting === 7;
    }, 'seven jobs waiting on the scanner');
  });

  it('backpressure: no downstream-wide waiting counts, its own tenant rows only', async () => {
    const admin = await call(base, 'GET', '/api/v1/backpressure', { token: ADMIN });
    expect(admin.body.downstreams.find((d: { downstream: string }) => d.downstream === 'scanner')).toMatchObject({ waiting: 7 });
    const own = await call(base, 'GET', '/api/v1/backpressure', { token: ACME });
    expect(own.status).toBe(200);
    for (const d of own.body.downstreams) expect(d).not.toHaveProperty('waiting');
    expect(own.body.tenants.map((t: { tenantId: string }) => t.tenantId)).toEqual(['acme', 'acme', 'acme']);
    expect(own.body.tenants.find((t: { downstream: string }) => t.downstream === 'scanner')).toMatchObject({ waiting: 2 });
  });

  it('tenants: no entitlement (it depends on how many tenants have work)', async () => {
    const admin = await call(base, 'GET', '/api/v1/tenants?sort=tenant', { token: ADMIN });
    expect(admin.body.items.find((r: { tenantId: string }) => r.tenantId === 'acme').share.scanner).toEqual({ share: 0, entitlement: 0.5 });
    const own = await call(base, 'GET', '/api/v1/tenants', { token: ACME });
    expect(own.body).toMatchObject({ total: 1, items: [{ tenantId: 'acme', waiting: { total: 2 } }] });
    expect(own.body.items[0].share.scanner).toEqual({ share: 0 });
  });

  it('usage: no entitlement', async () => {
    const admin = await call(base, 'GET', '/api/v1/quotas/acme/usage', { token: ADMIN });
    expect(admin.body.allocation.scanner.entitlement).toBe(25); // capacity 50, acme and globex with work
    const own = await call(base, 'GET', '/api/v1/quotas/acme/usage', { token: ACME });
    expect(own.status).toBe(200);
    expect(Object.keys(own.body.allocation).length).toBeGreaterThan(0);
    for (const a of Object.values(own.body.allocation)) expect(a).not.toHaveProperty('entitlement');
  });

  it('dead-letter list: no count of every tenant\'s jobs looked at', async () => {
    const admin = await call(base, 'GET', '/api/v1/dead-letter', { token: ADMIN });
    expect(admin.status).toBe(200);
    expect(typeof admin.body.scanned).toBe('number');
    const own = await call(base, 'GET', '/api/v1/dead-letter', { token: ACME });
    expect(own.status).toBe(200);
    expect(own.body).not.toHaveProperty('scanned');
  });

  it('no read route a tenant token may use names another tenant', async () => {
    for (const r of everyRoute().filter((x) => x.method === 'GET')) {
      const res = await call(base, 'GET', r.path, { token: ACME });
      expect({ path: r.path, leaks: res.text.includes('globex') }).toEqual({ path: r.path, leaks: false });
      expect({ path: r.path, status: res.status }).not.toEqual({ path: r.path, status: 500 });
    }
  });
});
