/**
 * What every governance store shares: the Redis client, the key layout, the loaded scripts, and the
 * context the governance scripts expect first in ARGV (G, now, retention and the UTC windows of now).
 * The stores are split by concern: decisions (governance.ts), the waiting place (waiting-place.ts),
 * the definitions mirror (definitions-mirror.ts), breaker storage (breaker-store.ts) and the read
 * models behind the API and the dashboard (read-models.ts).
 */
import type { Redis } from 'ioredis';
import { windowsAt } from '../core/periods';
import type { Keys } from './keys';
import { scriptsFor, type Scripts } from './scripts';

export type Arg = string | number;

export interface StoreDeps {
  redis: Redis;
  keys: Keys;
  /** How long decision records are kept (ms). */
  retentionMs: number;
  /** Every downstream of the installation (a release may wake a tenant's flows on any). */
  downstreams: readonly string[];
  now: () => number;
}

export abstract class GovernanceStore {
  protected readonly redis: Redis;
  readonly keys: Keys;
  protected readonly scripts: Scripts;
  protected readonly retentionMs: number;
  protected readonly downstreams: readonly string[];
  protected readonly now: () => number;

  constructor(deps: StoreDeps) {
    this.redis = deps.redis;
    this.keys = deps.keys;
    this.retentionMs = deps.retentionMs;
    this.downstreams = deps.downstreams;
    this.now = deps.now;
    this.scripts = scriptsFor(deps.redis);
  }

  /** G, now, retention and the UTC windows of now, as every governance script expects them. */
  protected context(now = this.now()): Arg[] {
    const w = windowsAt(now);
    const iso = (ms: number) => new Date(ms).toISOString();
    return [this.keys.gov, now, this.retentionMs, w.hour.start, w.hour.end, iso(w.hour.end), w.day.start, w.day.end, iso(w.day.end), w.month.start, w.month.end, iso(w.month.end)];
  }
}
