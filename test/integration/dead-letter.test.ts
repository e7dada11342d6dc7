/**
 * The dead-letter queue over the API: counts by reason, a paged list filtered by reason and tenant
 * (a tenant token sees its own), and re-drive: the original job goes back through ingress, where every
 * rule applies again; a second re-drive of the same entry is the same job; each is audited. Real Redis
 * and Postgres, tollgate in-process, a plain worker.
 */
import { Client } from 'pg';
import { parseApiTokens } from '../../src/config/tokens';
import type { DeadLetterData } from '../../src/queues/dead-letter';
import { createHarness, type Harness } from '../support/harness';
import { waitFor } from '../support/services';

jest.setTimeout(60_000);

const ADMIN = 'admin-secret-0123456789';
const ACME = 'acme-secret-0123456789';
let h: Harness;

beforeAll(async () => {
  h = await createHarness('dead-letter', { env: { apiTokens: parseApiTokens(`ops:${ADMIN}:admin,acme:${ACME}:tenant:acme`) } });
  await h.start();
});
afterAll(async () => {
  await h.close();
});

const list = async (query: string, token = ADMIN) => (await h.api('GET', `/api/v1/dead-letter${query}`, { token })).body as { items: Array<DeadLetterData & { id: string }>; nextCursor?: string };

it('counts and lists dead-lettered jobs by reason and tenant, paged; a tenant token sees its own', async () => {
  await h.ingress.addBulk([
    ...Array.from({ length: 5 }, (_, i) => ({ name: 'scan.image', data: { i, mark: 'no-tenant' } })),
    ...Array.from({ length: 3 }, (_, i) => ({ name: 'scan.image', data: { tenantId: 'acme', i, priority: 'high' } })),
    { name: 'scan.image', data: { tenantId: 'globex', priority: 'high' } },
  ]);
  await waitFor(async () => (await h.queue('dead-letter').getWaitingCount()) === 9 || undefined, 'nine dead letters');
  const summary = (await h.api('GET', '/api/v1/dead-letter/summary', { token: ADMIN })).body;
  expect(summary).toMatchObject({ inQueue: 9, byReason: { 'missing-tenant': 5, 'invalid-priority': 4 } });
  const missing = await list('?reason=missing-tenant&limit=3');
  expect(missing.items).toHaveLength(3);
  expect(missing.items.every((d) => d.reason === 'missing-tenant' && d.job.name === 'scan.image')).toBe(true);
  const rest = await list(`?reason=missing-tenant&limit=3&cursor=${missing.nextCursor}`);
  expect(rest.items).toHaveLength(2);
  expect(rest.nextCursor).toBeUndefined();
  expect(new Set([...missing.items, ...rest.items].map((d) => d.ingressJobId)).size).toBe(5);
  expect((await list('?tenantId=acme')).items.map((d) => d.reason)).toEqual(['invalid-priority', 'invalid-priority', 'invalid-priority']);
  // A tenant token: its own entries only, whatever it asks for.
  expect((await list('', ACME)).items.map((d) => d.tenantId)).toEqual(['acme', 'acme', 'acme']);
  expect((await list('?tenantId=globex', ACME)).items).toEqual([]);
  expect((await h.api('GET', '/api/v1/dead-letter/summary', { token: ACME })).status).toBe(403);
});

it('pages without repeating or skipping while new dead letters arrive and while a page\'s last job leaves; a tenant token\'s cursor tells nothing of other tenants', async () => {
  const mark = (d: { job: { data: unknown } }) => (d.job.data as { mark: string }).mark;
  // One at a time, each dead-lettered before the next is sent: distinct dead-letter times (a page whose
  // last job left the queue resumes by time, where jobs of the same millisecond may show twice).
  const send = async (marks: string[], tenantId?: string) => {
    for (const m of marks) {
      const before = await h.queue('dead-letter').getWaitingCount();
      await h.ingress.add('scan.image', { tenantId: tenantId ?? 'paging', mark: m, cost: 'bad' });
      await waitFor(async () => (await h.queue('dead-letter').getWaitingCount()) === before + 1 || undefined, `${m} dead-lettered`);
      await new Promise((r) => setTimeout(r, 2));
    }
  };
  await send(['p1', 'p2', 'p3', 'p4', 'p5', 'p6']);
  const seen: string[] = [];
  const page1 = await list('?reason=invalid-cost&limit=2');
  seen.push(...page1.items.map(mark));
  // Newer dead letters arrive at the head of the queue between pages: the next page still starts right after page 1.
  await send(['n1', 'n2', 'n3']);
  const page2 = await list(`?reason=invalid-cost&limit=2&cursor=${page1.nextCursor}`);
  seen.push(...page2.items.map(mark));
  // The job page 2 ended on is re-driven (removed from dead-letter): page 3 resumes by its time.
  await h.queue('dead-letter').remove(page2.items[1]!.id);
  const page3 = await list(`?reason=invalid-cost&limit=10&cursor=${page2.nextCursor}`);
  seen.push(...page3.items.map(mark));
  expect(seen).toEqual(['p6', 'p5', 'p4', 'p3', 'p2', 'p1']);
  expect(page3.nextCursor).toBeUndefined();

  // A tenant token: its pages end on other tenants' jobs too, but its cursor is sealed (no offset, no job id).
  await send(['a1'], 'acme');
  await send(['g1', 'g2', 'g3'], 'globex');
  await send(['a2'], 'acme');
  const t1 = (await h.api('GET', '/api/v1/dead-letter?reason=invalid-cost&limit=1', { token: ACME })).body;
  expect(t1.items.map(mark)).toEqual(['a2']);
  expect(t1.nextCursor).toMatch(/^s\./);
  const sealed = Buffer.from(t1.nextCursor.slice(2), 'base64url').toString('latin1');
  expect(sealed).not.toContain('"job"');
  expect(sealed).not.toContain('"after"');
  expect(sealed).not.toContain('"ts"');
  const t2 = (await h.api('GET', `/api/v1/dead-letter?reason=invalid-cost&limit=1&cursor=${t1.nextCursor}`, { token: ACME })).body;
  expect(t2.items.map(mark)).toEqual(['a1']);
  // A tampered sealed cursor is refused like any cursor this API did not return.
  const bad = await h.api('GET', `/api/v1/dead-letter?cursor=${t1.nextCursor.slice(0, -2)}xx`, { token: ACME });
  expect([bad.status, bad.body.error]).toEqual([400, 'TG_ERR_VALIDATION']);
});

it('re-drives a drained job through ingress once the downstream is back; a second re-drive is the same job; the re-drive audited', async () => {
  const ran: string[] = [];
  h.worker('exec.scanner', async (job) => void ran.push(job.data.mark));
  // Held while the breaker is forced open, then drained by an operator.
  expect((await h.api('POST', '/api/v1/breakers/scanner/open', { token: ADMIN, reason: 'maintenance' })).status).toBe(200);
  const job = await h.ingress.add('scan.image', { tenantId: 'acme', mark: 'drained-then-redriven' });
  await waitFor(async () => ((await h.api('GET', '/api/v1/breakers/scanner', { token: ADMIN })).body.held === 1 ? true : undefined), 'the job to be held');
  expect((await h.api('POST', '/api/v1/breakers/scanner/held/drain', { token: ADMIN, reason: 'stale', body: {} })).body).toEqual({ drained: 1 });
  const dl = await waitFor(async () => (await list('?reason=drained')).items.find((d) => d.ingressJobId === job.id), 'the drained entry');
  expect((await h.api('POST', '/api/v1/breakers/scanner/reset', { token: ADMIN })).status).toBe(200);
  expect(ran).toEqual([]);

  const first = await h.api('POST', `/api/v1/dead-letter/${dl.id}/redrive`, { token: ADMIN, reason: 'scanner is back' });
  expect(first.status).toBe(200);
  expect(first.body).toEqual({ ingressJobId: `redrive-${dl.id}`, redriven: true });
  await waitFor(() => (ran.length === 1 ? true : undefined), 'the re-driven job to run');
  expect(ran).toEqual(['drained-then-redriven']);
  expect((await list('?reason=drained')).items.find((d) => d.ingressJobId === job.id)).toBeUndefined();

  const second = await h.api('POST', `/api/v1/dead-letter/${dl.id}/redrive`, { token: ADMIN, reason: 'clicked twice' });
  expect(second.body).toEqual({ ingressJobId: `redrive-${dl.id}`, redriven: false });
  await new Promise((r) => setTimeout(r, 300));
  expect(ran).toEqual(['drained-then-redriven']);

  expect((await h.api('POST', `/api/v1/dead-letter/${dl.id}/redrive`, { token: ADMIN, reason: null })).status).toBe(400);
  expect((await h.api('POST', '/api/v1/dead-letter/no-such-entry/redrive', { token: ADMIN, reason: 'x' })).status).toBe(404);
  expect((await h.api('POST', `/api/v1/dead-letter/${dl.id}/redrive`, { token: ACME, reason: 'x' })).status).toBe(403);
  const pg = new Client({ connectionString: h.db.url });
  await pg.connect();
  try {
    const rows = (await pg.query("select actor, reason, after from audit_log where action = 'dead-letter.redrive'")).rows;
    expect(rows).toEqual([{ actor: 'ops', reason: 'scanner is back', after: { ingressJobId: `redrive-${dl.id}` } }]);
  } finally {
    await pg.end();
  }
});

it('re-drives a job the rules still refuse into dead-letter again, with its reason', async () => {
  const job = await h.ingress.add('scan.image', { mark: 'still-no-tenant' });
  const dl = await waitFor(async () => (await list('?reason=missing-tenant&limit=200')).items.find((d) => d.ingressJobId === job.id), 'the entry');
  const out = (await h.api('POST', `/api/v1/dead-letter/${dl.id}/redrive`, { token: ADMIN, reason: 'try again' })).body;
  const again = await waitFor(async () => (await list('?reason=missing-tenant&limit=200')).items.find((d) => d.ingressJobId === out.ingressJobId), 'the re-driven job refused again');
  expect(again.job.data).toEqual({ mark: 'still-no-tenant' });
});
