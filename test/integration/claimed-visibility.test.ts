/**
 * A job a gate has claimed from ingress, while its batch is decided, is in none of BullMQ's states: it
 * must still be found where it is. The gate is slowed at its `gate.after-claim` step (a failpoint
 * delay) so the window is long enough to look into; real Redis and Postgres, tollgate in-process.
 */
import type { Job } from 'bullmq';
import { parseApiTokens } from '../../src/config/tokens';
import { Keys } from '../../src/redis/keys';
import { createHarness, type Harness, recordExecutions } from '../support/harness';
import { waitFor } from '../support/services';

jest.setTimeout(60_000);

const ADMIN = 'admin-secret-0123456789';
let h: Harness;
const executed = new Map<string, Job[]>();

afterAll(async () => {
  await h?.close();
});

it('shows a claimed ingress job as in ingress, state claimed, then runs it', async () => {
  h = await createHarness('claimed-visibility', { env: { apiTokens: parseApiTokens(`ops:${ADMIN}:admin`), failpoints: 'gate.after-claim=delay:1500' } });
  await h.start();
  recordExecutions(h, executed, 10);
  const job = await h.ingress.add('scan.image', { tenantId: 'acme', mark: 'claimed' });
  const claims = new Keys(h.prefix).ingressClaims(h.config.queues.ingress);
  await waitFor(async () => (await h.redis.zscore(claims, job.id!)) !== null || undefined, 'the gate to claim the job');
  const counts = await h.ingress.getJobCounts('waiting', 'prioritized', 'active', 'delayed');
  expect(counts).toEqual({ waiting: 0, prioritized: 0, active: 0, delayed: 0 });
  const res = await h.api('GET', `/api/v1/jobs/${job.id}`, { token: ADMIN });
  expect(res.status).toBe(200);
  expect(res.body).toMatchObject({ id: job.id, place: 'ingress', state: 'claimed', queue: h.config.queues.ingress });
  await waitFor(() => (executed.get('exec.scanner') ?? []).some((j) => j.data.mark === 'claimed') || undefined, 'the job to run');
  expect(await h.intakeDone()).toBe(true);
});
