/**
 * A half-open breaker never wedges (issue 13), through real Redis, Postgres, the real observer and a
 * plain execution worker: with one probe allowed, a probe that ends in an error the breaker ignores, a
 * probe removed before it ran, a probe whose outcome never comes (its worker hangs) and a probe whose
 * completion event was lost each leave half-open within the bound (`halfOpenMaxMs`); the first two give
 * their permit to the next job.
 */
import type { Job } from 'bullmq';
import { parseApiTokens } from '../../src/config/tokens';
import { execJobId } from '../../src/redis/keys';
import { createHarness, type Harness } from '../support/harness';
import { testRedis, waitFor } from '../support/services';

jest.setTimeout(60_000);

const ADMIN = 'admin-secret-0123456789';
const HALF_OPEN_MAX_MS = 2000;
const breaker = { consecutiveFailures: 2, minimumCalls: 1000, openMs: 400, maxOpenMs: 400, jitter: 0, halfOpenProbes: 1, halfOpenMaxMs: HALF_OPEN_MAX_MS, replayRampMs: 0 };
let h: Harness;
const connections: Array<ReturnType<typeof testRedis>> = [];
const connection = () => {
  const c = testRedis(h.env.redisUrl);
  connections.push(c);
  return c;
};

beforeEach(async () => {
  h = await createHarness('breaker-half-open', {
    env: { apiTokens: parseApiTokens(`ops:${ADMIN}:admin`) },
    config: { downstreams: [{ name: 'scanner', capacity: 10, breaker }, { name: 'attestor', capacity: 10 }, { name: 'policy', capacity: 10 }] },
  });
  await h.start();
});
afterEach(async () => {
  await h.close();
  for (const c of connections.splice(0)) c.disconnect();
});

interface Transition {
  from: string;
  to: string;
  at: string;
  reason: string;
}
const breakerOf = async () => (await h.api('GET', '/api/v1/breakers/scanner', { token: ADMIN })).body as { state: string; transitions: Transition[] };

/** Runs scanner jobs by `data.act`: 'fail' (the downstream is down), 'ignored' (the job's own ValidationError), 'hang', else succeeds. */
function scanner() {
  const ran: Job[] = [];
  let release!: () => void;
  const hung = new Promise<void>((r) => (release = r));
  const worker = h.worker(
    'exec.scanner',
    async (job) => {
      ran.push(job);
      if (job.data.act === 'fail') throw new Error('scanner unavailable: connect ECONNREFUSED');
      if (job.data.act === 'ignored') {
        const err = new Error('the job is malformed');
        err.name = 'ValidationError';
        throw err;
      }
      if (job.data.act === 'hang') await hung;
      return 'ok';
    },
    { concurrency: 5 },
  );
  return { ran, worker, release: () => release() };
}

/** Trips the breaker (two failures) and waits until it is half-open; returns when it got there (ms). */
async function toHalfOpen(): Promise<number> {
  await h.ingress.addBulk([1, 2].map((i) => ({ name: 'scan.image', data: { tenantId: 'acme', act: 'fail', i } })));
  const b = await waitFor(async () => {
    const s = await breakerOf();
    return s.state === 'half-open' ? s : undefined;
  }, 'half-open', 10_000, 20);
  return Date.parse(b.transitions.find((t) => t.to === 'half-open')!.at);
}

/** When the breaker left half-open after `since`, and for where. */
async function leftHalfOpen(since: number): Promise<Transition> {
  return waitFor(async () => (await breakerOf()).transitions.find((t) => t.from === 'half-open' && Date.parse(t.at) >= since), 'the breaker to leave half-open', 10_000, 20);
}

it('a probe ending in an ignored error gives its permit back: the next job probes and closes the breaker', async () => {
  const s = scanner();
  const halfOpenAt = await toHalfOpen();
  await h.ingress.add('scan.image', { tenantId: 'acme', act: 'ignored', mark: 'probe' });
  await h.ingress.add('scan.image', { tenantId: 'acme', mark: 'next' });
  const left = await leftHalfOpen(halfOpenAt);
  expect(left).toMatchObject({ to: 'closed' });
  expect(Date.parse(left.at) - halfOpenAt).toBeLessThan(HALF_OPEN_MAX_MS);
  expect(s.ran.map((j) => j.data.mark ?? j.data.act)).toEqual(['fail', 'fail', 'probe', 'next']);
});

it('a probe removed before it ran gives its permit back', async () => {
  const first = scanner();
  const halfOpenAt = await toHalfOpen();
  // No worker now: the probe waits in its execution queue, and is removed there.
  await first.worker.close();
  const probe = await h.ingress.add('scan.image', { tenantId: 'acme', mark: 'removed-probe' });
  const exec = await waitFor(() => h.queue('exec.scanner').getJob(execJobId(probe.id!)).then((j) => j ?? undefined), 'the probe to be admitted');
  await h.ingress.add('scan.image', { tenantId: 'acme', mark: 'next' });
  await exec.remove();
  const s = scanner();
  const left = await leftHalfOpen(halfOpenAt);
  expect(left).toMatchObject({ to: 'closed' });
  expect(Date.parse(left.at) - halfOpenAt).toBeLessThan(HALF_OPEN_MAX_MS);
  expect(s.ran.map((j) => j.data.mark)).toContain('next');
  expect(s.ran.map((j) => j.data.mark)).not.toContain('removed-probe');
});

it('a probe whose outcome never comes reopens the breaker at the bound, and it probes afresh after the open time', async () => {
  const s = scanner();
  const halfOpenAt = await toHalfOpen();
  await h.ingress.add('scan.image', { tenantId: 'acme', act: 'hang', mark: 'hung-probe' });
  await h.ingress.add('scan.image', { tenantId: 'acme', mark: 'next' });
  const left = await leftHalfOpen(halfOpenAt);
  expect(left.to).toBe('open');
  expect(left.reason).toMatch(/without a verdict/);
  const waited = Date.parse(left.at) - halfOpenAt;
  expect(waited).toBeGreaterThanOrEqual(HALF_OPEN_MAX_MS);
  expect(waited).toBeLessThan(HALF_OPEN_MAX_MS + 1000);
  // Half-open again after the open time: the waiting job is the new probe, and it closes the breaker.
  const closed = await waitFor(async () => (await breakerOf()).transitions.find((t) => t.to === 'closed' && Date.parse(t.at) > Date.parse(left.at)), 'the breaker to close', 10_000, 20);
  expect(closed.from).toBe('half-open');
  expect(s.ran.map((j) => j.data.mark)).toContain('next');
  s.release();
});

it('a probe whose completion event was lost (it ended, no event reached the stream) reopens the breaker at the bound', async () => {
  const first = scanner();
  const halfOpenAt = await toHalfOpen();
  await first.worker.close();
  const probe = await h.ingress.add('scan.image', { tenantId: 'acme', mark: 'lost-event-probe' });
  const id = execJobId(probe.id!);
  await waitFor(() => h.queue('exec.scanner').getJob(id).then((j) => j ?? undefined), 'the probe to be admitted');
  // It ends without its event: moved to completed by hand, as a worker would, but with no XADD (an event
  // stream trimmed or lost before the observer read it).
  const q = h.queue('exec.scanner');
  const redis = connection();
  const now = Date.now();
  await redis.multi().lrem(q.toKey('wait'), 0, id).zadd(q.toKey('completed'), now, id).hset(q.toKey(id), 'finishedOn', now, 'returnvalue', '"ok"').exec();
  const left = await leftHalfOpen(halfOpenAt);
  expect(left).toMatchObject({ to: 'open' });
  expect(left.reason).toMatch(/without a verdict/);
  const waited = Date.parse(left.at) - halfOpenAt;
  expect(waited).toBeGreaterThanOrEqual(HALF_OPEN_MAX_MS);
  expect(waited).toBeLessThan(HALF_OPEN_MAX_MS + 1000);
});
