/**
 * Runs the circuit breakers: the pure state machine (src/core/breaker.ts) applied to the state in
 * Redis with compare-and-set, so any number of observers and API processes agree; time-driven moves
 * (open → half-open at openUntil, after a health check when the downstream has one); operators'
 * forced states; the outbox of transitions written to Postgres (never ahead of Redis: it is written
 * from Redis's outbox); and restoring a breaker Redis lost from its Postgres snapshot.
 */
import type { Logger } from 'pino';
import { eq, sql } from 'drizzle-orm';
import type { BreakerSettings } from '../contracts/breakers';
import type { Config } from '../config/file';
import {
  boundHalfOpen,
  countsAsFailure,
  force,
  INITIAL_BREAKER,
  recordOutcomes,
  retryAfterOf,
  tick,
  type BreakerConfig,
  type BreakerOutcome,
  type BreakerState,
  type ForceAction,
  type Step,
  type Transition,
} from '../core/breaker';
import type { Database } from '../db/client';
import { breakerSnapshots, breakerTransitions } from '../db/schema';
import type { Tx } from '../db/quotas';
import type { Metrics } from '../observability/metrics';
import type { Governance } from '../redis/governance';

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

/** An execution event the observer passes on: a job ended, or one of its attempts failed. */
export interface ExecEvent {
  /** The job key of the ingress job behind it (src/redis/keys.ts). */
  key: string;
  execJobId: string;
  /** `removed`: removed before it ended (neither a success nor a failure of the downstream). */
  kind: 'completed' | 'failed' | 'retry' | 'removed';
  /** When it happened (the event's time). */
  at: number;
  /** When the attempt started, if the observer saw its 'active' event. */
  startedAt?: number;
  /** The breaker generation the job was admitted in (from its record). */
  gen?: number;
  /** For failures: "Name: message" of the error (its stack's first line), or the failed reason. */
  errorText?: string;
  /** The failed reason the event carried (used when the job is already removed). */
  failedReason?: string;
  /** The id of the stream entry that carried the event (for de-duplication of redelivered batches). */
  entryId?: string;
}

/**
 * The stream entries one observer call fed to a breaker. An observer acknowledges a batch only after
 * feeding it, so a batch whose observer died in between is redelivered (claimed by another observer):
 * the breaker remembers which entries it already counted, in its state, in the same compare-and-set
 * as the counts, and skips them the second time.
 */
export interface EventBatch {
  /** The observer's consumer name in the group. */
  consumer: string;
  /**
   * Read with XREADGROUP '>': never delivered before, and a contiguous range of the stream nobody
   * else was given (remembered as its first and last id). Otherwise claimed from a dead observer
   * (remembered id by id).
   */
  fresh: boolean;
  /** Every entry id of the batch, with or without an outcome. */
  entryIds: readonly string[];
}

/** A batch the breaker counted: a fresh range, or the ids of a claimed batch. */
interface AppliedBatch {
  at: number;
  from?: string;
  to?: string;
  ids?: string[];
}

/** The stored breaker state: the machine's state plus, per observer, the batches it last counted. */
type StoredState = BreakerState & { applied?: Record<string, AppliedBatch[]> };

/** Batches remembered per observer (one is enough unless an acknowledgement failed) and observers kept. */
const APPLIED_PER_CONSUMER = 4;
const APPLIED_CONSUMERS = 16;

/** A stream entry id ('<ms>-<seq>') as two numbers, for ordering. */
function entryId(id: string): [number, number] {
  const dash = id.indexOf('-');
  return dash < 0 ? [Number(id), 0] : [Number(id.slice(0, dash)), Number(id.slice(dash + 1))];
}

function compareEntryIds(a: [number, number], b: [number, number]): number {
  return a[0] !== b[0] ? a[0] - b[0] : a[1] - b[1];
}

/** A test of "was this stream entry counted already?", built once per observe call. */
function appliedFilter(applied: Record<string, AppliedBatch[]>): (entryId: string) => boolean {
  const ids = new Set<string>();
  const ranges: Array<[[number, number], [number, number]]> = [];
  for (const batches of Object.values(applied)) {
    for (const b of batches) {
      b.ids?.forEach((id) => ids.add(id));
      if (b.from !== undefined && b.to !== undefined) ranges.push([entryId(b.from), entryId(b.to)]);
    }
  }
  return (id) => {
    if (ids.has(id)) return true;
    if (ranges.length === 0) return false;
    const e = entryId(id);
    return ranges.some(([from, to]) => compareEntryIds(from, e) <= 0 && compareEntryIds(e, to) <= 0);
  };
}

function rememberBatch(applied: Record<string, AppliedBatch[]>, batch: EventBatch, now: number): Record<string, AppliedBatch[]> {
  // A fresh batch comes from XREADGROUP '>' in stream order: its first and last ids bound it.
  const rec: AppliedBatch = batch.fresh
    ? { at: now, from: batch.entryIds[0]!, to: batch.entryIds[batch.entryIds.length - 1]! }
    : { at: now, ids: [...batch.entryIds] };
  const next = { ...applied, [batch.consumer]: [...(applied[batch.consumer] ?? []), rec].slice(-APPLIED_PER_CONSUMER) };
  const lastAt = (list: AppliedBatch[]) => list[list.length - 1]?.at ?? 0;
  return Object.fromEntries(
    Object.entries(next)
      .sort(([, a], [, b]) => lastAt(b) - lastAt(a))
      .slice(0, APPLIED_CONSUMERS),
  );
}

/** What the breaker's compare-and-set stores: the state as JSON, and the fields the gates' scripts read. */
function storedFields(s: BreakerState, settings: BreakerSettings) {
  return {
    json: JSON.stringify(s),
    st: s.state,
    gen: s.gen,
    observeOnly: settings.observeOnly,
    // Permits given back by probes whose outcome did not count go to other jobs (the gates' scripts count
    // admissions of this generation against this number).
    probes: settings.halfOpenProbes + (s.state === 'half-open' ? (s.probeReleased ?? 0) : 0),
    ...(s.closedAt !== undefined ? { closedAt: s.closedAt } : {}),
    rampMs: settings.replayRampMs,
    ...(s.openUntil !== undefined && s.state === 'open' ? { openUntil: s.openUntil } : {}),
  };
}

/**
 * What an execution event tells the breaker: a success or a failure (slow by how long the attempt
 * took, failed or not), an outcome that does not count (`ignored`: an ignored error, a job removed
 * before it ended; a probe's permit comes back), or nothing (no generation known; a job sent back to
 * wait without an error, which ends later).
 */
export function outcomeOfEvent(e: ExecEvent, settings: { slowCallMs?: number | undefined }, rules: { count: readonly RegExp[]; ignore: readonly RegExp[] }): BreakerOutcome | undefined {
  const gen = e.gen;
  if (gen === undefined) return undefined;
  const slow = settings.slowCallMs !== undefined && e.startedAt !== undefined && e.at - e.startedAt > settings.slowCallMs;
  if (e.kind === 'completed') return { at: e.at, gen, failed: false, slow };
  if (e.kind === 'removed') return { at: e.at, gen, failed: false, slow: false, ignored: true };
  if (e.kind === 'retry' && !e.errorText) return undefined;
  const text = e.errorText ?? '';
  if (!countsAsFailure(text, rules)) return { at: e.at, gen, failed: false, slow: false, ignored: true };
  const retryAfterMs = retryAfterOf(text);
  return { at: e.at, gen, failed: true, slow, ...(retryAfterMs !== undefined ? { retryAfterMs } : {}) };
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
  }

  enabled(downstream: string): boolean {
    return this.settings.has(downstream);
  }

  async read(downstream: string): Promise<{ state: BreakerState; rev: number }> {
    const { json, rev } = await this.deps.governance.readBreaker(downstream);
    return { state: json ? (JSON.parse(json) as BreakerState) : INITIAL_BREAKER, rev };
  }

  /** Applies a step of the state machine to the stored state (compare-and-set, retried). */
  private async apply(downstream: string, step: (s: BreakerState) => Step): Promise<Transition[]> {
    return (await this.applyStep(downstream, step)).transitions;
  }

  /** The compare-and-set loop: the state the step was applied to, the state written, and its transitions. */
  private async applyStep(downstream: string, step: (s: BreakerState) => Step): Promise<{ before: BreakerState; after: BreakerState; transitions: Transition[] }> {
    const cfg = this.settings.get(downstream);
    if (!cfg) return { before: INITIAL_BREAKER, after: INITIAL_BREAKER, transitions: [] };
    for (let attempt = 0; attempt < 20; attempt++) {
      const { state, rev } = await this.read(downstream);
      const next = step(state);
      if (next.state === state && next.transitions.length === 0) return { before: state, after: state, transitions: [] };
      const s = next.state;
      const ok = await this.deps.governance.casBreaker(
        downstream,
        rev,
        storedFields(s, cfg.s),
        next.transitions.map((t) => ({ json: JSON.stringify({ downstream, ...t }), from: t.from, to: t.to })),
      );
      if (!ok) continue;
      if (next.transitions.length > 0) await this.announce(downstream, next.transitions);
      return { before: state, after: s, transitions: next.transitions };
    }
    throw new Error(`breaker of ${downstream}: state kept changing under 20 attempts to update it`);
  }

  private async announce(downstream: string, transitions: readonly Transition[]): Promise<void> {
    for (const t of transitions) {
      this.deps.metrics?.breakerTransitions.inc({ downstream, from: t.from, to: t.to });
      this.deps.log[t.to === 'open' ? 'warn' : 'info'](
        { downstream, from: t.from, to: t.to, reason: t.reason, gen: t.gen, ...(t.openUntil ? { openUntil: new Date(t.openUntil).toISOString() } : {}) },
        `breaker ${t.to}`,
      );
    }
    // Half-open lets probes through, closed lets held jobs replay: the schedulers must look again.
    if (transitions.some((t) => t.to !== 'open')) await this.deps.governance.publishWake([downstream]);
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

  /** A breaker Redis does not have (fresh or flushed Redis) is restored from its Postgres snapshot. */
  async restoreMissing(): Promise<string[]> {
    const restored: string[] = [];
    for (const [downstream, cfg] of this.settings) {
      const { rev } = await this.deps.governance.readBreaker(downstream);
      if (rev !== 0) continue;
      const rows = await this.deps.database.db.select().from(breakerSnapshots).where(eq(breakerSnapshots.downstream, downstream));
      const row = rows[0];
      if (!row) continue;
      let s = row.state as BreakerState;
      // A snapshot never resumes mid-probe: half-open comes back as open, due at once.
      if (s.state === 'half-open') s = { ...s, state: 'open', openUntil: this.now() };
      const ok = await this.deps.governance.casBreaker(
        downstream,
        0,
        storedFields(s, cfg.s),
        [],
      );
      if (ok) {
        restored.push(downstream);
        this.deps.log.warn({ downstream, state: s.state, gen: s.gen, ...(s.openUntil ? { openUntil: new Date(s.openUntil).toISOString() } : {}) }, 'breaker restored from its Postgres snapshot');
      }
    }
    return restored;
  }

  private snapshotsAt = 0;

  /**
   * Writes pending transitions to Postgres (with their alerts, in one transaction) and, when there
   * were some or a second has passed, the current snapshots; returns how many transitions were read.
   */
  async flushOutbox(): Promise<number> {
    const { governance, database } = this.deps;
    const entries = await governance.breakerOutbox(200);
    if (entries.length > 0) {
      const parsed = entries.map((e) => JSON.parse(e) as Transition & { downstream: string });
      const rows = parsed.map((t) => ({
        downstream: t.downstream,
        fromState: t.from,
        toState: t.to,
        reason: t.reason,
        counters: t.counters,
        gen: t.gen,
        actor: t.actor,
        at: new Date(t.at),
        openUntil: t.openUntil !== undefined ? new Date(t.openUntil) : null,
      }));
      await database.db.transaction(async (tx) => {
        const written = await tx
          .insert(breakerTransitions)
          .values(rows)
          .onConflictDoNothing()
          .returning({ downstream: breakerTransitions.downstream, gen: breakerTransitions.gen });
        const isNew = new Set(written.map((w) => `${w.downstream}|${w.gen}`));
        const fresh = parsed.filter((t) => isNew.has(`${t.downstream}|${t.gen}`));
        if (fresh.length > 0 && this.deps.onTransitions) await this.deps.onTransitions(tx, fresh);
      });
    }
    if (entries.length > 0 || this.now() - this.snapshotsAt >= 1000) {
      this.snapshotsAt = this.now();
      for (const downstream of this.settings.keys()) {
        // Snapshots copy Redis: Postgres is never ahead of it.
        const { json } = await governance.readBreaker(downstream);
        if (!json) continue;
        const s = JSON.parse(json) as BreakerState;
        await database.db
          .insert(breakerSnapshots)
          .values({ downstream, state: s, gen: s.gen })
          .onConflictDoUpdate({
            target: breakerSnapshots.downstream,
            set: { state: s, gen: s.gen, updatedAt: sql`now()` },
            setWhere: sql`${breakerSnapshots.gen} <= ${s.gen}`,
          });
      }
    }
    await governance.removeFromBreakerOutbox(entries);
    return entries.length;
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
