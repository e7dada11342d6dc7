/**
 * The gate's side of the ingress queue: claims batches of jobs straight from BullMQ's keys under a
 * lease (claimIngress-8.lua), gives a claim back for a later attempt, ends handled jobs as BullMQ
 * ends a completed job (finishIngress-6.lua), and waits on the queue's marker when there is nothing
 * to take, as a BullMQ worker does. Producers see a plain BullMQ queue: jobs wait, are prioritized or
 * delayed as BullMQ keeps them, and end with a 'completed' event.
 */
import { Job, raw2NextJobData, type Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Keys } from '../redis/keys';
import { scriptKeys } from '../redis/script-keys';
import { scriptsFor, type Scripts } from '../redis/scripts';

export interface Claim {
  jobs: Job[];
  /** The size of each job's data as stored (bytes of JSON), by job. */
  dataBytes: WeakMap<Job, number>;
  /** Each job's data as stored (JSON), passed on to its execution job unparsed. */
  rawData: WeakMap<Job, string>;
  /** When the earliest delayed job falls due (ms), if there is one. */
  nextDelayedAt?: number;
}

export class Ingress {
  private readonly scripts: Scripts;
  private readonly claims: string;
  private readonly prefix: string;

  constructor(
    private readonly redis: Redis,
    /** A connection of its own for the blocking wait on the marker. */
    private readonly blocking: Redis,
    readonly queue: Queue,
    private readonly keys: Keys,
  ) {
    this.scripts = scriptsFor(redis);
    this.claims = keys.ingressClaims(queue.name);
    this.prefix = queue.keys[''] ?? `${keys.prefix}:${queue.name}:`;
  }

  /**
   * A job scheduler's job: adds the scheduler's next job, as a BullMQ worker does when it takes one
   * (idempotent: the next job's id derives from the scheduler and its time). A failure is logged; the
   * job itself goes on.
   */
  async scheduleNext(job: Job, log: Logger): Promise<void> {
    try {
      const schedulers = await this.queue.jobScheduler;
      await schedulers.upsertJobScheduler(job.repeatJobKey!, (job.opts as { repeat?: object }).repeat ?? {}, job.name, job.data, job.opts, { override: false, producerId: job.id! });
    } catch (err) {
      log.warn({ err: (err as Error).message, jobId: job.id, scheduler: job.repeatJobKey }, "could not add the job scheduler's next job");
    }
  }

  /** Up to `max` jobs, in BullMQ's order, leased to this gate for `leaseMs` (expired claims first). */
  async claim(max: number, leaseMs: number, now = Date.now()): Promise<Claim> {
    const raw = await this.scripts.claimIngress(scriptKeys.claimIngress(this.keys, this.queue.name), [this.prefix, now, max, leaseMs]);
    const next = Number(raw[0]);
    const jobs: Job[] = [];
    const dataBytes = new WeakMap<Job, number>();
    const rawData = new WeakMap<Job, string>();
    for (let i = 1; i < raw.length; i += 2) {
      const id = String(raw[i]);
      // BullMQ's own decoding of a job hash (as its workers do after moveToActive).
      const [json] = raw2NextJobData([raw[i + 1], id, 0, 0]);
      const job = Job.fromJSON(this.queue, json!, id);
      dataBytes.set(job, Buffer.byteLength(json!.data, 'utf8'));
      rawData.set(job, json!.data);
      jobs.push(job);
    }
    return { jobs, dataBytes, rawData, ...(next >= 0 ? { nextDelayedAt: next } : {}) };
  }

  /** Gives claims back: each job may be claimed again (by any gate) from `at` (ms). */
  async release(ids: readonly string[], at: number): Promise<void> {
    if (ids.length === 0) return;
    await this.redis.zadd(this.claims, 'XX', ...ids.flatMap((id) => [at, id]));
  }

  /** Ends handled jobs: 'completed' events, their keys deleted (a flow's parent is the execution job's to tell). */
  async finish(jobs: readonly Job[], holds: ReadonlyMap<Job, string> = new Map(), now = Date.now()): Promise<number> {
    if (jobs.length === 0) return 0;
    const args: Array<string | number> = [this.prefix, now];
    for (const j of jobs) {
      const hold = holds.get(j);
      args.push(j.id!, j.deduplicationId ? (hold !== undefined ? `h:${hold}` : '1') : '');
    }
    return this.scripts.finishIngress(scriptKeys.finishIngress(this.keys, this.queue.name), args);
  }



  /** Waits until a job may be there to take (the marker a producer's add sets), or `ms` passed. */
  async waitForWork(ms: number): Promise<void> {
    const seconds = Math.max(0.01, Math.min(ms, 10_000) / 1000);
    // Bounded even while Redis is away (the command would wait for the reconnection).
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.blocking.bzpopmin(this.queue.keys.marker!, seconds.toFixed(3)),
      new Promise<void>((r) => (timer = setTimeout(r, ms + 250))),
    ]).finally(() => clearTimeout(timer));
  }

  /** Claims held now (by any gate): jobs taken from ingress and not ended yet. */
  async claimed(): Promise<number> {
    return this.redis.zcard(this.claims);
  }
}
