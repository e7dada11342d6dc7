/**
 * Keeps the per-downstream counters durable: snapshots them from Redis to Postgres periodically and
 * restores them into a Redis that lost them (fresh or flushed). A Postgres outage only delays the
 * next snapshot; it never stops the observer.
 */
import type { Logger } from 'pino';
import type { Database } from '../db/client';
import { loadCounters, saveCounters } from '../db/counters';
import type { Governance } from '../redis/governance';
import { UNROUTED } from '../redis/keys';

export class CounterSync {
  private timer?: NodeJS.Timeout;
  private running?: Promise<void>;

  constructor(
    private readonly governance: Governance,
    private readonly database: Database,
    private readonly tags: readonly string[],
    private readonly log: Logger,
    private readonly intervalMs = 10_000,
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.tick(), this.intervalMs);
    this.timer.unref();
  }

  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.running;
    await this.tick(); // last snapshot on the way out
  }

  /** Restores counters missing from Redis; returns the tags restored. */
  async restore(): Promise<string[]> {
    const saved = await loadCounters(this.database.db);
    const restored: string[] = [];
    for (const tag of [...this.tags, UNROUTED]) {
      const counters = saved.get(tag);
      if (counters && (await this.governance.restoreStats(tag, counters))) restored.push(tag);
    }
    if (restored.length > 0) this.log.info({ restored }, 'counters restored from Postgres into Redis');
    return restored;
  }

  async tick(): Promise<void> {
    if (this.running) return this.running;
    this.running = (async () => {
      try {
        for (const tag of [...this.tags, UNROUTED]) {
          const counters = await this.governance.readStats(tag);
          if (Object.keys(counters).length > 0) await saveCounters(this.database.db, tag, counters);
        }
      } catch (err) {
        this.log.warn({ err: (err as Error).message }, 'counter snapshot to Postgres failed; retrying next interval');
      } finally {
        this.running = undefined;
      }
    })();
    return this.running;
  }
}
