/**
 * GET /api/v1/tenants: every tenant with a quota or with work, its waiting and in-flight jobs per
 * downstream, share against entitlement, sorted, filtered and paged by the server; a tenant token sees
 * its own. Real Redis and Postgres, tollgate in-process.
 */
import { parseApiTokens } from '../../src/config/tokens';
import { createHarness, type Harness } from '../support/harness';
import { waitFor } from '../support/services';

jest.setTimeout(60_000);

const ADMIN = 'admin-secret-0123456789';
const ACME = 'acme-secret-0123456789';
let h: Harness;

beforeAll(async () => {
  h = await createHarness('tenants', {
    env: { apiTokens: parseApiTokens(`ops:${ADMIN}:admin,acme:${ACME}:tenant:acme`) },
    config: {
      downstreams: [
        { name: 'scanner', capacity: 4, policy: { kind: 'proportional', tenants: { acme: { weight: 3 } } } },
        { name: 'attestor', capacity: 10 },
        { name: 'policy', capacity: 10 },
      ],
    },
  });
  await h.start();
});
afterAll(async () => {
  await h.close();
});

type Row = { tenantId: string; waiting: { total: number }; inFlight: { total: number }; share: Record<string, { share: number; entitlement: number }>; quotas: number };
const tenants = async (query: string, token = ADMIN) => (await h.api('GET', `/api/v1/tenants${query}`, { token })).body as { total: number; items: Row[]; nextCursor?: string };

it('lists tenants with their work, share against entitlement, sorted, filtered and paged; a tenant token sees its own', async () => {
  let release!: () => void;
  const hold = new Promise<void>((r) => (release = r));
  h.worker('exec.scanner', () => hold, { concurrency: 10 });
  try {
  expect((await h.api('PUT', '/api/v1/quotas/quota-only', { token: ADMIN, body: { rate: 5 } })).status).toBe(201);
  // acme's jobs come first and take the 4 slots (the policy is not preemptive); globex waits with none,
  // though entitled to a quarter (weights 3:1): what the share column is for.
  await h.ingress.addBulk([
    ...Array.from({ length: 8 }, (_, i) => ({ name: 'scan.image', data: { tenantId: 'acme', i } })),
    ...Array.from({ length: 6 }, (_, i) => ({ name: 'scan.image', data: { tenantId: 'globex', i } })),
  ]);
  let last = '';
  await waitFor(async () => {
    const all = await tenants('?sort=tenant');
    const acme = all.items.find((r) => r.tenantId === 'acme');
    last = JSON.stringify(all.items);
    return acme?.inFlight.total === 4 && all.items.find((r) => r.tenantId === 'globex')?.waiting.total === 6 ? true : undefined;
  }, 'the scanner to fill').catch((e) => { throw new Error(`${(e as Error).message}: ${last}`); });
  const byId = await tenants('?sort=tenant');
  expect(byId.items.map((r) => r.tenantId)).toEqual(['acme', 'globex', 'quota-only']);
  expect(byId.items[0]!.share.scanner).toEqual({ share: 1, entitlement: 0.75 });
  expect(byId.items[1]!.share.scanner).toEqual({ share: 0, entitlement: 0.25 });
  expect(byId.items[2]).toMatchObject({ quotas: 1, share: {} });
  expect((await tenants('?sort=waiting')).items.map((r) => r.tenantId)).toEqual(['globex', 'acme', 'quota-only']);
  expect((await tenants('?sort=busiest')).items[0]!.tenantId).toBe('acme');
  expect((await tenants('?q=glob')).items.map((r) => r.tenantId)).toEqual(['globex']);
  const first = await tenants('?sort=tenant&limit=2');
  expect(first.items.map((r) => r.tenantId)).toEqual(['acme', 'globex']);
  expect((await tenants(`?sort=tenant&limit=2&cursor=${first.nextCursor}`)).items.map((r) => r.tenantId)).toEqual(['quota-only']);
  const own = await tenants('', ACME);
  expect(own.items.map((r) => r.tenantId)).toEqual(['acme']);
  expect(own.total).toBe(1);
  } finally {
    release();
  }
});
