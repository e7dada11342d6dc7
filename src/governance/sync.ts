/**
 * Keeps Redis (live state) and Postgres (durable truth) in step, in the background of the observer:
 *
 * - counters: snapshotted to Postgres; restored once into a Redis that lost them, added to the counts
 *   made since the loss. A counter not restored yet is never snapshotted, so a flush cannot overwrite
 *   the saved totals with the small counts made since.
 * - quota and throttle definitions: when the Redis mirror's version differs from Postgres's (a change
 *   that failed to mirror, or a flushed Redis), the mirror is rebuilt from Postgres.
 * - period usage: snapshotted to the usage ledger; restored once into a Redis that lost it. Drift on
 *   a loss is bounded by one interval of admissions (they are counted again from zero meanwhile).
 *
 * - idempotency keys past their day: deleted (500 a round), so keys of a burst of creating POSTs do not
 *   stay in Postgres until the next keyed request happens to prune them.
 *
 * A Postgres outage only delays the next round; nothing here stops the gate.
 */
import type { Logger } from 'pino';
import { windowsAt } from '../core/periods';
import type { QuotaDef } from '../core/quota';
import type { Database } from '../db/client';
import { loadCounters, saveCounters } from '../db/counters';
import { pruneKeys } from '../db/idempotency';
import { loadUsage, saveUsage } from '../db/ledger';
import type { Governance } from '../redis/governance';
import type { Definitions } from './definitions';

/** Row name of the counters of jobs refused before routing. */
export const UNROUTED_ROW = '~';

export class GovernanceSync {
  private timer?: NodeJS.Timeout;
  private running?: Promise<void>;
  /** Downstream names, and undefined for the counters of jobs refused before routing. */
  private readonly tags: Array<string | undefined>;

  constructor(
    private readonly governance: Governance,
    private readonly database: Database,
    private readonly definitions: Definitions,
    downstreams: readonly string[],
    private readonly log: Logger,
    private readonly defaults: QuotaDef,
    /** Re-creates accounting of execution jobs that outlived the governance state (see adopt.ts). */
    private readonly adoptLiveJobs: () => Promise<number>,
    private readonly intervalMs = 5_000,
    private readonly now: () => number = Date.now,
  ) {
    this.tags = [...downstreams, undefined];
  }

  start(): void {
    void this.tick();
    this.timer = setInterval(() => void this.tick(), this.intervalMs);
    this.timer.unref();
  }

  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.running;
    await this.tick(); // last snapshot on the way out
  }

  /** One round; never throws. */
  tick(): Promise<void> {
    if (this.running) return this.running;
    this.running = (async () => {
      for (const [what, step] of [
        // The default quota comes from config; rewriting it each round also restores it after a flush.
        ['default quota', () => this.governance.mirror.writeDefaultQuota(this.defaults)],
        ['definitions', () => this.definitions.repairMirror()],
        ['counters', () => this.syncCounters()],
        ['usage', () => this.syncUsage()],
        ['idempotency keys', () => pruneKeys(this.database.db)],
      ] as const) {
        try {
          await step();
        } catch (err) {
          this.log.warn({ err: (err as Error).message, what }, 'sync with Postgres failed; retrying next interval');
        }
      }
    })().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  private async syncCounters(): Promise<void> {
    const missing = [];
    for (const tag of this.tags) if (!(await this.governance.reads.statsRestored(tag))) missing.push(tag);
    if (missing.length > 0) {
      const saved = await loadCounters(this.database.db);
      const restored = [];
      for (const tag of missing) {
        const row = tag ?? UNROUTED_ROW;
        if (await this.governance.restoreStats(tag, saved.get(row) ?? {})) restored.push(row);
      }
      if (restored.some((t) => saved.has(t))) this.log.info({ restored }, 'counters restored from Postgres into Redis');
    }
    for (const tag of this.tags) {
      const counters = await this.governance.reads.stats(tag);
      if (Object.keys(counters).length > 0) await saveCounters(this.database.db, tag ?? UNROUTED_ROW, counters);
    }
  }

  private async syncUsage(): Promise<void> {
    const now = this.now();
    if (!(await this.governance.reads.usageRestored())) {
      const adopted = await this.adoptLiveJobs();
      if (adopted > 0) this.log.warn({ adopted }, 'governance state was lost: live execution jobs re-counted as in flight');
      const w = windowsAt(now);
      const saved = await loadUsage(this.database.db, [w.hour.start, w.day.start, w.month.start]);
      const current = saved.filter((e) => e.window === w[e.period].start);
      if (await this.governance.restoreUsage(current)) {
        if (current.length > 0) this.log.info({ entries: current.length }, 'period usage restored from the Postgres ledger into Redis');
      }
    }
    await saveUsage(this.database.db, await this.governance.reads.usage(now));
  }
}
