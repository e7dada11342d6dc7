/**
 * What governance state Redis still lacks after it lost it (a flushed or replaced Redis), for
 * `/readyz`: Postgres holds quota and throttle definitions, counters or period usage that the
 * observer's sync (src/governance/sync.ts) has not restored into this Redis yet. A fresh install has
 * nothing saved, so nothing to restore.
 */
import { windowsAt } from '../core/periods';
import type { Database } from '../db/client';
import { loadCounters } from '../db/counters';
import { loadUsage } from '../db/ledger';
import { currentVersion } from '../db/quotas';
import type { Governance } from '../redis/governance';
import { UNROUTED_ROW } from './sync';


/** Undefined when nothing is pending; else what is still being restored, in words. */
export async function pendingRestore(governance: Governance, database: Database, downstreams: readonly string[], now: number): Promise<string | undefined> {
  const pending: string[] = [];
  const [pgVersion, redisVersion] = await Promise.all([currentVersion(database.db), governance.mirror.version()]);
  if (pgVersion !== redisVersion) pending.push(`quota and throttle definitions (Redis at version ${redisVersion}, Postgres at ${pgVersion})`);
  const saved = await loadCounters(database.db);
  const tags: Array<string | undefined> = [...downstreams, undefined];
  const counters: string[] = [];
  for (const tag of tags) {
    if (saved.has(tag ?? UNROUTED_ROW) && !(await governance.reads.statsRestored(tag))) counters.push(tag ?? 'unrouted');
  }
  if (counters.length > 0) pending.push(`counters of ${counters.join(', ')}`);
  if (!(await governance.reads.usageRestored())) {
    const w = windowsAt(now);
    const usage = await loadUsage(database.db, [w.hour.start, w.day.start, w.month.start]);
    if (usage.some((e) => e.window === w[e.period].start)) pending.push('period usage');
  }
  return pending.length > 0 ? `restoring governance state from Postgres into Redis: ${pending.join('; ')}` : undefined;
}
