/**
 * Per-job rules on real Redis: cost units (capacity, rate and period count them; a completed job's
 * reported cost settles the difference), deadlines and TTLs (a job past its deadline is never run),
 * and the per-tenant backlog limit.
 */
import { parseApiTokens } from '../../src/config/tokens';
import type { DeadLetterData } from '../../src/queues/dead-letter';
import { createHarness, type Harness } from '../support/harness';
import { waitFor } from '../support/services';

jest.setTimeout(60_000);

const ADMIN = 'admin-secret-0123456789';
let h: Harness;

beforeAll(async () => {
  h = await createHarness('jobrules', {
    env: { apiTokens: parseApiTokens(`ops:${ADMIN}:admin`) },
    config: {
      downstreams: [
        { name: 'scanner', capacity: 10 },
        { name: 'attestor', capacity: 100 },
        { name: 'policy', capacity: 100 },
      ],
      jobs: { costs: [{ jobName: 'scan.deep', cost: 5 }], ttls: [{ jobName: 'attest.quick', ttlMs: 400 }] },
      tenantLimits: { maxWaiting: 5, onBacklogFull: 'reject' },
    },
  });
  await h.start();
});
afterEach(async () => {
  await h.closeWorkers();
});
afterAll(async () => {
  await h.close();
});

const deadLetters = async (tenant: string) =>
  (await h.queue('dead-letter').getJobs(['waiting'])).filter((j) => (j.data as DeadLetterData).tenantId === tenant).map((j) => j.data as DeadLetterData);

it('counts capacity in cost units: two jobs of cost 5 fill a capacity of 10', async () => {
  let running = 0;
  let maxRunning = 0;
  h.worker(
    'exec.scanner',
    async () => {
      maxRunning = Math.max(maxRunning, ++running);
      await new Promise((r) => setTimeout(r, 150));
      running--;
    },
    { concurrency: 20 },
  );
  // Six jobs: two run, four wait (under this file's backlog limit of five).
  await h.ingress.addBulk(Array.from({ length: 6 }, (_, i) => ({ name: 'scan.deep', data: { tenantId: 'heavy', i } })));
  await waitFor(async () => (await h.queue('exec.scanner').getJobCounts('completed')).completed === 6, 'all 6', 20_000);
  expect(maxRunning).toBe(2);
});

it('charges period quotas in cost units, and settles the cost a job reports', async () => {
  await h.api('PUT', '/api/v1/quotas/billed', { body: { periods: { day: 100 } }, token: ADMIN });
  h.worker('exec.policy', async (job) => ({ cost: job.data.actual }), { concurrency: 5 });
  // Two jobs stated at cost 20 each; they report 3 and 25 when they complete.
  await h.ingress.addBulk([
    { name: 'policy.eval', data: { tenantId: 'billed', cost: 20, actual: 3 } },
    { name: 'policy.eval', data: { tenantId: 'billed', cost: 20, actual: 25 } },
  ]);
  const usage = await waitFor(async () => {
    const u = (await h.api('GET', '/api/v1/quotas/billed/usage', { token: ADMIN })).body;
    return u.quotas[0].periods.day.used === 28 && u.quotas[0].inFlight === 0 ? u : undefined;
  }, 'settled usage 3 + 25');
  expect(usage.quotas[0].periods.day).toMatchObject({ used: 28, limit: 100 });
});

it('refuses invalid costs and deadlines at the gate', async () => {
  await h.ingress.add('policy.eval', { tenantId: 'sloppy', cost: 0 });
  await h.ingress.add('policy.eval', { tenantId: 'sloppy', deadline: 'soon' });
  await waitFor(async () => (await deadLetters('sloppy')).length === 2, 'both refused');
  expect((await deadLetters('sloppy')).map((d) => d.reason).sort()).toEqual(['invalid-cost', 'invalid-deadline']);
});

it('never runs a job past its deadline: expired at the gate, or while waiting', async () => {
  let ran = 0;
  h.worker('exec.attestor', async () => void ran++);
  // Already past when it arrives.
  await h.ingress.add('attest.sbom', { tenantId: 'late', deadline: new Date(Date.now() - 1000).toISOString() });
  // Held by a throttle past its own deadline, and past its job type's TTL (400 ms).
  const throttle = await h.api('POST', '/api/v1/throttles', { body: { tenantId: 'late', action: 'pause' }, token: ADMIN });
  await h.ingress.add('attest.sbom', { tenantId: 'late', deadline: Date.now() + 300 });
  await h.ingress.add('attest.quick', { tenantId: 'late' });
  await waitFor(async () => (await deadLetters('late')).length === 3, 'all three expired', 10_000);
  const dl = await deadLetters('late');
  expect(dl.map((d) => d.reason)).toEqual(['expired', 'expired', 'expired']);
  expect(dl.some((d) => /not run late/.test(d.message))).toBe(true);
  await h.api('DELETE', `/api/v1/throttles/${throttle.body.id}`, { token: ADMIN });
  await new Promise((r) => setTimeout(r, 300));
  expect(ran).toBe(0);
});

it("counts a job type's TTL from when the job is due: a delay longer than the TTL still runs", async () => {
  const ran: Array<{ tenantId: string; at: number }> = [];
  h.worker('exec.attestor', async (job) => void ran.push({ tenantId: job.data.tenantId, at: Date.now() }));
  // attest.quick has a 400 ms TTL; delayed by 900 ms it becomes due long after 400 ms from its add.
  const addedAt = Date.now();
  await h.ingress.add('attest.quick', { tenantId: 'patient' }, { delay: 900 });
  await waitFor(() => ran.find((r) => r.tenantId === 'patient'), 'the delayed job to run', 10_000);
  expect(ran.find((r) => r.tenantId === 'patient')!.at - addedAt).toBeGreaterThanOrEqual(900);
  expect(await deadLetters('patient')).toEqual([]);
});

it("counts a TTL from the job's own timestamp option, as BullMQ keeps it", async () => {
  // Created (by the producer's say) 10 s ago: its 400 ms TTL passed long before it reached the gate.
  await h.ingress.add('attest.quick', { tenantId: 'backdated' }, { timestamp: Date.now() - 10_000 });
  await waitFor(async () => (await deadLetters('backdated')).length === 1, 'the backdated job to expire');
  expect((await deadLetters('backdated'))[0]!.reason).toBe('expired');
});

it('refuses jobs past a tenant\'s backlog limit with tenant-backlog-full, keeping the rest', async () => {
  const throttle = await h.api('POST', '/api/v1/throttles', { body: { tenantId: 'hoarder', action: 'pause' }, token: ADMIN });
  await h.ingress.addBulk(Array.from({ length: 8 }, (_, i) => ({ name: 'attest.sbom', data: { tenantId: 'hoarder', i } })));
  await waitFor(async () => (await deadLetters('hoarder')).length === 3, 'three refused', 10_000);
  expect(new Set((await deadLetters('hoarder')).map((d) => d.reason))).toEqual(new Set(['tenant-backlog-full']));
  const usage = (await h.api('GET', '/api/v1/quotas/hoarder/usage', { token: ADMIN })).body;
  expect(usage.waiting.total).toBe(5);
  let ran = 0;
  h.worker('exec.attestor', async () => void ran++);
  await h.api('DELETE', `/api/v1/throttles/${throttle.body.id}`, { token: ADMIN });
  await waitFor(() => ran === 5, 'the five kept run');
});
