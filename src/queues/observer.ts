/**
 * The failure observer: reads the event streams of every execution queue through a Redis consumer
 * group, releases the admitted jobs that finished, and counts outcomes per downstream.
 *
 * Nothing is missed across a restart: an event is acknowledged only after its release was applied
 * (releases are idempotent, so a redelivery after a crash is harmless), pending events of a dead
 * observer are claimed by a live one, and a reconciliation sweep finds admitted jobs whose events
 * were trimmed away while no observer was reading (that gap is detected and reported).
 */
import { hostname } from 'node:os';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Config } from '../config/file';
import type { Failpoints } from '../failpoints';
import type { Metrics } from '../observability/metrics';
import type { Governance, Outcome } from '../redis/governance';
import { execJobId, jobKeyOf, parseJobKey, type Keys } from '../redis/keys';
import { scriptsFor } from '../redis/scripts';
import { windowStats } from '../core/breaker';
import type { BreakerService, ExecEvent } from '../governance/breakers';
import { endHoldsOfEnded } from './dedup-holds';
import type { Topology } from './topology';

export const OBSERVER_GROUP = 'tollgate-observer';

type StreamEntry = [id: string, fields: string[]];
type ReadReply = Array<[stream: string, entries: StreamEntry[]]> | null;

export interface ObserverDeps {
  config: Config;
  topology: Topology;
  governance: Governance;
  keys: Keys;
  /** Non-blocking commands. */
  redis: Redis;
  /** A connection of its own for the blocking XREADGROUP. */
  blockingRedis: Redis;
  log: Logger;
  metrics: Metrics;
  failpoints: Failpoints;
  now?: () => number;
  /** Called when Redis lost the consumer groups (flushed or replaced), after they are recreated. */
  onRedisReset?: () => Promise<unknown>;
  /** The circuit breakers, fed with every execution outcome and failed attempt. */
  breakers?: BreakerService;
}

interface StreamInfo {
  downstream: string;
  queue: string;
  key: string;
}

export interface SweepReport {
  checked: number;
  released: number;
  /** Deduplication holds of jobs no longer in flight, ended by the sweep. */
  dedupReleased?: number;
}

export class Observer {
  private readonly consumer = `${hostname()}:${process.pid}:${Math.random().toString(36).slice(2, 8)}`;
  private readonly streams: StreamInfo[];
  private readonly byKey = new Map<string, StreamInfo>();
  private running = false;
  /**
   * The breaker observations and the acknowledgement of the last batch, in order: they run while the
   * next batch is read and released, so a slot's way back to the schedulers does not wait for them.
   */
  private tail: Promise<void> = Promise.resolve();
  private tailError?: Error;
  private tailsPending = 0;
  private loop?: Promise<void>;
  private timer?: NodeJS.Timeout;
  private flowTimer?: NodeJS.Timeout;
  private sweeping?: Promise<unknown>;
  private readonly now: () => number;
  /** downstream/tenant pairs currently reported as starving. */
  private readonly starving = new Set<string>();
  /** When each execution job's current attempt started (its 'active' event), for slow-call detection. */
  private readonly activeAt = new Map<string, number>();

  constructor(private readonly deps: ObserverDeps) {
    this.now = deps.now ?? Date.now;
    // Its connection runs releaseDedup-1.lua inside its pipelines (forgetDeduplication).
    scriptsFor(deps.redis);
    this.streams = deps.config.downstreams.map((d) => ({ downstream: d.name, queue: d.queue, key: deps.keys.events(d.queue) }));
    for (const s of this.streams) this.byKey.set(s.key, s);
  }

  async start(): Promise<void> {
    await this.ensureGroups();
    this.running = true;
    this.loop = this.readLoop();
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
    await this.loop;
    await this.sweeping;
    await this.tail;
  }

  private async ensureGroups(): Promise<void> {
    const scripts = scriptsFor(this.deps.redis);
    for (const s of this.streams) await scripts.ensureGroup([s.key], [OBSERVER_GROUP]);
  }

  private async readLoop(): Promise<void> {
    const { blockingRedis, config, log } = this.deps;
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
          ...this.streams.map((s) => s.key),
          ...this.streams.map(() => '>'),
        )) as ReadReply;
        if (reply) for (const [key, entries] of reply) await this.apply(this.byKey.get(key)!, entries);
        // A batch's tail that failed leaves its events pending (reclaimed and re-applied later, which is
        // harmless): back off as for any failed step.
        if (this.tailError) {
          const err = this.tailError;
          this.tailError = undefined;
          throw err;
        }
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
   * Applies a batch of events of one stream, then acknowledges it. `fresh`: read with '>' (first
   * delivery), else claimed from a dead observer (perhaps applied already: see EventBatch).
   */
  private async apply(stream: StreamInfo, entries: StreamEntry[], fresh = true): Promise<void> {
    if (entries.length === 0) return;
    const { governance, metrics, failpoints, redis } = this.deps;
    const releases: Array<{ key: string; outcome: Outcome; actualCost?: number; endedAt?: number }> = [];
    const execEvents: ExecEvent[] = [];
    // Counted per batch: a metric update per event would cost more than the rest of the loop.
    const byEvent = new Map<string, number>();
    for (const [entryId, fields] of entries) {
      const ev = fieldsOf(fields);
      const event = ev.event ?? 'unknown';
      byEvent.set(event, (byEvent.get(event) ?? 0) + 1);
      // Events that neither end a job nor start an attempt ('added', plain 'waiting', 'drained'…).
      if (event === 'added' || event === 'drained' || (event === 'waiting' && ev.prev !== 'active')) continue;
      const outcome = outcomeOf(event, ev.prev);
      const key = ev.jobId ? jobKeyOf(ev.jobId) : undefined;
      // The stream entry id starts with the time BullMQ wrote the event.
      const at = Number(entryId.slice(0, entryId.indexOf('-')));
      if (key !== undefined && ev.jobId) {
        if (event === 'active') this.markActive(ev.jobId, at);
        // Each ended attempt tells the breaker something: a completion, a final failure, or a failed
        // attempt that will be retried (BullMQ moves it to delayed, or straight back to waiting).
        const kind =
          event === 'completed' || event === 'failed'
            ? event
            : event === 'delayed' || (event === 'waiting' && ev.prev === 'active')
              ? 'retry'
              : outcome === 'vanished'
                ? 'removed'
                : undefined;
        if (kind) {
          const startedAt = this.activeAt.get(ev.jobId);
          this.activeAt.delete(ev.jobId);
          execEvents.push({
            key,
            execJobId: ev.jobId,
            kind,
            at,
            entryId,
            ...(startedAt !== undefined ? { startedAt } : {}),
            ...(ev.failedReason !== undefined ? { failedReason: ev.failedReason } : {}),
          });
        }
      }
      if (outcome && key !== undefined) {
        const actualCost = event === 'completed' ? reportedCost(ev.returnvalue) : undefined;
        releases.push({ key, outcome, endedAt: at, ...(actualCost !== undefined ? { actualCost } : {}) });
      }
    }
    for (const [event, n] of byEvent) metrics.observerEvents.inc({ downstream: stream.downstream, event }, n);
    const forget: string[] = [];
    if (releases.length > 0) {
      // The release publishes the wake itself: a slot that came back is offered to the schedulers
      // in the same round trip.
      const { released, generations } = await governance.release(stream.downstream, releases, { publish: true });
      // The release read each job's record: its breaker generation comes with it (no second read).
      const genOf = new Map<string, number>();
      released.forEach((r, i) => {
        if (r) {
          metrics.observerReleases.inc({ downstream: stream.downstream, outcome: releases[i]!.outcome, source: 'event' });
          forget.push(releases[i]!.key);
        }
        if (generations[i] !== undefined) genOf.set(releases[i]!.key, generations[i]!);
      });
      for (const e of execEvents) if (e.kind !== 'retry' && genOf.has(e.key)) e.gen = genOf.get(e.key)!;
      await failpoints.hit('observer.after-release');
    }
    const ids = entries.map(([id]) => id);
    // At most one batch's tail runs behind the reads: a slow breaker store slows the reads down.
    if (this.tailsPending > 0) await this.tail;
    const prev = this.tail;
    this.tailsPending++;
    this.tail = (async () => {
      await prev;
      try {
        if (execEvents.length > 0 && this.deps.breakers?.enabled(stream.downstream)) {
          await this.describe(stream, execEvents);
          await this.deps.breakers.observe(stream.downstream, execEvents, { consumer: this.consumer, fresh, entryIds: ids });
        }
        await failpoints.hit('observer.before-ack');
        const pipe = redis.pipeline();
        this.forgetDeduplication(pipe, stream.downstream, forget);
        pipe.xack(stream.key, OBSERVER_GROUP, ...ids);
        for (const [err] of (await pipe.exec()) ?? []) if (err) throw err;
      } catch (err) {
        this.tailError ??= err as Error;
      } finally {
        this.tailsPending--;
      }
    })();
    if (!fresh) await this.tail;
  }

  /**
   * Shortens the deduplication keys of execution jobs just released to the window in which a repeated
   * add can still be in flight: a gate that met the record as `admitted` just before the release (its
   * claim taken back after another gate died) adds again a moment later, and only the key makes that add
   * a no-op once the execution job is removed. After the window the record's outcome says so for good,
   * and the key would only take memory for its full TTL (`retention.decisionSeconds`). Deleting it at
   * once let such a late add run the job twice (seen in the kill -9 suite).
   */
  private forgetDeduplication(pipe: ReturnType<Redis['pipeline']>, downstream: string, keys: readonly string[]): void {
    const queue = this.deps.topology.execQueue(downstream);
    const { gate, scheduler } = this.deps.config;
    const window = 2 * Math.max(gate.lockDurationMs, scheduler.leaseMs) + 1000;
    for (const key of keys) pipe.pexpire(queue.toKey(`de:${execJobId(key)}`), window, 'LT');
    // Their simple-mode ingress deduplication ids stop holding, in the same round trip (releaseDedup-1.lua;
    // a hold missed here is ended by the sweep).
    if (keys.length > 0) {
      const withScripts = pipe as unknown as Record<string, (...args: Array<string | number>) => unknown>;
      withScripts.tg_releaseDedup!(this.deps.topology.heldDedupKey, this.deps.topology.ingress.toKey(''), ...keys);
    }
  }

  private markActive(execJobId: string, at: number): void {
    if (this.activeAt.size > 100_000) this.activeAt.delete(this.activeAt.keys().next().value!);
    this.activeAt.set(execJobId, at);
  }

  /**
   * Adds to each event the breaker generation its job was admitted in (unless its release brought it)
   * and, for failures, the error.
   */
  private async describe(stream: StreamInfo, events: ExecEvent[]): Promise<void> {
    const { redis, keys } = this.deps;
    const needed = events.filter((e) => e.gen === undefined || e.kind !== 'completed');
    if (needed.length === 0) return;
    const pipe = redis.pipeline();
    for (const e of needed) {
      if (e.gen === undefined) pipe.hget(keys.record(e.key), 'bg');
      if (e.kind !== 'completed') pipe.hmget(keys.bullJob(stream.queue, e.execJobId), 'failedReason', 'stacktrace');
    }
    const res = ((await pipe.exec()) ?? []).map(([, v]) => v);
    let i = 0;
    for (const e of needed) {
      if (e.gen === undefined) {
        const gen = res[i++] as string | null;
        if (gen !== null) e.gen = Number(gen);
      }
      if (e.kind !== 'completed') {
        const [reason, stack] = (res[i++] ?? []) as Array<string | null>;
        e.errorText = errorText(reason ?? e.failedReason, stack ?? undefined);
      }
    }
  }

  /** Periodic upkeep: claim events a dead observer left pending, detect gaps, sweep. */
  /**
   * Samples each downstream's flow for the dashboard's charts (GET /api/v1/flow): the cumulative admitted
   * and dead-lettered counters and the levels now. Every observer samples; the charts take the deltas
   * between samples, so more samples only mean a finer line.
   */
  async sampleFlow(): Promise<void> {
    const { governance, config } = this.deps;
    const keep = Math.ceil((15 * 60_000) / config.observer.flowSampleMs) + 1;
    for (const d of config.downstreams) {
      const [stats, waiting, inFlight, capacity] = await Promise.all([
        governance.readStats(d.name),
        governance.waitingTotal(d.name),
        governance.inFlightCount(d.name),
        governance.effectiveCapacity(d.name),
      ]);
      const deadLettered = Object.entries(stats).reduce((n, [k, v]) => (k.startsWith('dead:') ? n + v : n), 0);
      const breakers = this.deps.breakers;
      const b = breakers?.enabled(d.name) ? (await breakers.read(d.name)).state : undefined;
      const w = b ? windowStats(b.window) : undefined;
      await governance.pushFlowSample(
        d.name,
        {
          at: this.now(),
          admitted: stats.admitted ?? 0,
          deadLettered,
          waiting,
          inFlight,
          capacity: capacity ?? d.capacity,
          ...(b && w ? { breaker: { state: b.state, calls: w.calls, failureRate: Math.round(w.failureRate * 1000) / 1000 } } : {}),
        },
        keep,
      );
    }
  }

  async maintain(): Promise<SweepReport> {
    if (this.sweeping) return { checked: 0, released: 0 };
    const work = (async () => {
      await this.claimAbandoned();
      await this.detectGaps();
      await this.watchStarvation();
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

  private async claimAbandoned(): Promise<void> {
    const { redis, log } = this.deps;
    const minIdle = this.deps.config.observer.claimIdleMs;
    for (const s of this.streams) {
      let cursor = '0-0';
      do {
        const [next, entries] = (await redis.xautoclaim(s.key, OBSERVER_GROUP, this.consumer, minIdle, cursor, 'COUNT', 500)) as [
          string,
          StreamEntry[],
          string[]?,
        ];
        // Entries trimmed from the stream come back as null fields; their ids are gone from the PEL.
        await this.apply(
          s,
          entries.filter((e) => Array.isArray(e[1])),
          false,
        );
        cursor = next;
      } while (cursor !== '0-0' && this.running);
      // Forget consumers of dead observers once they hold nothing and were idle for a day.
      const consumers = ((await redis.call('XINFO', 'CONSUMERS', s.key, OBSERVER_GROUP)) as unknown[][]).map(pairs);
      for (const c of consumers) {
        if (c.name !== this.consumer && Number(c.pending) === 0 && Number(c.idle) > 86_400_000) {
          await redis.xgroup('DELCONSUMER', s.key, OBSERVER_GROUP, String(c.name));
          log.debug({ consumer: c.name }, 'removed idle observer consumer');
        }
      }
    }
  }

  /** Warns once per episode when a tenant with waiting work has not been served for the bound. */
  private async watchStarvation(): Promise<void> {
    const { governance, config, log } = this.deps;
    const bound = this.now() - config.observer.starvationMs;
    for (const s of this.streams) {
      const starving = new Set((await governance.queuedTenants(s.downstream)).filter((q) => q.since < bound).map((q) => q.tenantId));
      for (const tenant of starving) {
        const key = `${s.downstream}/${tenant}`;
        if (!this.starving.has(key)) {
          this.starving.add(key);
          log.warn({ downstream: s.downstream, tenant, boundMs: config.observer.starvationMs }, 'tenant starving: waiting work and no admission for longer than the bound');
        }
      }
      for (const key of [...this.starving]) {
        if (key.startsWith(`${s.downstream}/`) && !starving.has(key.slice(s.downstream.length + 1))) {
          this.starving.delete(key);
          log.info({ downstream: s.downstream, tenant: key.slice(s.downstream.length + 1) }, 'tenant no longer starving');
        }
      }
    }
  }

  /** A gap: the stream dropped entries the group had not read yet (observer down too long). */
  private async detectGaps(): Promise<void> {
    const { redis, log, metrics } = this.deps;
    const scripts = scriptsFor(redis);
    for (const s of this.streams) {
      const [lost, lastDelivered, firstEntry] = await scripts.detectGap([s.key], [OBSERVER_GROUP]);
      if (lost > 0) {
        metrics.observerGaps.inc({ downstream: s.downstream });
        log.warn(
          { downstream: s.downstream, lostEvents: lost, lastDelivered },
          'event stream was trimmed past unread events; the reconciliation sweep releases what they would have',
        );
        await this.rescanGap(s, Number(lastDelivered.split('-')[0]), firstEntry ? Number(firstEntry.split('-')[0]) : this.now());
      }
    }
  }

  /**
   * After a gap, the breaker missed the outcomes the lost events carried: rescan the jobs of the
   * execution queue that finished in the gap (between the last event read and the oldest event still
   * in the stream) and feed them to it. Jobs removed on completion cannot be found; the breaker just
   * sees fewer calls.
   */
  private async rescanGap(s: StreamInfo, from: number, to: number): Promise<void> {
    const breakers = this.deps.breakers;
    if (!breakers?.enabled(s.downstream)) return;
    const { redis, keys } = this.deps;
    const events: ExecEvent[] = [];
    for (const set of ['completed', 'failed'] as const) {
      const ids = (await redis.zrangebyscore(keys.bullSet(s.queue, set), `(${from}`, `(${to}`, 'LIMIT', 0, 10_000)).filter((id) => jobKeyOf(id) !== undefined);
      // One round trip for every job's end time, not one per job.
      const pipe = redis.pipeline();
      for (const jobId of ids) pipe.hget(keys.bullJob(s.queue, jobId), 'finishedOn');
      const finished = ((await pipe.exec()) ?? []).map(([, v]) => v as string | null);
      ids.forEach((jobId, i) => events.push({ key: jobKeyOf(jobId)!, execJobId: jobId, kind: set, at: Number(finished[i] ?? to) }));
    }
    events.sort((a, b) => a.at - b.at);
    if (events.length === 0) return;
    await this.describe(s, events);
    const transitions = await breakers.observe(s.downstream, events);
    this.deps.log.info({ downstream: s.downstream, rescanned: events.length, transitions: transitions.length }, 'outcomes lost in the gap fed to the breaker');
  }

  /**
   * Finds admitted jobs older than `reconcileMinAgeMs` whose execution job finished or vanished
   * without an event reaching us, and releases them. Order matters: the ingress job is checked
   * first, because the gate completes it only after the execution job was added; an admitted job
   * whose ingress job still exists may not have been added yet and is left alone. Jobs admitted from
   * the waiting place have no ingress job any more; until their add is confirmed they hold a
   * promotion lease, and the release script refuses to call a leased job vanished.
   */
  async sweep(): Promise<SweepReport> {
    const { redis, keys, config, governance, metrics, log } = this.deps;
    const report: SweepReport = { checked: 0, released: 0 };
    const olderThan = this.now() - config.observer.reconcileMinAgeMs;
    for (const s of this.streams) {
      let offset = 0;
      for (;;) {
        const ids = await redis.zrangebyscore(keys.inflight(s.downstream), '-inf', olderThan, 'LIMIT', offset, 200);
        if (ids.length === 0) break;
        offset += ids.length;
        report.checked += ids.length;
        const ingress = config.queues.ingress;
        const first = redis.pipeline();
        // By the ingress id behind the job key (for a reused id, a newer job may hold it: left alone, which errs on the safe side).
        // A hash kept only to hold a deduplication id (marked tgheld) is not an ingress job any more.
        for (const id of ids) {
          const ingressKey = keys.bullJob(ingress, parseJobKey(id).ingressJobId);
          first.exists(ingressKey).hexists(ingressKey, 'tgheld');
        }
        const firstRes = ((await first.exec()) ?? []).map(([, v]) => v);
        const ingressAlive = ids.map((_, i) => firstRes[2 * i] === 1 && firstRes[2 * i + 1] !== 1);
        const candidates = ids.filter((_, i) => !ingressAlive[i]);
        if (candidates.length === 0) continue;
        const second = redis.pipeline();
        for (const id of candidates) {
          const jid = execJobId(id);
          second.exists(keys.bullJob(s.queue, jid));
          second.hget(keys.bullJob(s.queue, jid), 'finishedOn');
          second.zscore(keys.bullSet(s.queue, 'completed'), jid);
        }
        const res = ((await second.exec()) ?? []).map(([, v]) => v);
        const releases: Array<{ key: string; outcome: Outcome }> = [];
        candidates.forEach((id, i) => {
          const [exists, finishedOn, completedScore] = res.slice(i * 3, i * 3 + 3);
          if (exists !== 1) releases.push({ key: id, outcome: 'vanished' });
          else if (finishedOn) releases.push({ key: id, outcome: completedScore !== null ? 'completed' : 'failed' });
        });
        if (releases.length === 0) continue;
        const { released } = await governance.release(s.downstream, releases, { publish: true });
        let n = 0;
        const forget: string[] = [];
        released.forEach((r, i) => {
          if (!r) return;
          n++;
          forget.push(releases[i]!.key);
          metrics.observerReleases.inc({ downstream: s.downstream, outcome: releases[i]!.outcome, source: 'sweep' });
        });
        if (forget.length > 0) {
          const pipe = redis.pipeline();
          this.forgetDeduplication(pipe, s.downstream, forget);
          await pipe.exec();
        }
        offset -= n; // released entries left the zset; keep the window aligned
        report.released += n;
        if (n > 0) {
          log.warn({ downstream: s.downstream, released: n }, 'reconciliation released admitted jobs whose completion events were missed');
        }
      }
    }
    report.dedupReleased = await this.sweepHeldDedup();
    return report;
  }

  /**
   * Ends holds of simple-mode deduplication ids whose jobs are no longer in flight (their record says
   * they ended, or is gone) but whose hold was not ended with them (a call that failed, an observer
   * that died in between): without this, such an id would refuse every later job for good.
   */
  private async sweepHeldDedup(): Promise<number> {
    const { redis } = this.deps;
    const held = this.deps.topology.heldDedupKey;
    let cursor = '0';
    let ended = 0;
    do {
      const [next, flat] = await redis.hscan(held, cursor, 'COUNT', 500);
      cursor = next;
      const jobKeys = flat.filter((_, i) => i % 2 === 0);
      if (jobKeys.length === 0) continue;
      ended += await endHoldsOfEnded(this.deps.topology, this.deps.governance, jobKeys);
    } while (cursor !== '0');
    return ended;
  }
}

function fieldsOf(fields: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i + 1 < fields.length; i += 2) out[fields[i]!] = fields[i + 1]!;
  return out;
}

/** Which BullMQ events end an admitted job. `failed` is emitted only after the last attempt. */
function outcomeOf(event: string, prev: string | undefined): Outcome | undefined {
  if (event === 'completed') return 'completed';
  if (event === 'failed') return 'failed';
  // Removed by hand before it finished: its capacity must come back.
  if (event === 'removed' && prev !== 'completed' && prev !== 'failed') return 'vanished';
  return undefined;
}

/** "Name: message" from the last attempt's stack trace (its first line), else the failed reason. */
export function errorText(failedReason: string | undefined, stacktrace: string | undefined): string | undefined {
  if (stacktrace) {
    try {
      const stacks = JSON.parse(stacktrace) as unknown[];
      const last = stacks[stacks.length - 1];
      if (typeof last === 'string' && last.length > 0) return last.split('\n')[0];
    } catch {
      /* not JSON: fall back */
    }
  }
  return failedReason;
}

/** The cost a completed job reports in its return value (`{ cost: n }`), if a valid one. */
export function reportedCost(returnvalue: string | undefined): number | undefined {
  if (!returnvalue || !returnvalue.includes('cost')) return undefined;
  try {
    const v = JSON.parse(returnvalue) as { cost?: unknown } | null;
    const c = v?.cost;
    return typeof c === 'number' && Number.isInteger(c) && c >= 0 && c <= 10_000 ? c : undefined;
  } catch {
    return undefined;
  }
}

function pairs(flat: unknown[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) out[String(flat[i])] = flat[i + 1];
  return out;
}
