/**
 * The BullMQ queues of a tollgate installation, built from config: ingress, one execution queue per
 * downstream, dead-letter. Owns the Queue objects (closed by `close()`), not the Redis connection.
 */
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Config, DownstreamConfig } from '../config/file';
import { execJobId, jobKey, Keys } from '../redis/keys';
import { scriptKeys } from '../redis/script-keys';
import { scriptsFor } from '../redis/scripts';

export class Topology {
  readonly ingress: Queue;
  readonly deadLetter: Queue;
  readonly exec = new Map<string, Queue>();
  readonly downstreams = new Map<string, DownstreamConfig>();
  readonly keys: Keys;

  constructor(
    readonly config: Config,
    readonly prefix: string,
    /** The connection of its queues (BullMQ's adds, and tollgate's scripts on their keys). */
    readonly connection: Redis,
    /**
     * Where the queues' 'error' events go. BullMQ re-emits its connection's errors on every Queue and,
     * with no listener, prints each one's raw stack trace to stderr; the connection's own listener
     * (redis/connection.ts) already logs the outage once, so these go to debug.
     */
    log?: Pick<Logger, 'debug'>,
  ) {
    const opts = { connection, prefix };
    this.keys = new Keys(prefix);
    // tollgate's scripts are defined on the connection before anything uses it: ioredis copies a
    // client's scripts into each auto-pipeline when it opens one, so a script defined while one is open
    // is missing from it (the call fails, and the pipeline's other callbacks are lost).
    scriptsFor(connection);
    this.ingress = new Queue(config.queues.ingress, opts);
    this.deadLetter = new Queue(config.queues.deadLetter, opts);
    for (const d of config.downstreams) {
      this.downstreams.set(d.name, d);
      // A longer event stream than BullMQ's default gives the observer more slack across outages.
      this.exec.set(d.name, new Queue(d.queue, { ...opts, streams: { events: { maxLen: config.observer.eventsMaxLen } } }));
    }
    for (const q of [this.ingress, this.deadLetter, ...this.exec.values()]) {
      q.on('error', (err: Error) => log?.debug({ err: err.message, queue: q.name }, 'queue connection error'));
    }
  }

  execQueue(downstream: string): Queue {
    const q = this.exec.get(downstream);
    if (!q) throw new Error(`no execution queue for downstream "${downstream}"`);
    return q;
  }

  /**
   * A flow's child whose execution job was just added with the child's parent: the parent's dependency
   * on the ingress job is dropped, the execution job's stands in its place (detachChild-1.lua).
   */
  async detachIngressChild(parent: { id: string; queue: string }, ingressJobId: string): Promise<void> {
    const parentKey = `${parent.queue}:${parent.id}`;
    await scriptsFor(this.connection).detachChild(scriptKeys.detachChild(this.keys, parentKey), [parentKey, parent.queue, parent.id, this.ingress.toKey(ingressJobId), Date.now()]);
  }

  /**
   * Whether a flow child's execution job already ended as the parent's dependency (its value or failure
   * is recorded on the parent): an add repeated after the job ran and was removed must not run it
   * again. (Children's execution jobs carry no deduplication key, which BullMQ refuses beside a parent.)
   */
  async childEnded(parent: { id: string; queue: string }, queue: Queue, jobId: string): Promise<boolean> {
    const parentKey = `${parent.queue}:${parent.id}`;
    const childKey = queue.toKey(jobId);
    const res = (await this.connection
      .pipeline()
      .hexists(`${parentKey}:processed`, childKey)
      .hexists(`${parentKey}:failed`, childKey)
      .zscore(`${parentKey}:unsuccessful`, childKey)
      .exec()) ?? [];
    return res.some(([err, v]: [Error | null, unknown]) => {
      if (err) throw err;
      return v === 1 || (v !== null && v !== 0);
    });
  }

  /** The hash of simple-mode deduplication ids held for ingress jobs in flight (Keys.ingressHeldDedup). */
  get heldDedupKey(): string {
    return this.keys.ingressHeldDedup(this.ingress.name);
  }

  /** Ends the hold of the deduplication ids of these jobs (by job key), which ended (releaseDedup-1.lua). */
  async releaseHeldDedup(keys: readonly string[]): Promise<number> {
    if (keys.length === 0) return 0;
    return scriptsFor(this.connection).releaseDedup(scriptKeys.releaseDedup(this.keys, this.ingress.name), [this.ingress.toKey(''), ...keys]);
  }

  /**
   * Which of these jobs already exist in their queues: one pipeline per queue (a pipeline stays in one
   * slot on Redis Cluster, and each queue has its own), sent together.
   */
  async jobsExist(items: ReadonlyArray<{ queue: Queue; jobId: string }>): Promise<boolean[]> {
    if (items.length === 0) return [];
    const byQueue = new Map<Queue, number[]>();
    items.forEach((it, i) => {
      const list = byQueue.get(it.queue);
      if (list) list.push(i);
      else byQueue.set(it.queue, [i]);
    });
    const out: boolean[] = items.map(() => false);
    await Promise.all(
      [...byQueue].map(async ([queue, at]) => {
        const pipe = this.connection.pipeline();
        for (const i of at) pipe.exists(queue.toKey(items[i]!.jobId));
        const res = (await pipe.exec()) ?? [];
        res.forEach(([err, n]: [Error | null, unknown], k) => {
          if (err) throw err;
          out[at[k]!] = n === 1;
        });
      }),
    );
    return out;
  }

  /**
   * For ingress ids that may be reused (custom ids: BullMQ's own are numbers), whether an execution
   * (when `execQueue` is given) or dead-letter job already holds the id of the id's first instance;
   * undefined for BullMQ's numbers (not looked up). See includes/instance.lua.
   */
  async firstInstancesTaken(ids: readonly string[], execQueue?: Queue): Promise<Array<boolean | undefined>> {
    const checks: Array<{ queue: Queue; jobId: string }> = [];
    const at: number[] = [];
    ids.forEach((id, i) => {
      if (/^\d+$/.test(id)) return;
      const jobId = execJobId(jobKey(id));
      at.push(i);
      checks.push({ queue: this.deadLetter, jobId });
      if (execQueue) checks.push({ queue: execQueue, jobId });
    });
    const out: Array<boolean | undefined> = ids.map(() => undefined);
    if (checks.length === 0) return out;
    const exists = await this.jobsExist(checks);
    const per = execQueue ? 2 : 1;
    at.forEach((i, k) => (out[i] = exists.slice(k * per, (k + 1) * per).some(Boolean)));
    return out;
  }

  /** Every queue with its role, in a stable order. */
  all(): Array<{ role: 'ingress' | 'exec' | 'dead-letter'; downstream?: string; queue: Queue }> {
    return [
      { role: 'ingress', queue: this.ingress },
      ...[...this.exec].map(([downstream, queue]) => ({ role: 'exec' as const, downstream, queue })),
      { role: 'dead-letter', queue: this.deadLetter },
    ];
  }

  async close(): Promise<void> {
    await Promise.all(this.all().map((q) => q.queue.close()));
  }
}
