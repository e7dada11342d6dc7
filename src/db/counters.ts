/** Repository of the per-downstream counter snapshots (table downstream_counters). */
import { sql } from 'drizzle-orm';
import type { Db } from './client';
import { downstreamCounters } from './schema';

export async function saveCounters(db: Db, downstream: string, counters: Record<string, number>): Promise<void> {
  await db
    .insert(downstreamCounters)
    .values({ downstream, counters })
    .onConflictDoUpdate({ target: downstreamCounters.downstream, set: { counters, updatedAt: sql`now()` } });
}

export async function loadCounters(db: Db): Promise<Map<string, Record<string, number>>> {
  const rows = await db.select().from(downstreamCounters);
  return new Map(rows.map((r) => [r.downstream, r.counters]));
}
