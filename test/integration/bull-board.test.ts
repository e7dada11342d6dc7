/**
 * bull-board, read-only, at /queues (dashboard.bullBoard): behind the API's tokens (a read or admin token
 * as the bearer or the Basic password; tenant tokens refused), every tollgate queue listed, nothing
 * changeable, and no CDN on its page. Real Redis and Postgres, tollgate in-process.
 */
import { parseApiTokens } from '../../src/config/tokens';
import { createHarness, type Harness } from '../support/harness';
import { clusterQueueName, waitFor } from '../support/services';

jest.setTimeout(60_000);

const ADMIN = 'admin-secret-0123456789';
const READER = 'reader-secret-0123456789';
const ACME = 'acme-secret-0123456789';
let h: Harness;

beforeAll(async () => {
  h = await createHarness('bull-board', {
    env: { apiTokens: parseApiTokens(`ops:${ADMIN}:admin,dash:${READER}:read,acme:${ACME}:tenant:acme`) },
    config: { dashboard: { bullBoard: true } },
  });
  await h.start();
});
afterAll(async () => {
  await h.close();
});

const basic = (token: string) => `Basic ${Buffer.from(`ops:${token}`).toString('base64')}`;
const get = (path: string, authorization?: string, method = 'GET') => fetch(`${h.tollgate!.url}${path}`, { method, headers: authorization ? { authorization } : {} });

it('asks for a token (Basic, for browsers), refuses tenant tokens, and serves its page without a CDN', async () => {
  const anonymous = await get('/queues');
  expect(anonymous.status).toBe(401);
  expect(anonymous.headers.get('www-authenticate')).toMatch(/^Basic realm=/);
  expect((await get('/queues', basic(ACME))).status).toBe(401);
  const page = await get('/queues', basic(READER));
  expect(page.status).toBe(200);
  const html = await page.text();
  expect(html).toContain('static/js/main');
  expect(html).not.toMatch(/https?:\/\//);
  expect((await get('/queues/api/queues', `Bearer ${ADMIN}`)).status).toBe(200);
});

it('lists every tollgate queue with its jobs, read-only', async () => {
  await h.ingress.add('scan.image', { mark: 'no tenant' });
  await waitFor(async () => (await h.queue('dead-letter').getWaitingCount()) === 1 || undefined, 'a dead letter');
  const res = await get('/queues/api/queues?activeQueue=dead-letter&status=waiting&page=1', basic(READER));
  expect(res.status).toBe(200);
  const body = (await res.json()) as { queues: Array<{ name: string; readOnlyMode: boolean; counts: Record<string, number>; jobs: unknown[] }> };
  expect(body.queues.map((q) => q.name).sort()).toEqual(['dead-letter', 'exec.attestor', 'exec.policy', 'exec.scanner', 'ingress'].map(clusterQueueName));
  expect(body.queues.every((q) => q.readOnlyMode)).toBe(true);
  expect(body.queues.find((q) => q.name === clusterQueueName('dead-letter'))!.counts.waiting).toBe(1);
  // A change through it is refused, even with an admin token: changes go through the audited API.
  const clean = await get('/queues/api/queues/dead-letter/clean/waiting', `Bearer ${ADMIN}`, 'PUT');
  expect(clean.status).toBeGreaterThanOrEqual(400);
  expect(await h.queue('dead-letter').getWaitingCount()).toBe(1);
});
