/**
 * Keeps the per-downstream counters durable: snapshots them from Redis to Postgres periodically and
 * restores them into a Redis that lost them (fresh or flushed). A tag whose counters were not
 * restored into this Redis yet is never snapshotted, so a flush cannot overwrite the saved totals
 * with the small counts made since. A Postgres outage only delays the next round.
 */
import type { Logger } from 'pino';
import type { Database } from '../db/client';
import { loadCounters, saveCounters } from '../db/counters';
import type { Governance } from '../redis/governance';

/** Row name of the counters of jobs refused before routing. */
const UNROUTED_ROW = '~';

export class CounterSync {
  private timer?: NodeJS.Timeout;
  private running?: Promise<void>;
  /** Downstream names, and undefined for the counters of jobs refused before routing. */
  private readonly tags: Array<string | undefined>;

  constructor(
    private readonly governance: Governance,
    private readonly database: Database,
    downstreams: readonly string[],
    private readonly log: Logger,
    private readonly intervalMs = 10_000,
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

  /** One round: restore what this Redis lacks, then snapshot what it has. Never throws. */
  tick(): Promise<void> {
    if (this.running) return this.running;
    this.running = (async () => {
      try {
        const missing = [];
        for (const tag of this.tags) if (!(await this.governance.statsRestored(tag))) missing.push(tag);
        if (missing.length > 0) {
          const saved = await loadCounters(this.database.db);
          const restored = [];
          for (const tag of missing) {
            if (await this.governance.restoreStats(tag, saved.get(tag ?? UNROUTED_ROW) ?? {})) restored.push(tag ?? UNROUTED_ROW);
          }
          if (restored.some((t) => saved.has(t))) this.log.info({ restored }, 'counters restored from Postgres into Redis');
        }
        for (const tag of this.tags) {
          const counters = await this.governance.readStats(tag);
          if (Object.keys(counters).length > 0) await saveCounters(this.database.db, tag ?? UNROUTED_ROW, counters);
        }
      } catch (err) {
        this.log.warn({ err: (err as Error).message }, 'counter sync with Postgres failed; retrying next interval');
      } finally {
        this.running = undefined;
      }
    })();
    return this.running;
  }
}
