/**
 * Admits from the waiting place: for each downstream, asks Redis (admitWaiting-1.lua) which waiting jobs may start
 * now, adds them to their execution queue, and confirms. Runs in every gate process; the script is
 * atomic, so several schedulers never admit the same job or exceed a limit.
 *
 * A downstream is looked at when something may have changed, not in a loop over the backlog:
 * a job entered its waiting place (this process), a wake message arrived (another process enqueued,
 * a job ended, an operator changed a quota), a timer fell due (the earliest token, window or lease),
 * or the safety tick passed (covers lost pub/sub messages).
 *
 * Crash safety: a job admitted from the waiting place gets a promotion lease; the add is confirmed after it
 * happened. A scheduler that dies in between leaves the lease to expire, and the next admission round (any
 * process) returns the job for another add, which the derived job id and deduplication key make
 * idempotent.
 */
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Config } from '../config/file';
import type { RejectionCode } from '../errors';
import type { Failpoints } from '../failpoints';
import type { Metrics } from '../observability/metrics';
import type { Governance } from '../redis/governance';
import { Tracing } from '../observability/tracing';
import { deadLetterLeased, promoteLeased } from './promote';
import type { Topology } from './topology';

export interface SchedulerDeps {
  config: Config;
  topology: Topology;
  governance: Governance;
  /** A connection of its own for SUBSCRIBE. */
  subscriber: Redis;
  log: Logger;
  metrics: Metrics;
  failpoints: Failpoints;
  now: () => number;
}

/**
 * Admission rounds of one downstream that may run at once in this process. Each round is atomic in Redis, so two
 * never admit the same job; the second one takes the slots that came back while the first one's
 * execution adds were on their way, instead of waiting for them.
 */
const RUNS_PER_LANE = 2;

interface Lane {
  running: Set<Promise<void>>;
  again: boolean;
  timer?: NodeJS.Timeout;
  timerAt?: number;
}

export class Scheduler {
  private readonly lanes = new Map<string, Lane>();
  private readonly tracing: Tracing;
  private closed = false;
  private tick?: NodeJS.Timeout;

  constructor(private readonly deps: SchedulerDeps) {
    this.tracing = new Tracing(deps.config.telemetry);
    for (const d of deps.topology.downstreams.keys()) this.lanes.set(d, { running: new Set(), again: false });
  }

  async start(): Promise<void> {
    const { subscriber, governance, log } = this.deps;
    subscriber.on('message', (_channel: string, message: string) => {
      for (const d of message.split(',')) if (this.lanes.has(d)) this.kick(d);
    });
    await subscriber.subscribe(governance.keys.wakeChannel());
    this.tick = setInterval(() => this.kickAll(), this.deps.config.scheduler.safetyTickMs);
    this.tick.unref();
    this.kickAll();
    log.debug('scheduler started');
  }

  kickAll(): void {
    for (const d of this.lanes.keys()) this.kick(d);
  }

  /** Looks at `downstream` as soon as possible (coalesced: one run at a time per downstream). */
  kick(downstream: string): void {
    const lane = this.lanes.get(downstream);
    if (!lane || this.closed) return;
    if (lane.running.size >= RUNS_PER_LANE) {
      lane.again = true;
      return;
    }
    const run: Promise<void> = this.run(downstream, lane).finally(() => {
      lane.running.delete(run);
      if (lane.again && !this.closed) {
        lane.again = false;
        this.kick(downstream);
      }
    });
    lane.running.add(run);
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.tick) clearInterval(this.tick);
    for (const lane of this.lanes.values()) if (lane.timer) clearTimeout(lane.timer);
    await Promise.all([...this.lanes.values()].flatMap((l) => [...l.running]));
    await this.deps.subscriber.unsubscribe().catch(() => undefined);
  }

  private async run(downstream: string, lane: Lane): Promise<void> {
    const { governance, config, topology, log, failpoints } = this.deps;
    const capacity = topology.downstreams.get(downstream)!.capacity;
    try {
      for (let more = true; more && !this.closed; ) {
        const shedding = topology.downstreams.get(downstream)!.shedding;
        const res = await governance.waiting.admit(downstream, {
          capacity,
          maxAdmit: config.scheduler.maxAdmitPerCall,
          leaseMs: config.scheduler.leaseMs,
          maxEvaluations: config.scheduler.maxEvaluationsPerCall,
          ...(shedding ? { shedLow: shedding.low } : {}),
        });
        await failpoints.hit('scheduler.after-admit');
        if (res.admitted.length > 0) await this.promote(downstream, res.admitted);
        if (res.refused.length > 0) await this.deadLetter(downstream, res.refused.map((r) => ({ ...r, code: r.code as RejectionCode })));
        this.schedule(downstream, lane, res.nextWake);
        more = res.more;
      }
    } catch (err) {
      this.deps.metrics.gateErrors.inc({ stage: 'schedule' });
      log.warn({ err: (err as Error).message, downstream }, 'scheduler could not admit from the waiting place; retrying');
      this.schedule(downstream, lane, this.deps.now() + 500);
    }
  }

  private async promote(downstream: string, admitted: Array<{ id: string; payload: string }>): Promise<void> {
    await promoteLeased(this.deps.topology, this.deps.governance, downstream, admitted, {
      retentionMs: this.deps.config.retention.decisionSeconds * 1000,
      leaseMs: this.deps.config.scheduler.leaseMs,
      tenantIdPath: this.deps.config.tenant.idPath,
      metrics: this.deps.metrics,
      beforeConfirm: () => this.deps.failpoints.hit('scheduler.after-exec-add'),
      tracing: this.tracing,
    });
  }

  /** Adds jobs refused out of the waiting place to the dead-letter queue, then ends their leases. */
  async deadLetter(downstream: string, refused: ReadonlyArray<{ id: string; payload: string; message: string; code: RejectionCode }>): Promise<void> {
    await deadLetterLeased(this.deps.topology, this.deps.governance, downstream, this.deps.config.tenant.idPath, refused);
  }

  /** Arms the downstream's timer for `at` (earliest wins), so a due token or lease is not missed. */
  private schedule(downstream: string, lane: Lane, at: number | undefined): void {
    if (at === undefined || this.closed) return;
    if (lane.timer && lane.timerAt !== undefined && lane.timerAt <= at) return;
    if (lane.timer) clearTimeout(lane.timer);
    const delay = Math.min(Math.max(at - this.deps.now(), 1), this.deps.config.scheduler.safetyTickMs);
    lane.timerAt = at;
    lane.timer = setTimeout(() => {
      lane.timer = undefined;
      lane.timerAt = undefined;
      this.kick(downstream);
    }, delay);
    lane.timer.unref();
  }
}
