/**
 * The BullMQ queues of a tollgate installation, built from config: ingress, one execution queue per
 * downstream, dead-letter. Owns the Queue objects (closed by `close()`), not the Redis connection.
 */
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Config, DownstreamConfig } from '../config/file';

export class Topology {
  readonly ingress: Queue;
  readonly deadLetter: Queue;
  readonly exec = new Map<string, Queue>();
  readonly downstreams = new Map<string, DownstreamConfig>();

  constructor(
    readonly config: Config,
    readonly prefix: string,
    private readonly connection: Redis,
  ) {
    const opts = { connection, prefix };
    this.ingress = new Queue(config.queues.ingress, opts);
    this.deadLetter = new Queue(config.queues.deadLetter, opts);
    for (const d of config.downstreams) {
      this.downstreams.set(d.name, d);
      // A longer event stream than BullMQ's default gives the observer more slack across outages.
      this.exec.set(d.name, new Queue(d.queue, { ...opts, streams: { events: { maxLen: config.observer.eventsMaxLen } } }));
    }
  }

  execQueue(downstream: string): Queue {
    const q = this.exec.get(downstream);
    if (!q) throw new Error(`no execution queue for downstream "${downstream}"`);
    return q;
  }

  /** Which of these jobs already exist in their queues (one round trip). */
  async jobsExist(items: ReadonlyArray<{ queue: Queue; jobId: string }>): Promise<boolean[]> {
    if (items.length === 0) return [];
    const pipe = this.connection.pipeline();
    for (const it of items) pipe.exists(it.queue.toKey(it.jobId));
    const res = (await pipe.exec()) ?? [];
    return res.map(([err, n]: [Error | null, unknown]) => {
      if (err) throw err;
      return n === 1;
    });
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
