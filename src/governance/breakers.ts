/**
 * Runs the circuit breakers: the pure state machine (src/core/breaker.ts) applied to the state in
 * Redis with compare-and-set, so any number of observers and API processes agree; time-driven moves
 * (open → half-open at openUntil, after a health check when the downstream has one); operators'
 * forced states; the outbox of transitions written to Postgres (never ahead of Redis: it is written
 * from Redis's outbox); and restoring a breaker Redis lost from its Postgres snapshot.
 *
 * BreakerService is made of: the events the observer feeds it and the batches already counted
 * (breaker-events.ts), the state in Redis and its compare-and-set (breaker-state.ts), and the Postgres
 * side, outbox, snapshots and restores (breaker-outbox.ts).
 */
import type { Logger } from 'pino';
import type { BreakerSettings } from '../contracts/breakers';
import type { Config } from '../config/file';
import {
  boundHalfOpen,
  force,
  INITIAL_BREAKER,
  recordOutcomes,
  tick,
  type BreakerConfig,
  type BreakerOutcome,
  type BreakerState,
  type ForceAction,
  type Step,
  type Transition,
} from '../core/breaker';
import type { Database } from '../db/client';
import type { Tx } from '../db/quotas';
import type { Metrics } from '../observability/metrics';
import type { Governance } from '../redis/governance';
import { appliedFilter, outcomeOfEvent, rememberBatch, type EventBatch, type ExecEvent, type StoredState } from './breaker-events';
import { BreakerOutbox } from './breaker-outbox';
import { BreakerStateApplier } from './breaker-state';

export interface BreakerDeps {
  governance: Governance;
  config: Config;
  database: Database;
  log: Logger;
  metrics?: Metrics;
  now?: () => number;
  rand?: () => number;
  /**
   * Called in the transaction that writes newly recorded transitions to Postgres (oldest first):
   * the breaker alerts are recorded there, so each transition alerts once (src/notify/breaker-alerts.ts).
   */
  onTransitions?: (tx: Tx, transitions: Array<Transition & { downstream: string }>) => Promise<void>;
}

export function machineConfig(s: BreakerSettings): BreakerConfig {
  return {
    observeOnly: s.observeOnly,
    window: s.window,
    minimumCalls: s.minimumCalls,
    failureRateThreshold: s.failureRateThreshold,
    consecutiveFailures: s.consecutiveFailures,
    ...(s.slowCallMs !== undefined ? { slowCallMs: s.slowCallMs } : {}),
    ...(s.slowCallRateThreshold !== undefined ? { slowCallRateThreshold: s.slowCallRateThreshold } : {}),
    openMs: s.openMs,
    maxOpenMs: s.maxOpenMs,
    backoffMultiplier: s.backoffMultiplier,
    jitter: s.jitter,
    halfOpenProbes: s.halfOpenProbes,
    halfOpenMaxMs: s.halfOpenMaxMs,
  };
}

export class BreakerService {
  private readonly now: () => number;
  private readonly rand: () => number;
  private timers: NodeJS.Timeout[] = [];
  private readonly lastHealthCheck = new Map<string, number>();
  private readonly settings = new Map<string, { s: BreakerSettings; m: BreakerConfig; count: RegExp[]; ignore: RegExp[] }>();
  private readonly applier: BreakerStateApplier;
  private readonly outbox: BreakerOutbox;

  constructor(private readonly deps: BreakerDeps) {
    this.now = deps.now ?? Date.now;
    this.rand = deps.rand ?? Math.random;
    for (const d of deps.config.downstreams) {
      if (!d.breaker.enabled) continue;
      this.settings.set(d.name, {
        s: d.breaker,
        m: machineConfig(d.breaker),
        count: d.breaker.countErrors.map((r) => new RegExp(r)),
        ignore: d.breaker.ignoreErrors.map((r) => new RegExp(r)),
      });
    }
    this.applier = new BreakerStateApplier(deps);
    this.outbox = new BreakerOutbox(deps, this.settings, this.now);
  }

  enabled(downstream: string): boolean {
    return this.settings.has(downstream);
  }

  async read(downstream: string): Promise<{ state: BreakerState; rev: number }> {
    return this.applier.read(downstream);
  }

  /** Applies a step of the state machine to the stored state (compare-and-set, retried). */
  private async apply(downstream: string, step: (s: BreakerState) => Step): Promise<Transition[]> {
    return (await this.applyStep(downstream, step)).transitions;
  }

  /** The compare-and-set loop (BreakerStateApplier): the state the step was applied to, the state written, and its transitions. */
  private async applyStep(downstream: string, step: (s: BreakerState) => Step): Promise<{ before: BreakerState; after: BreakerState; transitions: Transition[] }> {
    const cfg = this.settings.get(downstream);
    if (!cfg) return { before: INITIAL_BREAKER, after: INITIAL_BREAKER, transitions: [] };
    return this.applier.applyStep(downstream, cfg.s, step);
  }

  /**
   * Outcomes of execution events: what they say about the downstream, fed to its breaker. With a
   * batch, each stream entry is counted once even when the batch is fed again (see EventBatch).
   */
  async observe(downstream: string, events: readonly ExecEvent[], batch?: EventBatch): Promise<Transition[]> {
    const cfg = this.settings.get(downstream);
    if (!cfg || events.length === 0) return [];
    const outcomes: Array<BreakerOutcome & { entryId?: string }> = [];
    for (const e of events) {
      const entry = e.entryId !== undefined ? { entryId: e.entryId } : {};
      const o = outcomeOfEvent(e, cfg.s, { count: cfg.count, ignore: cfg.ignore });
      if (o) outcomes.push({ ...o, ...entry });
    }
    if (outcomes.length === 0) return [];
    if (!batch || batch.entryIds.length === 0) return this.apply(downstream, (s) => recordOutcomes(s, cfg.m, outcomes, this.now(), this.rand));
    return this.apply(downstream, (s) => {
      const applied = (s as StoredState).applied ?? {};
      const counted = appliedFilter(applied);
      const fresh = outcomes.filter((o) => o.entryId === undefined || !counted(o.entryId));
      if (fresh.length === 0) return { state: s, transitions: [] };
      const now = this.now();
      const step = recordOutcomes(s, cfg.m, fresh, now, this.rand);
      const state: StoredState = { ...step.state, applied: rememberBatch(applied, batch, now) };
      return { state, transitions: step.transitions };
    });
  }

  /**
   * An operator's forced state. Returns the state it was applied to and the state written by the same
   * compare-and-set, so the audit records exactly this change even when others change the breaker
   * at the same moment; the operator's reason also goes into the transition (written to Postgres from
   * Redis's outbox, so it is kept even if the caller dies before its audit row is written).
   */
  async force(downstream: string, action: ForceAction, actor: string, reason?: string): Promise<{ before: BreakerState; after: BreakerState; transitions: Transition[] }> {
    return this.applyStep(downstream, (s) => force(s, action, this.now(), actor, reason));
  }

  /**
   * Moves breakers whose open period is over to half-open (after a passing health check, if any), and
   * reopens those half-open past `halfOpenMaxMs` without a verdict.
   */
  async tickAll(): Promise<void> {
    const now = this.now();
    for (const [downstream, cfg] of this.settings) {
      const { state } = await this.read(downstream);
      if (state.state === 'half-open' && state.forced === null) {
        if (state.halfOpenAt === undefined || now >= state.halfOpenAt + cfg.m.halfOpenMaxMs) {
          await this.apply(downstream, (s) => boundHalfOpen(s, cfg.m, this.now(), this.rand));
        }
        continue;
      }
      if (state.state !== 'open' || state.forced !== null || state.openUntil === undefined || now < state.openUntil) continue;
      let healthy: boolean | undefined;
      if (cfg.s.healthUrl) {
        if (now - (this.lastHealthCheck.get(downstream) ?? 0) < cfg.s.healthIntervalMs) continue;
        this.lastHealthCheck.set(downstream, now);
        healthy = await probeHealth(cfg.s.healthUrl, cfg.s.healthTimeoutMs);
        if (!healthy) this.deps.log.info({ downstream, url: cfg.s.healthUrl }, 'breaker stays open: health check failed');
      }
      await this.apply(downstream, (s) => tick(s, this.now(), healthy));
    }
  }

  /** A breaker Redis does not have (fresh or flushed Redis) is restored from its Postgres snapshot (BreakerOutbox). */
  async restoreMissing(): Promise<string[]> {
    return this.outbox.restoreMissing();
  }

  /**
   * Writes pending transitions to Postgres (with their alerts, in one transaction) and, when there
   * were some or a second has passed, the current snapshots; returns how many transitions were read
   * (BreakerOutbox).
   */
  async flushOutbox(): Promise<number> {
    return this.outbox.flush();
  }

  /** Background upkeep: ticks (open → half-open), outbox to Postgres, restores. */
  start(opts: { tickMs?: number; flushMs?: number } = {}): void {
    const guard = (what: string, f: () => Promise<unknown>) => () =>
      void f().catch((err: Error) => this.deps.log.warn({ err: err.message, what }, 'breaker upkeep failed; retrying'));
    const t1 = setInterval(guard('tick', () => this.tickAll()), opts.tickMs ?? 200);
    // The outbox is looked at often (a breaker alert should reach its receivers within a second or
    // two); restores, which read Postgres, once a second.
    let restoredAt = 0;
    const t2 = setInterval(
      guard('outbox', async () => {
        if (this.now() - restoredAt >= 1000) {
          restoredAt = this.now();
          await this.restoreMissing();
        }
        await this.flushOutbox();
      }),
      opts.flushMs ?? 200,
    );
    t1.unref();
    t2.unref();
    this.timers.push(t1, t2);
  }

  close(): void {
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
  }
}

async function probeHealth(url: string, timeoutMs: number): Promise<boolean> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
    return res.ok;
  } catch {
    return false;
  }
}
