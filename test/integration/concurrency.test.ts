/**
 * Concurrent operators on real Postgres and Redis, through two API replicas on one database: changes
 * of different fields at once lose nothing (PATCH vs PATCH, pause vs PATCH), a stale `If-Match` is
 * refused with 412 and changes nothing, and a retried creating POST with the same `Idempotency-Key`
 * creates one thing (one after the other and at once), the same key with another body is refused.
 */
import { Client } from 'pg';
import { parseApiTokens } from '../../src/config/tokens';
import { startTollgate, type Tollgate } from '../../src/runtime';
import { createHarness, type Harness } from '../support/harness';
import { waitFor } from '../support/services';

jest.setTimeout(120_000);

const ADMIN = 'admin-secret-0123456789';
const TOKENS = `ops:${ADMIN}:admin`;

let h: Harness;
/** A second API replica on the same Postgres and Redis. */
let replica: Tollgate;

interface Answer {
  status: number;
  body: any;
  etag: string | null;
  headers: Headers;
}

async function call(base: string, method: string, path: string, opts: { body?: unknown; headers?: Record<string, string> } = {}): Promise<Answer> {
  const headers: Record<string, string> = { authorization: `Bearer ${ADMIN}`, ...opts.headers };
  if (opts.body !== undefined) headers['content-type'] = 'application/json';
  if (method !== 'GET') headers['x-operator-reason'] ??= 'concurrency test';
  const res = await fetch(`${base}${path}`, { method, headers, ...(opts.body !== undefined ? { body: JSON.stringify(opts.body) } : {}) });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined, etag: res.headers.get('etag'), headers: res.headers };
}
const a = (method: string, path: string, opts?: { body?: unknown; headers?: Record<string, string> }) => call(h.tollgate!.url!, method, path, opts);
const b = (method: string, path: string, opts?: { body?: unknown; headers?: Record<string, string> }) => call(replica.url!, method, path, opts);

async function sql<T = Record<string, unknown>>(text: string, params: unknown[] = []): Promise<T[]> {
  const c = new Client({ connectionString: h.db.url });
  await c.connect();
  try {
    return (await c.query(text, params)).rows as T[];
  } finally {
    await c.end();
  }
}

beforeAll(async () => {
  h = await createHarness('concurrency', { env: { apiTokens: parseApiTokens(TOKENS) } });
  await h.start(['api']);
  replica = await startTollgate({ roles: ['api'], env: h.env, config: h.config });
  await replica.started;
  await waitFor(async () => (await fetch(`${replica.url}/readyz`)).status === 200, 'replica readiness');
});
afterAll(async () => {
  await replica?.close();
  await h.close();
});

const quotaOf = async (tenant: string) => (await a('GET', `/api/v1/quotas/${tenant}`)).body.quotas[0];

describe('changes at once lose nothing', () => {
  it('40 trials of two PATCHes of different fields, one per replica, keep both fields', async () => {
    const lost: string[] = [];
    for (let i = 0; i < 40; i++) {
      const tenant = `patch-${i}`;
      expect((await a('PUT', `/api/v1/quotas/${tenant}`, { body: { rate: 10, maxConcurrent: 5 } })).status).toBe(201);
      const [r1, r2] = await Promise.all([
        a('PATCH', `/api/v1/quotas/${tenant}`, { body: { rate: 20 + i } }),
        b('PATCH', `/api/v1/quotas/${tenant}`, { body: { maxConcurrent: 7 } }),
      ]);
      expect([r1.status, r2.status]).toEqual([200, 200]);
      const q = await quotaOf(tenant);
      if (q.rate !== 20 + i) lost.push(`${tenant}: rate ${q.rate}`);
      if (q.maxConcurrent !== 7) lost.push(`${tenant}: maxConcurrent ${q.maxConcurrent}`);
    }
    process.stdout.write(`concurrent PATCH of two fields: ${lost.length} of 40 trials lost a field ${lost.slice(0, 5).join(', ')}\n`);
    expect(lost).toEqual([]);
  });

  it('40 trials of a pause sent with a rate change keep the pause and the rate', async () => {
    const lost: string[] = [];
    for (let i = 0; i < 40; i++) {
      const tenant = `pause-${i}`;
      expect((await a('PUT', `/api/v1/quotas/${tenant}`, { body: { rate: 10 } })).status).toBe(201);
      const [r1, r2] = await Promise.all([a('POST', `/api/v1/quotas/${tenant}/pause`), b('PATCH', `/api/v1/quotas/${tenant}`, { body: { rate: 30 + i } })]);
      expect([r1.status, r2.status]).toEqual([200, 200]);
      const q = await quotaOf(tenant);
      if (!q.paused) lost.push(`${tenant}: not paused`);
      if (q.rate !== 30 + i) lost.push(`${tenant}: rate ${q.rate}`);
    }
    process.stdout.write(`pause with a concurrent PATCH: ${lost.length} changes lost in 40 trials ${lost.slice(0, 5).join(', ')}\n`);
    expect(lost).toEqual([]);
  });
});

describe('ETag and If-Match', () => {
  const strong = /^"[A-Za-z0-9_-]+"$/;

  it('a quota: the tag of GET is the one PUT and PATCH answer with; a stale tag gets 412 and changes nothing', async () => {
    const put = await a('PUT', '/api/v1/quotas/tagged', { body: { rate: 5 } });
    expect(put.status).toBe(201);
    expect(put.etag).toMatch(strong);
    const read = await a('GET', '/api/v1/quotas/tagged');
    expect(read.etag).toBe(put.etag);
    // The replica computes the same tag from the same rows.
    expect((await b('GET', '/api/v1/quotas/tagged')).etag).toBe(put.etag);

    const patched = await a('PATCH', '/api/v1/quotas/tagged', { body: { rate: 6 }, headers: { 'if-match': read.etag! } });
    expect(patched.status).toBe(200);
    expect(patched.etag).toMatch(strong);
    expect(patched.etag).not.toBe(read.etag);
    expect((await a('GET', '/api/v1/quotas/tagged')).etag).toBe(patched.etag);

    const auditBefore = await sql<{ n: string }>('SELECT count(*) AS n FROM audit_log');
    for (const [method, query, body] of [
      ['PATCH', '', { rate: 99 }],
      ['PUT', '', { rate: 99 }],
      ['PUT', '?jobType=scan.*', { rate: 99 }],
      ['DELETE', '', undefined],
    ] as const) {
      const stale = await b(method, `/api/v1/quotas/tagged${query}`, { ...(body ? { body } : {}), headers: { 'if-match': read.etag! } });
      expect({ method, query, status: stale.status, error: stale.body.error }).toEqual({ method, query, status: 412, error: 'TG_ERR_PRECONDITION_FAILED' });
      expect(stale.body.message).toContain(read.etag!);
    }
    // A weak tag never matches (strong comparison), not even the current one.
    expect((await a('PATCH', '/api/v1/quotas/tagged', { body: { rate: 99 }, headers: { 'if-match': `W/${patched.etag}` } })).status).toBe(412);
    const after = await a('GET', '/api/v1/quotas/tagged');
    expect(after.body.quotas).toHaveLength(1);
    expect(after.body.quotas[0].rate).toBe(6);
    expect(after.etag).toBe(patched.etag);
    expect(await sql<{ n: string }>('SELECT count(*) AS n FROM audit_log')).toEqual(auditBefore);

    // One of several tags matching is enough; `*` matches whatever is there.
    expect((await a('PATCH', '/api/v1/quotas/tagged', { body: { burst: 8 }, headers: { 'if-match': `"nope", ${patched.etag}` } })).status).toBe(200);
    expect((await a('PATCH', '/api/v1/quotas/tagged', { body: { burst: 9 }, headers: { 'if-match': '*' } })).status).toBe(200);
    const paused = await a('POST', '/api/v1/quotas/tagged/pause');
    expect(paused.etag).toBe((await a('GET', '/api/v1/quotas/tagged')).etag);
    // A malformed If-Match is a 400 naming the header.
    const bad = await a('PATCH', '/api/v1/quotas/tagged', { body: { burst: 3 }, headers: { 'if-match': 'not-quoted' } });
    expect(bad.status).toBe(400);
    expect(bad.body.details[0].field).toBe('headers.if-match');
  });

  it('a tenant with no quota yet has a tag too: If-Match on it creates only if nobody created first', async () => {
    const empty = await a('GET', '/api/v1/quotas/fresh');
    expect(empty.etag).toMatch(strong);
    const [r1, r2] = await Promise.all([
      a('PUT', '/api/v1/quotas/fresh', { body: { rate: 1 }, headers: { 'if-match': empty.etag! } }),
      b('PUT', '/api/v1/quotas/fresh?jobType=x', { body: { rate: 2 }, headers: { 'if-match': empty.etag! } }),
    ]);
    expect([r1.status, r2.status].sort()).toEqual([201, 412]);
    expect((await a('GET', '/api/v1/quotas/fresh')).body.quotas).toHaveLength(1);
  });

  it('a throttle: GET and POST answer its tag; DELETE with a stale tag gets 412 and keeps it', async () => {
    const created = await a('POST', '/api/v1/throttles', { body: { tenantId: 'tagged-t', action: 'pause' } });
    expect(created.status).toBe(201);
    expect(created.etag).toMatch(strong);
    const read = await b('GET', `/api/v1/throttles/${created.body.id}`);
    expect(read.status).toBe(200);
    expect(read.body).toEqual(created.body);
    expect(read.etag).toBe(created.etag);
    const stale = await a('DELETE', `/api/v1/throttles/${created.body.id}`, { headers: { 'if-match': '"0000"' } });
    expect(stale.status).toBe(412);
    expect(stale.body.error).toBe('TG_ERR_PRECONDITION_FAILED');
    expect((await a('GET', `/api/v1/throttles/${created.body.id}`)).status).toBe(200);
    const deleted = await a('DELETE', `/api/v1/throttles/${created.body.id}`, { headers: { 'if-match': created.etag! } });
    expect(deleted.status).toBe(200);
    expect((await a('GET', `/api/v1/throttles/${created.body.id}`)).status).toBe(404);
  });

  it('a policy: GET and PUT answer its tag; PUT with a stale tag gets 412 and changes nothing', async () => {
    const fromConfig = await a('GET', '/api/v1/policies/scanner');
    expect(fromConfig.status).toBe(200);
    expect(fromConfig.body.source).toBe('config');
    expect(fromConfig.etag).toMatch(strong);
    const put = await b('PUT', '/api/v1/policies/scanner', { body: { kind: 'proportional', capacity: 40 }, headers: { 'if-match': fromConfig.etag! } });
    expect(put.status).toBe(200);
    expect(put.etag).toMatch(strong);
    expect(put.etag).not.toBe(fromConfig.etag);
    const read = await a('GET', '/api/v1/policies/scanner');
    expect(read.etag).toBe(put.etag);
    expect(read.body.updatedAt).toBe(put.body.updatedAt);
    const stale = await a('PUT', '/api/v1/policies/scanner', { body: { kind: 'proportional', capacity: 30 }, headers: { 'if-match': fromConfig.etag! } });
    expect(stale.status).toBe(412);
    expect(stale.body.error).toBe('TG_ERR_PRECONDITION_FAILED');
    const after = await a('GET', '/api/v1/policies/scanner');
    expect(after.body.capacity).toBe(40);
    expect(after.etag).toBe(put.etag);
  });
});

describe('Idempotency-Key on creating POSTs', () => {
  const throttlesOf = async (tenant: string) => (await a('GET', `/api/v1/throttles?tenantId=${tenant}`)).body.items as Array<{ id: string }>;

  it('a retried POST /throttles with the same key and body answers the first result and creates one throttle', async () => {
    const body = { tenantId: 'retry-seq', action: 'slow', rate: 2 };
    const first = await a('POST', '/api/v1/throttles', { body, headers: { 'idempotency-key': 'seq-1' } });
    expect(first.status).toBe(201);
    const again = await b('POST', '/api/v1/throttles', { body, headers: { 'idempotency-key': 'seq-1' } });
    expect(again.status).toBe(201);
    expect(again.body).toEqual(first.body);
    expect(again.etag).toBe(first.etag);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(first.headers.get('idempotent-replayed')).toBeNull();
    // The same body in another key order is the same body.
    const reordered = await a('POST', '/api/v1/throttles', { body: { rate: 2, action: 'slow', tenantId: 'retry-seq' }, headers: { 'idempotency-key': 'seq-1' } });
    expect(reordered.body).toEqual(first.body);
    expect(await throttlesOf('retry-seq')).toHaveLength(1);
    // Without a key every POST creates.
    await a('POST', '/api/v1/throttles', { body });
    expect(await throttlesOf('retry-seq')).toHaveLength(2);
  });

  it('twelve POSTs at once with the same key, over both replicas, create one throttle and all answer it', async () => {
    const body = { tenantId: 'retry-par', action: 'pause' };
    const answers = await Promise.all(
      Array.from({ length: 12 }, (_, i) => (i % 2 ? a : b)('POST', '/api/v1/throttles', { body, headers: { 'idempotency-key': 'par-1' } })),
    );
    expect(answers.map((r) => r.status)).toEqual(Array(12).fill(201));
    expect(new Set(answers.map((r) => JSON.stringify(r.body))).size).toBe(1);
    expect(answers.filter((r) => r.headers.get('idempotent-replayed') === 'true')).toHaveLength(11);
    expect(await throttlesOf('retry-par')).toHaveLength(1);
  });

  it('the same key with another body is refused with a coded error and creates nothing', async () => {
    const first = await a('POST', '/api/v1/throttles', { body: { tenantId: 'retry-diff', action: 'pause' }, headers: { 'idempotency-key': 'diff-1' } });
    expect(first.status).toBe(201);
    const other = await b('POST', '/api/v1/throttles', { body: { tenantId: 'retry-diff', action: 'slow', rate: 1 }, headers: { 'idempotency-key': 'diff-1' } });
    expect(other.status).toBe(422);
    expect(other.body.error).toBe('TG_ERR_IDEMPOTENCY_KEY_REUSED');
    expect(other.body.message).toContain('diff-1');
    expect(await throttlesOf('retry-diff')).toHaveLength(1);
  });

  it('a key is remembered for 24 hours, then it creates again', async () => {
    const body = { tenantId: 'retry-old', action: 'pause' };
    const first = await a('POST', '/api/v1/throttles', { body, headers: { 'idempotency-key': 'old-1' } });
    expect(first.status).toBe(201);
    await sql(`UPDATE idempotency_keys SET created_at = now() - interval '23 hours' WHERE key = 'old-1'`);
    expect((await a('POST', '/api/v1/throttles', { body, headers: { 'idempotency-key': 'old-1' } })).body).toEqual(first.body);
    await sql(`UPDATE idempotency_keys SET created_at = now() - interval '25 hours' WHERE key = 'old-1'`);
    const later = await a('POST', '/api/v1/throttles', { body, headers: { 'idempotency-key': 'old-1' } });
    expect(later.status).toBe(201);
    expect(later.body.id).not.toBe(first.body.id);
    expect(await throttlesOf('retry-old')).toHaveLength(2);
  });

  it('keys past their day are deleted by the observer, with no keyed request to prune them', async () => {
    const body = { tenantId: 'retry-prune', action: 'pause' };
    for (const k of ['prune-1', 'prune-2']) expect((await a('POST', '/api/v1/throttles', { body, headers: { 'idempotency-key': k } })).status).toBe(201);
    await sql(`UPDATE idempotency_keys SET created_at = now() - interval '25 hours' WHERE key = 'prune-1'`);
    const observer = await startTollgate({ roles: ['observer'], env: h.env, config: h.config });
    try {
      await observer.started;
      await waitFor(async () => (await sql(`SELECT 1 FROM idempotency_keys WHERE key = 'prune-1'`)).length === 0 || undefined, 'the expired key deleted', 15_000, 100);
      expect(await sql(`SELECT key FROM idempotency_keys WHERE key LIKE 'prune-%'`)).toEqual([{ key: 'prune-2' }]);
    } finally {
      await observer.close();
    }
  });

  it('an invalid key is a 400 naming the header', async () => {
    const r = await a('POST', '/api/v1/throttles', { body: { tenantId: 'retry-bad', action: 'pause' }, headers: { 'idempotency-key': 'x'.repeat(256) } });
    expect(r.status).toBe(400);
    expect(r.body.details[0].field).toBe('headers.idempotency-key');
    expect(await throttlesOf('retry-bad')).toHaveLength(0);
  });
});
