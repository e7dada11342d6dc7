/**
 * Backlog and starvation alerts against real Redis and Postgres: a tenant kept waiting behind another
 * tenant's long job on a downstream of capacity 1 opens both, and both resolve once it is served.
 */
import type { Job } from 'bullmq';
import { createHarness, type Harness } from '../support/harness';
import { waitFor } from '../support/services';

let h: Harness;
let release: () => void = () => undefined;
const held = new Promise<void>((r) => (release = r));

beforeAll(async () => {
  h = await createHarness('alertsbacklog', {
    config: {
      alerts: { evaluateIntervalMs: 100, backlogPercent: 50 },
      tenantLimits: { maxWaiting: 10, onBacklogFull: 'keep' },
      observer: { blockMs: 200, reconcileIntervalMs: 500, reconcileMinAgeMs: 1000, claimIdleMs: 1000, syncIntervalMs: 500, starvationMs: 1000 },
      downstreams: [
        { name: 'scanner', capacity: 50 },
        { name: 'attestor', capacity: 20 },
        { name: 'policy', capacity: 1 },
      ],
    },
  });
  await h.start();
  h.worker('exec.policy', async (job: Job) => {
    if (job.data.tenantId === 'hog') await held;
  });
});
afterAll(async () => {
  release();
  await h.close();
});

const alertsOf = async (kind: string) => (await h.api('GET', `/api/v1/alerts?tenantId=pile&kind=${kind}`)).body.items as any[];

it('opens backlog and starvation alerts for a tenant kept waiting, and resolves them once it is served', async () => {
  await h.ingress.add('policy.eval', { tenantId: 'hog' });
  await waitFor(async () => (await h.queue('exec.policy').getActiveCount()) === 1, 'the hog running');
  await h.ingress.addBulk(Array.from({ length: 6 }, (_, i) => ({ name: 'policy.eval', data: { tenantId: 'pile', i } })));
  await waitFor(async () => (await alertsOf('backlog')).length === 1, 'backlog alert', 10_000);
  const [backlog] = await alertsOf('backlog');
  expect(backlog).toMatchObject({ state: 'open', downstream: 'policy', threshold: 50, detail: { waiting: 6, maxWaiting: 10 } });
  expect(backlog.value).toBe(60);
  await waitFor(async () => (await alertsOf('starvation')).length === 1, 'starvation alert', 10_000);
  const [starving] = await alertsOf('starvation');
  expect(starving).toMatchObject({ state: 'open', downstream: 'policy', threshold: 1000 });
  // Opened only after observer.starvationMs without service.
  expect(starving.value).toBeGreaterThanOrEqual(1000);
  release();
  await waitFor(async () => (await alertsOf('starvation'))[0].state === 'resolved' && (await alertsOf('backlog'))[0].state === 'resolved', 'both resolved', 15_000);
  expect((await alertsOf('backlog')).length).toBe(1);
  expect((await alertsOf('starvation')).length).toBe(1);
});
