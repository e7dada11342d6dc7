/**
 * waitForExecution, the producer's replacement for waitUntilFinished across the gate: it settles with
 * what the execution job did (its return value, its failure) or with why the job never ran (its
 * dead-letter code and reason), however the job got there (admitted at once, after waiting, removed
 * on completion), and gives up at its timeout. Plain BullMQ producer and workers, real Redis and
 * Postgres, tollgate in-process.
 */
import { parseApiTokens } from '../../src/config/tokens';
import { TollgateError } from '../../src/errors';
import { waitForExecution } from '../../src/wait';
import { createHarness, type Harness } from '../support/harness';

jest.setTimeout(60_000);

const ADMIN = 'admin-secret-0123456789';
let h: Harness;

beforeAll(async () => {
  h = await createHarness('wait-exec', { env: { apiTokens: parseApiTokens(`ops:${ADMIN}:admin`) } });
  await h.start();
  h.worker('exec.scanner', async (job) => {
    if (job.data.fail) throw new Error(`scanner said no to ${job.data.mark}`);
    return { mark: job.data.mark, doubled: job.data.n * 2 };
  });
  h.worker('exec.policy', async (job) => ({ mark: job.data.mark }));
});
afterAll(async () => {
  await h.close();
});

async function rejection(p: Promise<unknown>): Promise<TollgateError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(TollgateError);
    return err as TollgateError;
  }
  throw new Error('expected a rejection, got a value');
}

it("resolves with the execution job's return value, kept or removed on completion", async () => {
  const kept = await h.ingress.add('scan.image', { tenantId: 'acme', mark: 'kept', n: 2 });
  const removed = await h.ingress.add('scan.image', { tenantId: 'acme', mark: 'removed', n: 21 }, { removeOnComplete: true });
  await expect(waitForExecution(kept, { timeoutMs: 10_000 })).resolves.toEqual({ mark: 'kept', doubled: 4 });
  await expect(waitForExecution(removed, { timeoutMs: 10_000 })).resolves.toEqual({ mark: 'removed', doubled: 42 });
  // Late, long after it ended, and by id with the ingress queue.
  await expect(waitForExecution(removed.id!, { queue: h.ingress, timeoutMs: 10_000 })).resolves.toEqual({ mark: 'removed', doubled: 42 });
});

it("rejects with the worker's failure once the attempts are spent", async () => {
  const job = await h.ingress.add('scan.image', { tenantId: 'acme', mark: 'doomed', fail: true }, { attempts: 2, removeOnFail: true });
  const err = await rejection(waitForExecution(job, { timeoutMs: 10_000 }));
  expect(err.code).toBe('TG_ERR_EXECUTION_FAILED');
  expect(err.message).toBe('scanner said no to doomed');
});

it('rejects with the dead-letter code and reason of a job the gate refused', async () => {
  const job = await h.ingress.add('scan.image', { mark: 'anonymous' });
  const err = await rejection(waitForExecution(job, { timeoutMs: 10_000 }));
  expect(err.code).toBe('TG_ERR_MISSING_TENANT');
  expect(err.details).toMatchObject({ reason: 'missing-tenant', ingressJobId: job.id });
});

it('waits while the job waits (a paused tenant), resolves once it ran, and times out meanwhile', async () => {
  const pause = await h.api('POST', '/api/v1/throttles', { body: { tenantId: 'held', action: 'pause' }, token: ADMIN });
  expect(pause.status).toBe(201);
  const job = await h.ingress.add('policy.eval', { tenantId: 'held', mark: 'held' });
  const timedOut = await rejection(waitForExecution(job, { timeoutMs: 300 }));
  expect(timedOut.code).toBe('TG_ERR_WAIT_TIMEOUT');
  expect(timedOut.details).toMatchObject({ state: 'waiting' });
  const result = waitForExecution(job, { timeoutMs: 10_000 });
  await h.api('DELETE', `/api/v1/throttles/${pause.body.id}`, { token: ADMIN });
  await expect(result).resolves.toEqual({ mark: 'held' });
});

it('tells a reused custom id\'s jobs apart: each call settles with its own job\'s result', async () => {
  const first = await h.ingress.add('scan.image', { tenantId: 'acme', mark: 'first', n: 1 }, { jobId: 'nightly-report' });
  await expect(waitForExecution(first, { timeoutMs: 10_000 })).resolves.toEqual({ mark: 'first', doubled: 2 });
  const second = await h.ingress.add('scan.image', { tenantId: 'acme', mark: 'second', n: 5 }, { jobId: 'nightly-report' });
  await expect(waitForExecution(second, { timeoutMs: 10_000 })).resolves.toEqual({ mark: 'second', doubled: 10 });
  await expect(waitForExecution(first, { timeoutMs: 10_000 })).resolves.toEqual({ mark: 'first', doubled: 2 });
});
