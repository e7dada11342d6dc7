/**
 * The failure observer: reads the event streams of every execution queue through a Redis consumer
 * group, releases the admitted jobs that finished, and counts outcomes per downstream.
 *
 * Nothing is missed across a restart: an event is acknowledged only after its release was applied
 * (releases are idempotent, so a redelivery after a crash is harmless), pending events of a dead
 * observer are claimed by a live one, and a reconciliation sweep finds admitted jobs whose events
 * were trimmed away while no observer was reading (that gap is detected and reported).
 *
 * This module runs it: the consumer group, the read loop and the periodic upkeep. Its parts: the streams
 * and the decoding of their entries (observer-events.ts), applying a batch (observer-batch.ts), the
 * deduplication keys of released jobs (observer-dedup.ts), catching up on missed events and the
 * reconciliation sweep (observer-reconcile.ts), flow samples and starvation warnings (observer-flow.ts).
 */
import { hostname } from 'node:os';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Config } from '../config/file';
import type { Failpoints } from '../failpoints';
import type { Metrics } from '../observability/metrics';
import type { Governance } from '../redis/governance';
import { isClusterClient } from '../redis/connection';
import type { Keys } from '../redis/keys';
import { scriptKeys } from '../redis/script-keys';
import { scriptsFor } from '../redis/scripts';
import type { BreakerService } from '../governance/breakers';
import { BatchApplier } from './observer-batch';
import { OBSERVER_GROUP, type ReadReply, type StreamInfo } from './observer-events';
import { sampleFlow, StarvationWatch } from './observer-flow';
import { Reconciler, type SweepReport } from './observer-reconcile';
import type { Topology } from './topology';

export interface ObserverDeps {
  config: Config;
  topology: Topology;
  governance: Governance;
  keys: Keys;
  /** Non-blocking commands. */
  redis: Redis;
  /** A connection of its own for the blocking XREADGROUP. */
  blockingRedis: Redis;
  /**
   * Opens another blocking connection. On Redis Cluster each execution queue's event stream is in its
   * own slot and one XREADGROUP reads streams of one slot only: the observer reads each stream in a
   * loop of its own, each on its own connection (a blocked read holds its node's connection).
   */
  openBlocking?: (label: string) => Redis;
  log: Logger;
  metrics: Metrics;
  failpoints: Failpoints;
  now?: () => number;
  /** Called when Redis lost the consumer groups (flushed or replaced), after they are recreated. */
  onRedisReset?: () => Promise<unknown>;
  /** The circuit breakers, fed with every execution outcome and failed attempt. */
  breakers?: BreakerService;
}

export class Observer {
  private readonly consumer = `${hostname()}:${process.pid}:${Math.random().toString(36).slice(2, 8)}`;
  private readonly streams: StreamInfo[];
  private readonly byKey = new Map<string, StreamInfo>();
  private running = false;
  /** Applies each batch read; its breaker observations and acknowledgement run behind the next read. */
  private readonly batches: BatchApplier;
  private readonly reconciler: Reconciler;
  private readonly starvation: StarvationWatch;
  private loops: Array<Promise<void>> = [];
  /** Blocking connections opened for the read loops after the first (closed with the observer). */
  private readonly extraBlocking: Redis[] = [];
  private timer?: NodeJS.Timeout;
  private flowTimer?: NodeJS.Timeout;
  private sweeping?: Promise<unknown>;
  private readonly now: () => number;

  constructor(private readonly deps: ObserverDeps) {
    this.now = deps.now ?? Date.now;
    // Its connection runs releaseDedup-1.lua inside its pipelines (forgetDeduplication).
    scriptsFor(deps.redis);
    this.streams = deps.config.downstreams.map((d) => ({ downstream: d.name, queue: d.queue, key: deps.keys.events(d.queue) }));
    for (const s of this.streams) this.byKey.set(s.key, s);
    this.batches = new BatchApplier(deps, this.consumer);
    this.reconciler = new Reconciler(deps, this.streams, this.consumer, this.batches, () => this.running, this.now);
    this.starvation = new StarvationWatch(deps, this.streams, this.now);
  }

  async start(): Promise<void> {
    await this.ensureGroups();
    this.running = true;
    // One XREADGROUP for every stream on a single Redis; one per stream (slot) on a cluster.
    const groups = isClusterClient(this.deps.blockingRedis) ? this.streams.map((s) => [s]) : [this.streams];
    groups.forEach((streams, i) => {
      let conn = this.deps.blockingRedis;
      if (i > 0) {
        if (!this.deps.openBlocking) throw new Error('the observer needs openBlocking to read several slots on Redis Cluster');
        conn = this.deps.openBlocking(`observer-read-${i}`);
        this.extraBlocking.push(conn);
      }
      this.loops.push(this.readLoop(streams, conn));
    });
    const every = this.deps.config.observer.reconcileIntervalMs;
    this.timer = setInterval(() => void this.maintain(), every);
    this.timer.unref();
    this.flowTimer = setInterval(() => void this.sampleFlow().catch((err: Error) => this.deps.log.debug({ err: err.message }, 'flow sample skipped')), this.deps.config.observer.flowSampleMs);
    this.flowTimer.unref();
    void this.sampleFlow().catch(() => undefined);
    this.deps.log.info({ streams: this.streams.map((s) => s.key), consumer: this.consumer }, 'observer reading execution events');
  }

  async close(): Promise<void> {
    this.running = false;
    if (this.timer) clearInterval(this.timer);
    if (this.flowTimer) clearInterval(this.flowTimer);
    await Promise.all(this.loops);
    await this.sweeping;
    await this.batches.settled();
    for (const c of this.extraBlocking) c.disconnect();
  }

  private async ensureGroups(): Promise<void> {
    const scripts = scriptsFor(this.deps.redis);
    for (const s of this.streams) await scripts.ensureGroup(scriptKeys.ensureGroup(this.deps.keys, s.queue), [OBSERVER_GROUP]);
  }

  private async readLoop(streams: readonly StreamInfo[], blockingRedis: Redis): Promise<void> {
    const { config, log } = this.deps;
    let backoff = 100;
    while (this.running) {
      try {
        const reply = (await blockingRedis.xreadgroup(
          'GROUP',
          OBSERVER_GROUP,
          this.consumer,
          'COUNT',
          config.observer.batch,
          'BLOCK',
          config.observer.blockMs,
          'STREAMS',
          ...streams.map((s) => s.key),
          ...streams.map(() => '>'),
        )) as ReadReply;
        if (reply) for (const [key, entries] of reply) await this.batches.apply(this.byKey.get(key)!, entries);
        // A batch's tail that failed leaves its events pending (reclaimed and re-applied later, which is
        // harmless): back off as for any failed step.
        const tailError = this.batches.takeError();
        if (tailError) throw tailError;
        backoff = 100;
      } catch (err) {
        if (!this.running) break;
        const msg = String((err as Error).message);
        // A flushed or restarted Redis lost the groups: recreate them (from 0, nothing skipped).
        if (msg.includes('NOGROUP')) {
          log.warn('observer consumer groups missing (Redis flushed?); recreating them');
          await this.ensureGroups().catch(() => undefined);
          await this.deps.onRedisReset?.().catch(() => undefined);
        } else {
          log.warn({ err: msg, retryInMs: backoff }, 'observer read failed; retrying');
        }
        await new Promise((r) => setTimeout(r, backoff));
        backoff = Math.min(backoff * 2, 5000);
      }
    }
  }

  /**
   * Samples each downstream's flow for the dashboard's charts (GET /api/v1/flow): the cumulative admitted
   * and dead-lettered counters and the levels now (observer-flow.ts).
   */
  async sampleFlow(): Promise<void> {
    return sampleFlow(this.deps, this.now);
  }

  /** Periodic upkeep: claim events a dead observer left pending, detect gaps, watch for starvation, sweep. */
  async maintain(): Promise<SweepReport> {
    if (this.sweeping) return { checked: 0, released: 0 };
    const work = (async () => {
      await this.reconciler.claimAbandoned();
      await this.reconciler.detectGaps();
      await this.starvation.check();
      return this.sweep();
    })();
    this.sweeping = work;
    try {
      return await work;
    } catch (err) {
      this.deps.log.warn({ err: (err as Error).message }, 'observer upkeep failed; retrying next interval');
      return { checked: 0, released: 0 };
    } finally {
      this.sweeping = undefined;
    }
  }

  /**
   * Releases admitted jobs whose execution job finished or vanished without an event reaching us, and
   * ends deduplication holds that were missed (observer-reconcile.ts).
   */
  async sweep(): Promise<SweepReport> {
    return this.reconciler.sweep();
  }
}
