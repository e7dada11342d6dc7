/**
 * Runs adaptive capacity for the downstreams that declare it: every interval, one observer (a Redis
 * lock decides which) feeds the outcomes since the last round to the AIMD rule (src/core/aimd.ts)
 * and writes the new capacity where the scheduler reads it. A raise wakes the schedulers.
 */
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { nextCapacity, type Outcome } from '../core/aimd';
import type { DownstreamConfig } from '../config/file';
import type { Metrics } from '../observability/metrics';
import type { Governance } from '../redis/governance';

export class AdaptiveCapacity {
  private timers: NodeJS.Timeout[] = [];
  private readonly holder = `${process.pid}:${Math.random().toString(36).slice(2, 8)}`;

  constructor(
    private readonly redis: Redis,
    private readonly governance: Governance,
    private readonly downstreams: readonly DownstreamConfig[],
    private readonly log: Logger,
    private readonly metrics: Metrics,
    private readonly now: () => number = Date.now,
  ) {}

  async start(): Promise<void> {
    const k = this.governance.keys;
    for (const d of this.downstreams) {
      if (!d.adaptive) {
        await this.redis.del(k.downstream(d.name, 'adaptiveOn'), k.downstream(d.name, 'adaptiveCapacity'));
        continue;
      }
      await this.redis.set(k.downstream(d.name, 'adaptiveOn'), '1');
      const t = setInterval(() => void this.round(d).catch((err: Error) => this.log.warn({ err: err.message, downstream: d.name }, 'adaptive capacity round failed')), d.adaptive.intervalMs);
      t.unref();
      this.timers.push(t);
    }
  }

  close(): void {
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
  }

  /** One AIMD step for `d`, if this process holds the round's lock. Returns the new capacity. */
  async round(d: DownstreamConfig): Promise<number | undefined> {
    const cfg = d.adaptive!;
    const k = this.governance.keys;
    const got = await this.redis.set(k.downstream(d.name, 'adaptiveLock'), this.holder, 'PX', Math.max(10, cfg.intervalMs - 10), 'NX');
    if (got !== 'OK') return undefined;
    const now = this.now();
    const [raw, lastRaw, capRaw, usedRaw] = await Promise.all([
      this.redis.lrange(k.downstream(d.name, 'adaptiveObservations'), 0, -1),
      this.redis.get(k.downstream(d.name, 'adaptiveAt')),
      this.redis.get(k.downstream(d.name, 'adaptiveCapacity')),
      this.redis.get(k.downstream(d.name, 'used')),
    ]);
    const since = Number(lastRaw ?? 0);
    const outcomes: Outcome[] = [];
    for (const entry of raw) {
      const [at, latency, failed] = entry.split(':');
      if (Number(at) > since) outcomes.push({ latencyMs: Number(latency), failed: failed === '1' });
    }
    const current = Number(capRaw ?? cfg.ceiling);
    const decision = nextCapacity(current, outcomes, Number(usedRaw ?? 0), cfg);
    if (decision.reason === 'too-few-samples') return current;
    await this.redis.multi().set(k.downstream(d.name, 'adaptiveCapacity'), decision.capacity).set(k.downstream(d.name, 'adaptiveAt'), now).exec();
    if (decision.capacity !== current) {
      this.metrics.capacityAdjustments.inc({ downstream: d.name, reason: decision.reason });
      this.log.info({ downstream: d.name, from: current, to: decision.capacity, reason: decision.reason, p90Ms: decision.p90, failureRate: decision.failureRate }, 'adaptive capacity changed');
      if (decision.capacity > current) await this.governance.publishWake([d.name]);
    }
    return decision.capacity;
  }
}
