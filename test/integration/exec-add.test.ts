/**
 * The gate's batched execution add (addExec-11.lua through addExecJobs) writes what BullMQ's own
 * Queue.add writes: the same job hash, the same place in the queue (wait list, LIFO, prioritized set,
 * a paused queue), the same events, the same deduplication and duplicate handling, and a plain
 * Worker gets the same job. Each case adds one job both ways, to twin queues, and compares.
 */
import { Worker, type Job, type JobsOptions } from 'bullmq';
import { addExecJob, addExecJobs, storedJobOpts } from '../../src/queues/exec-add';
import { execOptions } from '../../src/queues/exec-options';
import { Topology } from '../../src/queues/topology';
import { jobKey } from '../../src/redis/keys';
import { cleanupPrefix, testConfig, testRedis, uniquePrefix } from '../support/services';

jest.setTimeout(30_000);

const redis = testRedis();
const prefix = uniquePrefix('execadd');
const config = testConfig({
  downstreams: [
    { name: 'via-queue', capacity: 10 },
    { name: 'via-batch', capacity: 10 },
  ],
  routing: { rules: [{ jobName: '*', downstream: 'via-queue' }] },
} as never);
const topologyRedis = testRedis();
const topology = new Topology(config, prefix, topologyRedis);
const byQueue = topology.execQueue('via-queue');
const byBatch = topology.execQueue('via-batch');
let n = 0;

afterAll(async () => {
  await topology.close();
  await cleanupPrefix(redis, prefix);
  redis.disconnect();
  topologyRedis.disconnect();
});

/** The job's id and options as the gate makes them for ingress job `ingressId`. */
function exec(ingressId: string, producer: JobsOptions): JobsOptions {
  return execOptions(jobKey(ingressId, '1700000000000'), producer, 60_000);
}

async function hash(queue: string, id: string): Promise<Record<string, string>> {
  const h = await redis.hgetall(`${prefix}:${queue}:${id}`);
  delete h.timestamp;
  return h;
}

async function events(queue: string): Promise<Array<Record<string, string>>> {
  const entries = await redis.xrange(`${prefix}:${queue}:events`, '-', '+');
  return entries.map(([, f]) => {
    const o: Record<string, string> = {};
    for (let i = 0; i < f.length; i += 2) o[f[i]!] = f[i + 1]!;
    return o;
  });
}

async function place(queue: string): Promise<Record<string, unknown>> {
  const k = (s: string) => `${prefix}:${queue}:${s}`;
  return {
    wait: await redis.lrange(k('wait'), 0, -1),
    prioritized: await redis.zrange(k('prioritized'), '0', '-1', 'WITHSCORES'),
    marker: await redis.zcard(k('marker')),
    counts: await topology.exec.get(queue === byQueue.name ? 'via-queue' : 'via-batch')!.getJobCounts(),
  };
}

/** Adds the same job both ways; returns both exec job ids' hashes. */
async function both(name: string, data: unknown, producer: JobsOptions): Promise<void> {
  const id = `j${++n}`;
  const opts = exec(id, producer);
  await addExecJob(topology, byQueue, name, data, opts, id);
  const errors = await addExecJobs(topology, byBatch, [{ name, data, rawData: JSON.stringify(data), opts, ingressJobId: id }]);
  expect(errors).toEqual([undefined]);
  expect(await hash(byBatch.name, opts.jobId!)).toEqual(await hash(byQueue.name, opts.jobId!));
}

async function reset(): Promise<void> {
  for (const q of [byQueue, byBatch]) {
    await q.obliterate({ force: true });
  }
}

describe('the batched execution add writes what Queue.add writes', () => {
  beforeEach(reset);

  const cases: Array<[string, JobsOptions]> = [
    ['no options', {}],
    ['retries with a numeric backoff', { attempts: 4, backoff: 250 }],
    ['an exponential backoff with jitter', { attempts: 2, backoff: { type: 'exponential', delay: 100, jitter: 0.5 } }],
    ['retention options', { removeOnComplete: { age: 60, count: 5 }, removeOnFail: 3, keepLogs: 7, stackTraceLimit: 2 }],
    ['a priority', { priority: 7 }],
    ['LIFO', { lifo: true }],
    ['trace context', { telemetry: { metadata: '{"traceparent":"00-abc-def-01"}', omitContext: true } }],
    ['a size limit it fits', { sizeLimit: 10_000 }],
  ];
  it.each(cases)('%s: same hash, same place, same events', async (_label, producer) => {
    await both('scan.image', { tenantId: 'acme', nested: { a: [1, 2.5, 'x'], u: 'ünï' } }, producer);
    await both('scan.image', { tenantId: 'acme', seq: 2 }, producer);
    expect(await place(byBatch.name)).toEqual(await place(byQueue.name));
    const strip = (e: Array<Record<string, string>>) => e.map(({ jobId: _j, ...rest }) => rest);
    expect(strip(await events(byBatch.name))).toEqual(strip(await events(byQueue.name)));
  });

  it('a paused queue keeps the job waiting without a marker, as BullMQ does', async () => {
    await byQueue.pause();
    await byBatch.pause();
    await both('scan.image', { tenantId: 'acme' }, {});
    expect(await place(byBatch.name)).toEqual(await place(byQueue.name));
    expect((await place(byBatch.name)).marker).toBe(0);
    await byQueue.resume();
    await byBatch.resume();
  });

  it('a repeated add is a no-op, before and after the job ran and was removed', async () => {
    const id = `j${++n}`;
    const opts = exec(id, { removeOnComplete: true });
    const item = { name: 'scan.image', data: { tenantId: 'acme' }, opts, ingressJobId: id };
    expect(await addExecJobs(topology, byBatch, [item, item])).toEqual([undefined, undefined]);
    expect(await byBatch.getWaitingCount()).toBe(1);
    const ran: Job[] = [];
    const worker = new Worker(byBatch.name, async (job) => void ran.push(job), { connection: testRedis(), prefix });
    await new Promise<void>((resolve) => worker.on('completed', () => resolve()));
    await worker.close();
    expect(await redis.exists(`${prefix}:${byBatch.name}:${opts.jobId}`)).toBe(0);
    // The deduplication key outlives the removed job: adding again adds nothing.
    expect(await addExecJobs(topology, byBatch, [item])).toEqual([undefined]);
    expect(await byBatch.getWaitingCount()).toBe(0);
    expect(ran.map((j) => [j.name, j.data, j.opts.attempts, j.opts.jobId])).toEqual([['scan.image', { tenantId: 'acme' }, 0, opts.jobId]]);
  });

  it('a worker gets the same job either way', async () => {
    const producer: JobsOptions = { attempts: 3, backoff: { type: 'fixed', delay: 10 }, priority: 3, removeOnFail: 10 };
    await both('attest.sbom', { tenantId: 't1', payload: 'x'.repeat(300) }, producer);
    const seen = new Map<string, Job>();
    const workers = [byQueue, byBatch].map((q) => new Worker(q.name, async (job) => void seen.set(q.name, job), { connection: testRedis(), prefix }));
    while (seen.size < 2) await new Promise((r) => setTimeout(r, 20));
    await Promise.all(workers.map((w) => w.close()));
    const view = (j: Job) => ({ name: j.name, data: j.data, opts: j.opts, priority: j.priority, attemptsMade: j.attemptsMade });
    expect(view(seen.get(byBatch.name)!)).toEqual(view(seen.get(byQueue.name)!));
  });

  it('a job BullMQ refuses fails alone; the rest of the batch is added', async () => {
    const ids = [`j${++n}`, `j${++n}`, `j${++n}`];
    const items = ids.map((id, i) => ({
      name: 'scan.image',
      data: { tenantId: 'acme', i },
      opts: exec(id, i === 1 ? { priority: 1.5 } : {}),
      ingressJobId: id,
    }));
    const errors = await addExecJobs(topology, byBatch, items);
    expect(errors[0]).toBeUndefined();
    expect((errors[1] as Error).message).toMatch(/Priority should not be float/);
    expect(errors[2]).toBeUndefined();
    expect(await byBatch.getWaitingCount()).toBe(2);
  });

  it('stores options in BullMQ\'s short form', () => {
    expect(JSON.parse(storedJobOpts({ jobId: 'x', deduplication: { id: 'x', ttl: 5 }, keepLogs: 2, backoff: 5 }))).toEqual({
      attempts: 0,
      jobId: 'x',
      de: { id: 'x', ttl: 5 },
      kl: 2,
      backoff: { type: 'fixed', delay: 5 },
    });
  });
});
