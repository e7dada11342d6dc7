import { createClassifier, createRouter } from '../../src/core/classify';
import { compileGlob } from '../../src/core/glob';

const routing = {
  rules: [
    { jobName: 'scan.*', downstream: 'scanner' },
    { jobName: 'attest.?bom', downstream: 'attestor' },
  ],
  dataField: 'data.downstream',
  downstreams: ['scanner', 'attestor', 'policy'],
};
const classify = createClassifier({ tenantIdPath: 'data.tenantId', maxPayloadBytes: 200, routing });
const job = (name: string, data: unknown, opts: { priority?: unknown } = {}) => classify({ name, data, opts });

describe('job-name globs', () => {
  it('match any run with * and one character with ?, and nothing else', () => {
    expect(compileGlob('scan.*').test('scan.image')).toBe(true);
    expect(compileGlob('scan.*').test('scan.')).toBe(true);
    expect(compileGlob('scan.*').test('scanx')).toBe(false);
    expect(compileGlob('scan.*').test('prescan.image')).toBe(false);
    expect(compileGlob('a?c').test('abc')).toBe(true);
    expect(compileGlob('a?c').test('ac')).toBe(false);
    expect(compileGlob('a+b(c)').test('a+b(c)')).toBe(true);
    expect(compileGlob('a+b(c)').test('aab(c)')).toBe(false);
  });
});

describe('routing', () => {
  const router = createRouter(routing);
  it('sends a job to the first rule matching its name', () => {
    expect(router.route('scan.image', {})).toEqual({ downstream: 'scanner' });
    expect(router.route('attest.sbom', { downstream: 'policy' })).toEqual({ downstream: 'attestor' });
  });
  it('falls back to data.downstream when no rule matches', () => {
    expect(router.route('evaluate', { downstream: 'policy' })).toEqual({ downstream: 'policy' });
  });
  it('refuses an unknown data.downstream and a job with no route', () => {
    expect(router.route('evaluate', { downstream: 'nope' })).toMatchObject({ code: 'TG_ERR_UNKNOWN_DOWNSTREAM' });
    expect(router.route('evaluate', {})).toMatchObject({ code: 'TG_ERR_NO_ROUTE' });
  });
  it('ignores the data field when it is disabled', () => {
    const r = createRouter({ ...routing, dataField: null });
    expect(r.route('evaluate', { downstream: 'policy' })).toMatchObject({ code: 'TG_ERR_NO_ROUTE' });
  });
});

describe('classification', () => {
  it('accepts a well-formed job with its tenant, downstream and priority', () => {
    expect(job('scan.image', { tenantId: 'acme', priority: 3 })).toEqual({ ok: true, tenantId: 'acme', downstream: 'scanner', priority: 3, cost: 1 });
    expect(job('scan.image', { tenantId: 'acme' }, { priority: 7 })).toMatchObject({ ok: true, priority: 7 });
  });
  it.each([
    ['a string', 'hello', 'invalid-payload'],
    ['null', null, 'invalid-payload'],
    ['an array', [1, 2], 'invalid-payload'],
    ['a number', 42, 'invalid-payload'],
  ])('refuses data that is %s', (_, data, reason) => {
    expect(job('scan.image', data)).toMatchObject({ ok: false, reason });
  });
  it('refuses a payload over the size limit, naming both sizes', () => {
    const r = job('scan.image', { tenantId: 'acme', blob: 'x'.repeat(300) });
    expect(r).toMatchObject({ ok: false, reason: 'payload-too-large' });
    expect(r.ok === false && r.message).toMatch(/\d+ bytes, over the limit of 200/);
  });
  it('refuses a missing or malformed tenant id', () => {
    expect(job('scan.image', {})).toMatchObject({ ok: false, reason: 'missing-tenant' });
    expect(job('scan.image', { tenantId: '' })).toMatchObject({ ok: false, reason: 'missing-tenant' });
    expect(job('scan.image', { tenantId: 42 })).toMatchObject({ ok: false, reason: 'invalid-tenant' });
    expect(job('scan.image', { tenantId: 'has space' })).toMatchObject({ ok: false, reason: 'invalid-tenant' });
  });
  it('refuses a priority that BullMQ would not accept, keeping the tenant for the record', () => {
    expect(job('scan.image', { tenantId: 'acme', priority: -1 })).toMatchObject({ ok: false, reason: 'invalid-priority', tenantId: 'acme' });
    expect(job('scan.image', { tenantId: 'acme', priority: 1.5 })).toMatchObject({ ok: false, reason: 'invalid-priority' });
    expect(job('scan.image', { tenantId: 'acme', priority: 'high' })).toMatchObject({ ok: false, reason: 'invalid-priority' });
    expect(job('scan.image', { tenantId: 'acme' }, { priority: 2 ** 22 })).toMatchObject({ ok: false, reason: 'invalid-priority' });
  });
  it('reads the tenant from a nested configured path', () => {
    const nested = createClassifier({ tenantIdPath: 'data.meta.tenant', maxPayloadBytes: 1000, routing });
    expect(nested({ name: 'scan.x', data: { meta: { tenant: 't1' } }, opts: {} })).toMatchObject({ ok: true, tenantId: 't1' });
    expect(nested({ name: 'scan.x', data: { meta: 'flat' }, opts: {} })).toMatchObject({ ok: false, reason: 'missing-tenant' });
  });
  it('refuses unroutable jobs with the reason of the router', () => {
    expect(job('unknown.thing', { tenantId: 'acme' })).toMatchObject({ ok: false, reason: 'no-route', tenantId: 'acme' });
    expect(job('unknown.thing', { tenantId: 'acme', downstream: 'ghost' })).toMatchObject({ ok: false, reason: 'unknown-downstream' });
  });
});

describe('cost and deadline', () => {
  const withRules = createClassifier({
    tenantIdPath: 'data.tenantId',
    maxPayloadBytes: 10_000,
    routing,
    jobs: { costs: [{ jobName: 'scan.*', cost: 5 }], costField: 'data.cost', ttls: [{ jobName: 'scan.*', ttlMs: 60_000 }], deadlineField: 'data.deadline' },
  });
  const T = Date.UTC(2026, 10, 27, 12);
  const c = (name: string, data: Record<string, unknown>) => withRules({ name, data: { tenantId: 'acme', ...data }, opts: {}, timestamp: T });

  it('takes the cost from the job, else its job type, else 1', () => {
    expect(c('scan.image', {})).toMatchObject({ ok: true, cost: 5 });
    expect(c('scan.image', { cost: 2 })).toMatchObject({ ok: true, cost: 2 });
    expect(c('attest.sbom', {})).toMatchObject({ ok: true, cost: 1 });
  });

  it('refuses a cost that is not a whole number from 1 to 10,000', () => {
    for (const cost of [0, -1, 1.5, '3', 10_001]) expect(c('scan.image', { cost })).toMatchObject({ ok: false, reason: 'invalid-cost' });
  });

  it('takes the deadline from the job (ISO or ms), else ingress time plus its job type\'s TTL', () => {
    expect(c('scan.image', {})).toMatchObject({ ok: true, deadline: T + 60_000 });
    expect(c('scan.image', { deadline: '2026-11-27T13:00:00Z' })).toMatchObject({ ok: true, deadline: Date.UTC(2026, 10, 27, 13) });
    expect(c('scan.image', { deadline: T + 5 })).toMatchObject({ ok: true, deadline: T + 5 });
    expect(c('attest.sbom', {})).not.toHaveProperty('deadline');
  });

  it('refuses a deadline that is not a time', () => {
    for (const deadline of ['tomorrow', 'Tue, 01 Dec 2026', null, true]) expect(c('scan.image', { deadline })).toMatchObject({ ok: false, reason: 'invalid-deadline' });
  });
});
