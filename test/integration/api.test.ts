/**
 * The REST API on a real tollgate: health, readiness, job lookup, queue counts, metrics, OpenAPI,
 * and bearer-token scopes (401 / 403 / tenant isolation without leaks).
 */
import { parseApiTokens } from '../../src/config/tokens';
import { createHarness, type Harness } from '../support/harness';
import { clusterQueueName, waitFor } from '../support/services';

const TOKENS = 'ops:ops-secret-0123456789:admin,dash:dash-secret-0123456789:read,acme:acme-secret-0123456789:tenant:acme';

let open: Harness;
let secured: Harness;

beforeAll(async () => {
  open = await createHarness('api-open');
  await open.start();
  secured = await createHarness('api-secured', { env: { apiTokens: parseApiTokens(TOKENS) } });
  await secured.start();
});
afterAll(async () => {
  await open.close();
  await secured.close();
});

const get = async (h: Harness, path: string, token?: string) => {
  const res = await fetch(`${h.tollgate!.url}${path}`, { headers: token ? { authorization: `Bearer ${token}` } : {} });
  const text = await res.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    /* text body */
  }
  return { status: res.status, body: body as Record<string, any>, text, type: res.headers.get('content-type') };
};

describe('without tokens (loopback only, read-only)', () => {
  it('answers /healthz and /readyz with both dependencies checked', async () => {
    expect(await get(open, '/healthz')).toMatchObject({ status: 200, body: { status: 'ok' } });
    expect(await get(open, '/readyz')).toMatchObject({
      status: 200,
      body: { status: 'ready', checks: { redis: { ok: true }, postgres: { ok: true } } },
    });
  });

  it('counts jobs in every place', async () => {
    open.worker('exec.scanner', async () => 'ok');
    await open.ingress.add('scan.image', { tenantId: 'acme' });
    await open.ingress.add('scan.image', { no: 'tenant' });
    const q = await waitFor(async () => {
      const { body } = await get(open, '/api/v1/queues');
      const scanner = body.exec.find((e: { downstream: string }) => e.downstream === 'scanner');
      return scanner.counts.completed === 1 && body.deadLetter.counts.waiting === 1 ? body : undefined;
    }, 'counts to show both jobs');
    expect(q.ingress).toMatchObject({ queue: clusterQueueName('ingress'), counts: { waiting: 0, active: 0 } });
    expect(q.exec.map((e: { queue: string }) => e.queue)).toEqual(['exec.scanner', 'exec.attestor', 'exec.policy'].map(clusterQueueName));
    await open.closeWorkers();
  });

  it('exposes Prometheus metrics with decisions by outcome and reason, latency and depths', async () => {
    const { status, text, type } = await get(open, '/metrics');
    expect(status).toBe(200);
    expect(type).toMatch(/text\/plain/);
    const samples = new Map(
      text
        .split('\n')
        .filter((l) => l && !l.startsWith('#'))
        .map((l) => [l.slice(0, l.lastIndexOf(' ')), Number(l.slice(l.lastIndexOf(' ') + 1))]),
    );
    expect(samples.get('tollgate_decisions_total{downstream="scanner",outcome="admitted",reason=""}')).toBe(1);
    expect(samples.get('tollgate_decisions_total{downstream="",outcome="dead-lettered",reason="missing-tenant"}')).toBe(1);
    expect(samples.get('tollgate_gate_promotion_seconds_count{downstream="scanner"}')).toBe(1);
    expect(samples.get('tollgate_queue_jobs{queue="dead-letter",role="dead-letter",state="waiting"}')).toBe(1);
    expect(samples.get('tollgate_redis_up')).toBe(1);
  });

  it('answers an unknown route with a JSON 404', async () => {
    const res = await fetch(`${open.tollgate!.url}/api/v1/nothing-here`, { method: 'POST' });
    expect(res.status).toBe(404);
    expect(await res.json()).toMatchObject({ error: 'TG_ERR_NOT_FOUND' });
  });

  it('validates path parameters with a 400 naming the field', async () => {
    const { status, body } = await get(open, `/api/v1/jobs/${'x'.repeat(300)}`);
    expect(status).toBe(400);
    expect(body).toMatchObject({ error: 'TG_ERR_VALIDATION', details: [{ field: 'params.id' }] });
  });

  it('serves an OpenAPI document generated from the route schemas', async () => {
    const { body } = await get(open, '/api/v1/openapi.json');
    expect(body.openapi).toBe('3.1.0');
    expect(Object.keys(body.paths)).toEqual(expect.arrayContaining(['/healthz', '/readyz', '/api/v1/jobs/{id}', '/api/v1/queues', '/metrics']));
    const job = body.paths['/api/v1/jobs/{id}'].get;
    expect(job.parameters).toEqual([expect.objectContaining({ name: 'id', in: 'path', required: true })]);
    expect(job.responses['200'].content['application/json'].schema).toEqual({ $ref: '#/components/schemas/JobLocation' });
    expect(body.components.schemas.JobLocation.properties.place.enum).toEqual(['ingress', 'waiting', 'exec', 'dead-letter']);
    expect(job.responses['404'].content['application/json'].schema).toEqual({ $ref: '#/components/schemas/Error' });
  });

  it('serves the dashboard', async () => {
    const { status, text, type } = await get(open, '/');
    expect(status).toBe(200);
    expect(type).toMatch(/text\/html/);
    expect(text).toContain('/assets/dashboard.js');
    // Its script (which reads the API) and libraries come from here, never from a CDN; nothing else is served.
    const script = await get(open, '/assets/dashboard.js');
    expect(script.status).toBe(200);
    expect(script.type).toMatch(/text\/javascript/);
    // Its modules (relative imports), each served from here too; between them they read the API.
    const modules = [...script.text.matchAll(/from '\.\/([\w-]+\.js)'/g)].map((m) => m[1]!);
    expect(modules.length).toBeGreaterThan(0);
    let all = script.text;
    for (const m of modules) {
      const mod = await get(open, `/assets/${m}`);
      expect(mod.status).toBe(200);
      expect(mod.type).toMatch(/text\/javascript/);
      expect(mod.text).not.toMatch(/from '(https?:)?\/\//);
      all += mod.text;
    }
    expect(all).toContain('/api/v1/queues');
    for (const lib of ['preact.mjs', 'hooks.mjs', 'htm.mjs', 'uplot.mjs', 'uplot.css']) expect((await get(open, `/assets/${lib}`)).status).toBe(200);
    expect(text).not.toMatch(/https?:\/\//);
    expect((await get(open, '/assets/..%2Fpackage.json')).status).toBe(404);
    expect((await get(open, '/assets/secret.js')).status).toBe(404);
  });
});

describe('with tokens', () => {
  let acmeJob: string;
  let globexJob: string;

  beforeAll(async () => {
    secured.worker('exec.policy', async () => 'ok');
    acmeJob = (await secured.ingress.add('policy.eval', { tenantId: 'acme' })).id!;
    globexJob = (await secured.ingress.add('policy.eval', { tenantId: 'globex' })).id!;
    await waitFor(async () => (await get(secured, `/api/v1/jobs/${globexJob}`, 'ops-secret-0123456789')).body.finished, 'jobs done');
    await secured.closeWorkers();
  });

  it('keeps health probes open', async () => {
    expect((await get(secured, '/healthz')).status).toBe(200);
    expect((await get(secured, '/readyz')).status).toBe(200);
  });

  it('answers 401 without a token or with an unknown one', async () => {
    for (const token of [undefined, 'not-a-real-token-at-all']) {
      const { status, body } = await get(secured, '/api/v1/queues', token);
      expect({ status, error: body.error }).toEqual({ status: 401, error: 'TG_ERR_UNAUTHORIZED' });
    }
  });

  it('lets read and admin tokens read everything', async () => {
    expect((await get(secured, '/api/v1/queues', 'dash-secret-0123456789')).status).toBe(200);
    expect((await get(secured, '/metrics', 'ops-secret-0123456789')).status).toBe(200);
    expect((await get(secured, `/api/v1/jobs/${globexJob}`, 'dash-secret-0123456789')).body.tenantId).toBe('globex');
  });

  it('shows a tenant token its own jobs only, and nothing that tells other tenants exist', async () => {
    const own = await get(secured, `/api/v1/jobs/${acmeJob}`, 'acme-secret-0123456789');
    expect(own).toMatchObject({ status: 200, body: { tenantId: 'acme' } });
    const other = await get(secured, `/api/v1/jobs/${globexJob}`, 'acme-secret-0123456789');
    const missing = await get(secured, '/api/v1/jobs/no-such-job', 'acme-secret-0123456789');
    expect(other.status).toBe(404);
    expect(other.body.message).not.toContain('globex');
    expect({ ...other.body, message: other.body.message.replace(globexJob, 'no-such-job') }).toEqual(missing.body);
    expect((await get(secured, '/api/v1/queues', 'acme-secret-0123456789')).status).toBe(403);
    expect((await get(secured, '/metrics', 'acme-secret-0123456789')).status).toBe(403);
  });
});
