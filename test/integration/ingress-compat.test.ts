/**
 * Ingress behaves like a BullMQ queue to its producers, whatever consumes it (issue 11's contract):
 * add and addBulk, priorities and LIFO in BullMQ's order, delays that enter when due, a paused ingress
 * not consumed, getJobCounts, custom ids and deduplication at add, the `completed` events QueueEvents
 * and waitUntilFinished listen to, job schedulers. And every job option keeps its BullMQ meaning on
 * the other side of the gate (issue 12; the README's support matrix points here): options passed to
 * the execution job, retries, flows (the parent waits for its children's execution jobs and gets their
 * results), deduplication modes held for as long as BullMQ holds them, trace context. Plain BullMQ
 * producers, real Redis and Postgres, tollgate in-process.
 */
import { FlowProducer, QueueEvents, type Job } from 'bullmq';
import { parseApiTokens } from '../../src/config/tokens';
import { execJobId } from '../../src/redis/keys';
import { createHarness, type Harness, recordExecutions } from '../support/harness';
import { testRedis, waitFor } from '../support/services';

jest.setTimeout(60_000);

const ADMIN = 'admin-secret-0123456789';
let h: Harness;
let events: QueueEvents;
const connections: Array<ReturnType<typeof testRedis>> = [];
const connection = () => {
  const c = testRedis(h.env.redisUrl);
  connections.push(c);
  return c;
};
const executed = new Map<string, Job[]>();
const ran = (mark: string) => [...executed.values()].flat().filter((j) => j.data.mark === mark);

beforeAll(async () => {
  h = await createHarness('ingress-compat', { env: { apiTokens: parseApiTokens(`ops:${ADMIN}:admin`) } });
  await h.start();
  recordExecutions(h, executed, 20);
  events = new QueueEvents(h.config.queues.ingress, { connection: connection(), prefix: h.prefix });
  await events.waitUntilReady();
});
afterAll(async () => {
  await events.close();
  await h.close();
  for (const c of connections) c.disconnect();
});

/** Pauses ingress, runs `fill`, resumes: jobs added meanwhile are all in ingress at once. */
async function whilePaused(fill: () => Promise<unknown>): Promise<void> {
  await h.ingress.pause();
  try {
    await fill();
  } finally {
    await h.ingress.resume();
  }
}

it('add and addBulk: every job reaches its execution queue with its name and data', async () => {
  const one = await h.ingress.add('scan.image', { tenantId: 'acme', mark: 'add' });
  const bulk = await h.ingress.addBulk(Array.from({ length: 50 }, (_, i) => ({ name: 'policy.eval', data: { tenantId: `t${i % 5}`, i, mark: 'bulk' } })));
  await waitFor(() => (ran('add').length === 1 && ran('bulk').length === 50) || undefined, 'every job run');
  expect(ran('add')[0]!.id).toBe(execJobId(one.id!));
  expect(new Set(ran('bulk').map((j) => j.data.i))).toEqual(new Set(bulk.map((j) => j.data.i)));
});

it('a paused ingress is not consumed, and counts its jobs as waiting; resumed, it is', async () => {
  await h.ingress.pause();
  try {
    await h.ingress.addBulk(Array.from({ length: 5 }, (_, i) => ({ name: 'scan.image', data: { tenantId: 'acme', i, mark: 'paused' } })));
    await new Promise((r) => setTimeout(r, 700)); // several intake rounds' worth
    expect(ran('paused')).toHaveLength(0);
    expect(await h.ingress.getJobCounts('waiting', 'active', 'delayed', 'prioritized')).toEqual({ waiting: 5, active: 0, delayed: 0, prioritized: 0 });
  } finally {
    await h.ingress.resume();
  }
  await waitFor(() => ran('paused').length === 5 || undefined, 'the jobs to run once resumed');
  await waitFor(async () => {
    const c = await h.ingress.getJobCounts('waiting', 'active', 'delayed', 'prioritized', 'completed', 'failed');
    return Object.values(c).every((n) => n === 0) || undefined;
  }, 'ingress to count nothing once handled');
});

it('priorities, then LIFO, are taken in BullMQ order', async () => {
  // One slot on the attestor: the first job taken runs at once, the rest wait in the waiting place in
  // the order intake met them (each its own flow: the waiting place orders flows by arrival).
  expect((await h.api('PUT', '/api/v1/policies/attestor', { body: { kind: 'proportional', capacity: 1 }, token: ADMIN })).status).toBe(200);
  try {
    await whilePaused(async () => {
      for (const p of [5, 1, 3, 2, 4]) await h.ingress.add(`attest.p${p}`, { tenantId: 'prio', p, sleepMs: 30, mark: 'prio' }, { priority: p });
    });
    await waitFor(() => ran('prio').length === 5 || undefined, 'every prioritized job');
    expect(ran('prio').map((j) => j.data.p)).toEqual([1, 2, 3, 4, 5]);

    await whilePaused(async () => {
      for (const k of [1, 2, 3]) await h.ingress.add(`attest.l${k}`, { tenantId: 'lifo', k, sleepMs: 30, mark: 'lifo' }, { lifo: true });
    });
    await waitFor(() => ran('lifo').length === 3 || undefined, 'every lifo job');
    expect(ran('lifo').map((j) => j.data.k)).toEqual([3, 2, 1]);
  } finally {
    await h.api('PUT', '/api/v1/policies/attestor', { body: { kind: 'proportional', capacity: 20 }, token: ADMIN });
  }
});

it('a delayed job enters when due, not before', async () => {
  const added = Date.now();
  const job = await h.ingress.add('scan.image', { tenantId: 'acme', mark: 'delayed' }, { delay: 1200 });
  expect(await h.ingress.getJobState(job.id!)).toBe('delayed');
  await waitFor(() => ran('delayed').length === 1 || undefined, 'the delayed job to run');
  expect(ran('delayed')[0]!.timestamp - added).toBeGreaterThanOrEqual(1200);
});

it('custom ids and deduplication are applied at add: a second add of either is one job', async () => {
  await whilePaused(async () => {
    const a = await h.ingress.add('scan.image', { tenantId: 'acme', mark: 'custom' }, { jobId: 'compat-custom' });
    const b = await h.ingress.add('scan.image', { tenantId: 'acme', mark: 'custom' }, { jobId: 'compat-custom' });
    expect(b.id).toBe(a.id);
    const c = await h.ingress.add('scan.image', { tenantId: 'acme', mark: 'dedup' }, { deduplication: { id: 'compat-dedup' } });
    const d = await h.ingress.add('scan.image', { tenantId: 'acme', mark: 'dedup' }, { deduplication: { id: 'compat-dedup' } });
    expect(d.id).toBe(c.id);
  });
  await waitFor(() => (ran('custom').length === 1 && ran('dedup').length === 1) || undefined, 'one run each');
  await new Promise((r) => setTimeout(r, 300));
  expect([ran('custom').length, ran('dedup').length]).toEqual([1, 1]);
  expect(ran('custom')[0]!.id).toBe(execJobId('compat-custom'));
});

it("emits ingress 'completed' events: QueueEvents hears them and waitUntilFinished resolves", async () => {
  const heard: string[] = [];
  const onCompleted = ({ jobId }: { jobId: string }) => heard.push(jobId);
  events.on('completed', onCompleted);
  try {
    const job = await h.ingress.add('policy.eval', { tenantId: 'acme', mark: 'events' });
    await job.waitUntilFinished(events, 10_000);
    await waitFor(() => heard.includes(job.id!) || undefined, "the 'completed' event");
  } finally {
    events.off('completed', onCompleted);
  }
});

it('a job scheduler on ingress runs on schedule through the gate', async () => {
  await h.ingress.upsertJobScheduler('compat-every', { every: 300 }, { name: 'scan.image', data: { tenantId: 'acme', mark: 'scheduled' } });
  try {
    await waitFor(() => ran('scheduled').length >= 3 || undefined, 'three scheduled runs', 10_000);
  } finally {
    await h.ingress.removeJobScheduler('compat-every');
  }
});

describe('flows whose children pass through ingress', () => {
  /** A worker on `queue` that records when each parent ran and what its children returned. */
  function parents(queue: string) {
    const runs: Array<{ id: string; at: number; values: Record<string, unknown> }> = [];
    h.worker(queue, async (job) => {
      runs.push({ id: job.id!, at: Date.now(), values: await job.getChildrenValues() });
      return 'parent done';
    });
    return runs;
  }

  it("keep the parent waiting until the children's execution jobs finished, and give it their results", async () => {
    const runs = parents('compat-parents');
    const flows = new FlowProducer({ connection: connection(), prefix: h.prefix });
    try {
      const node = await flows.add({
        name: 'report',
        queueName: 'compat-parents',
        data: {},
        children: [
          { name: 'scan.image', queueName: h.config.queues.ingress, data: { tenantId: 'acme', mark: 'child-a', sleepMs: 300 } },
          { name: 'policy.eval', queueName: h.config.queues.ingress, data: { tenantId: 'acme', mark: 'child-b', sleepMs: 300 } },
        ],
      });
      await waitFor(() => runs.length === 1 || undefined, 'the parent to run');
      const children = [...ran('child-a'), ...ran('child-b')];
      expect(children).toHaveLength(2);
      // Not before either child's execution job finished (each slept 300 ms).
      for (const c of children) expect(runs[0]!.at).toBeGreaterThanOrEqual(c.timestamp + 300);
      expect(runs[0]!.id).toBe(node.job.id);
      // Keyed by the execution jobs, which stood in for the ingress jobs among the parent's dependencies.
      const values = runs[0]!.values;
      expect(Object.keys(values).sort()).toEqual(children.map((c) => `${h.prefix}:${c.queueName}:${c.id}`).sort());
      expect(Object.values(values)).toEqual([{ ok: true }, { ok: true }]);
    } finally {
      await flows.close();
    }
  });

  it('keep the parent waiting while a child waits in the waiting place; a dead-lettered child keeps it waiting, as a failed child would', async () => {
    const runs = parents('compat-parents-2');
    const flows = new FlowProducer({ connection: connection(), prefix: h.prefix });
    const pause = await h.api('POST', '/api/v1/throttles', { body: { tenantId: 'flowheld', action: 'pause' }, token: ADMIN });
    expect(pause.status).toBe(201);
    try {
      const held = await flows.add({
        name: 'held-report',
        queueName: 'compat-parents-2',
        data: {},
        children: [{ name: 'scan.image', queueName: h.config.queues.ingress, data: { tenantId: 'flowheld', mark: 'held-child' } }],
      });
      const orphaned = await flows.add({
        name: 'orphaned-report',
        queueName: 'compat-parents-2',
        data: {},
        children: [{ name: 'scan.image', queueName: h.config.queues.ingress, data: { mark: 'no-tenant-child' } }],
      });
      // Both children have left ingress: one waits, one is dead-lettered.
      await waitFor(async () => ((await h.intakeDone()) && (await h.queue('dead-letter').getJobs(['waiting'])).some((j) => j.data.job?.data?.mark === 'no-tenant-child')) || undefined, 'intake of both children');
      expect(await held.job.getState()).toBe('waiting-children');
      await h.api('DELETE', `/api/v1/throttles/${pause.body.id}`, { token: ADMIN });
      await waitFor(() => runs.length === 1 || undefined, 'the held child\'s parent to run');
      expect(runs[0]!.id).toBe(held.job.id);
      expect(Object.values(runs[0]!.values)).toEqual([{ ok: true }]);
      expect(await orphaned.job.getState()).toBe('waiting-children');
    } finally {
      await flows.close();
    }
  });

  it("apply the child's failure options to its execution job: failParentOnFailure fails the parent", async () => {
    parents('compat-parents-3');
    const flows = new FlowProducer({ connection: connection(), prefix: h.prefix });
    try {
      const node = await flows.add({
        name: 'fragile-report',
        queueName: 'compat-parents-3',
        data: {},
        children: [{ name: 'scan.image', queueName: h.config.queues.ingress, data: { tenantId: 'acme', mark: 'fragile-child', failAttempts: 1 }, opts: { failParentOnFailure: true } }],
      });
      await waitFor(async () => (await node.job.getState()) === 'failed' || undefined, 'the parent to fail with its child');
      expect(ran('fragile-child')).toHaveLength(1);
    } finally {
      await flows.close();
    }
  });

  it('take a parent added to ingress once its children are done, like any other job', async () => {
    h.worker('compat-kids', async () => 'kid done');
    const flows = new FlowProducer({ connection: connection(), prefix: h.prefix });
    try {
      await flows.add({
        name: 'scan.image',
        queueName: h.config.queues.ingress,
        data: { tenantId: 'acme', mark: 'parent-in-ingress' },
        children: [{ name: 'kid', queueName: 'compat-kids', data: {} }],
      });
      await waitFor(() => ran('parent-in-ingress').length === 1 || undefined, 'the parent to run through the gate');
    } finally {
      await flows.close();
    }
  });
});

it("the telemetry option's trace context and omitContext reach the execution job", async () => {
  // What a producer with BullMQ telemetry configured stores: the serialized context of its add span.
  const metadata = JSON.stringify({ traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' });
  await h.ingress.add('scan.image', { tenantId: 'acme', mark: 'traced' }, { telemetry: { metadata } });
  await h.ingress.add('scan.image', { tenantId: 'acme', mark: 'untraced' }, { telemetry: { omitContext: true } });
  await waitFor(() => (ran('traced').length === 1 && ran('untraced').length === 1) || undefined, 'both run');
  expect(ran('traced')[0]!.opts.telemetry).toEqual({ metadata });
  expect(ran('untraced')[0]!.opts.telemetry).toEqual({ omitContext: true });
});

describe('deduplication ids through the gate', () => {
  const runs = (mark: string) => ran(mark).length;

  it('a simple-mode id holds while its job waits and runs: duplicates are one job; once it ended, a new add runs', async () => {
    const dedup = { id: 'compat-hold' };
    const a = await h.ingress.add('scan.image', { tenantId: 'acme', mark: 'hold', sleepMs: 400 }, { deduplication: dedup });
    // Running now (its execution job is active): a duplicate is the same job, not a second run.
    await waitFor(async () => (await h.queue('exec.scanner').getJobState(execJobId(a.id!))) === 'active' || undefined, 'the first to run');
    const b = await h.ingress.add('scan.image', { tenantId: 'acme', mark: 'hold' }, { deduplication: dedup });
    expect(b.id).toBe(a.id);
    // Ended: the id is free again (as BullMQ frees it when its job completes), and a new add runs.
    await waitFor(async () => ((await h.ingress.getDeduplicationJobId(dedup.id)) === null && runs('hold') === 1) || undefined, 'the hold to end');
    const c = await h.ingress.add('scan.image', { tenantId: 'acme', mark: 'hold' }, { deduplication: dedup });
    expect(c.id).not.toBe(a.id);
    await waitFor(() => runs('hold') === 2 || undefined, 'the new job to run');

    // While waiting (its tenant paused), the id holds too; dead-lettered from the waiting place, it ends.
    const pause = await h.api('POST', '/api/v1/throttles', { body: { tenantId: 'dedup-held', action: 'pause' }, token: ADMIN });
    const late = { id: 'compat-hold-waiting' };
    const w = await h.ingress.add('scan.image', { tenantId: 'dedup-held', mark: 'hold-waiting', deadline: Date.now() + 1500 }, { deduplication: late });
    await waitFor(async () => (await h.intakeDone()) || undefined, 'intake');
    const w2 = await h.ingress.add('scan.image', { tenantId: 'dedup-held', mark: 'hold-waiting' }, { deduplication: late });
    expect(w2.id).toBe(w.id);
    await waitFor(async () => (await h.ingress.getDeduplicationJobId(late.id)) === null || undefined, 'the expired job to free its id', 10_000);
    await h.api('DELETE', `/api/v1/throttles/${pause.body.id}`, { token: ADMIN });
    await h.ingress.add('scan.image', { tenantId: 'dedup-held', mark: 'hold-waiting' }, { deduplication: late });
    await waitFor(() => runs('hold-waiting') === 1 || undefined, 'a new job with the freed id to run');
  });

  it('a TTL-mode id holds for its TTL, even after its job ended', async () => {
    const dedup = { id: 'compat-ttl', ttl: 1500 };
    const a = await h.ingress.add('scan.image', { tenantId: 'acme', mark: 'ttl' }, { deduplication: dedup });
    await waitFor(() => runs('ttl') === 1 || undefined, 'the first to run');
    const b = await h.ingress.add('scan.image', { tenantId: 'acme', mark: 'ttl' }, { deduplication: dedup });
    expect(b.id).toBe(a.id);
    await waitFor(async () => (await h.ingress.getDeduplicationJobId(dedup.id)) === null || undefined, 'the TTL to pass', 10_000);
    await h.ingress.add('scan.image', { tenantId: 'acme', mark: 'ttl' }, { deduplication: dedup });
    await waitFor(() => runs('ttl') === 2 || undefined, 'the new job to run');
  });
});

describe('job options on the execution job', () => {
  it("carry the producer's priority, lifo, retry and retention options; the job id derives from the ingress id", async () => {
    const opts = {
      priority: 7,
      attempts: 4,
      backoff: { type: 'fixed', delay: 25 },
      removeOnComplete: { count: 10 },
      removeOnFail: { age: 3600 },
      keepLogs: 5,
      stackTraceLimit: 3,
      sizeLimit: 4096,
    };
    const job = await h.ingress.add('scan.image', { tenantId: 'acme', mark: 'opts' }, opts);
    const lifo = await h.ingress.add('scan.image', { tenantId: 'acme', mark: 'opts-lifo' }, { lifo: true });
    await waitFor(() => (ran('opts').length === 1 && ran('opts-lifo').length === 1) || undefined, 'both run');
    const exec = ran('opts')[0]!;
    expect(exec.id).toBe(execJobId(job.id!));
    expect(exec.opts).toMatchObject(opts);
    expect(ran('opts-lifo')[0]!.opts.lifo).toBe(true);
    expect(ran('opts-lifo')[0]!.id).toBe(execJobId(lifo.id!));
  });

  it('attempts and backoff retry the execution job as BullMQ would', async () => {
    const job = await h.ingress.add('attest.retry', { tenantId: 'acme', mark: 'retry', failAttempts: 2 }, { attempts: 3, backoff: { type: 'fixed', delay: 200 } });
    const exec = () => h.queue('exec.attestor').getJob(execJobId(job.id!));
    await waitFor(async () => (await (await exec())?.getState()) === 'completed' || undefined, 'the third attempt to complete');
    const attempts = ran('retry');
    // Three runs, each after the backoff.
    expect(attempts).toHaveLength(3);
    expect(attempts[1]!.processedOn! - attempts[0]!.processedOn!).toBeGreaterThanOrEqual(190);
    expect(attempts[2]!.processedOn! - attempts[1]!.processedOn!).toBeGreaterThanOrEqual(190);
    expect((await exec())!.returnvalue).toEqual({ ok: true });
  });

  it('debounce (extend, replace) acts while the job is delayed in ingress: the last add is the one that runs', async () => {
    const dedup = { id: 'compat-debounce', ttl: 600, extend: true, replace: true };
    for (const v of [1, 2, 3]) await h.ingress.add('scan.image', { tenantId: 'acme', mark: 'debounce', v }, { delay: 600, deduplication: dedup });
    await waitFor(() => ran('debounce').length === 1 || undefined, 'the debounced job');
    await new Promise((r) => setTimeout(r, 700));
    expect(ran('debounce').map((j) => j.data.v)).toEqual([3]);
  });
});
