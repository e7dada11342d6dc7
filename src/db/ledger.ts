/** Repository of the period usage ledger (usage_ledger). */
import { inArray, sql } from 'drizzle-orm';
import type { Period } from '../core/periods';
import type { Db } from './client';
import { usageLedger } from './schema';

export interface UsageEntry {
  quotaId: string;
  tenantId: string;
  period: Period;
  window: number;
  used: number;
}

/** Upserts usage; a value never goes down (several writers, snapshots taken at different times). */
export async function saveUsage(db: Db, entries: readonly UsageEntry[]): Promise<void> {
  for (let i = 0; i < entries.length; i += 500) {
    const chunk = entries.slice(i, i + 500);
    await db
      .insert(usageLedger)
      .values(chunk.map((e) => ({ quotaId: e.quotaId, tenantId: e.tenantId, period: e.period, windowStart: new Date(e.window), used: e.used })))
      .onConflictDoUpdate({
        target: [usageLedger.quotaId, usageLedger.tenantId, usageLedger.period, usageLedger.windowStart],
        set: { used: sql`GREATEST(${usageLedger.used}, excluded.used)`, updatedAt: sql`now()` },
      });
  }
}

/** Usage recorded for the given window starts. */
export async function loadUsage(db: Db, windowStarts: readonly number[]): Promise<UsageEntry[]> {
  const rows = await db
    .select()
    .from(usageLedger)
    .where(inArray(usageLedger.windowStart, windowStarts.map((w) => new Date(w))));
  return rows.map((r) => ({ quotaId: r.quotaId, tenantId: r.tenantId, period: r.period, window: r.windowStart.getTime(), used: r.used }));
}
