/**
 * The breakers' Postgres side: the outbox of transitions Redis recorded, written to Postgres with their
 * alerts (never ahead of Redis: it is written from Redis's outbox), the snapshots of each breaker's
 * state, and restoring a breaker Redis lost (fresh or flushed Redis) from its snapshot.
 */
import { eq, sql } from 'drizzle-orm';
import type { BreakerSettings } from '../contracts/breakers';
import type { BreakerState, Transition } from '../core/breaker';
import { breakerSnapshots, breakerTransitions } from '../db/schema';
import type { BreakerDeps } from './breakers';
import { storedFields } from './breaker-state';

export class BreakerOutbox {
  private snapshotsAt = 0;

  constructor(
    private readonly deps: Pick<BreakerDeps, 'governance' | 'database' | 'log' | 'onTransitions'>,
    /** The enabled breakers, by downstream. */
    private readonly settings: ReadonlyMap<string, { s: BreakerSettings }>,
    private readonly now: () => number,
  ) {}

  /** A breaker Redis does not have (fresh or flushed Redis) is restored from its Postgres snapshot. */
  async restoreMissing(): Promise<string[]> {
    const restored: string[] = [];
    for (const [downstream, cfg] of this.settings) {
      const { rev } = await this.deps.governance.breakers.read(downstream);
      if (rev !== 0) continue;
      const rows = await this.deps.database.db.select().from(breakerSnapshots).where(eq(breakerSnapshots.downstream, downstream));
      const row = rows[0];
      if (!row) continue;
      let s = row.state as BreakerState;
      // A snapshot never resumes mid-probe: half-open comes back as open, due at once.
      if (s.state === 'half-open') s = { ...s, state: 'open', openUntil: this.now() };
      const ok = await this.deps.governance.breakers.cas(
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

  /**
   * Writes pending transitions to Postgres (with their alerts, in one transaction) and, when there
   * were some or a second has passed, the current snapshots; returns how many transitions were read.
   */
  async flush(): Promise<number> {
    const { governance, database } = this.deps;
    const entries = await governance.breakers.outbox(200);
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
        const { json } = await governance.breakers.read(downstream);
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
    await governance.breakers.removeFromOutbox(entries);
    return entries.length;
  }
}
