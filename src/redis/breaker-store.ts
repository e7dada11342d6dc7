/**
 * Breaker storage: each downstream's breaker as the state machine (src/core/breaker.ts) stored it,
 * changed by compare-and-set (breakerCas-3.lua) with its transitions pushed to an outbox in the same
 * step, the outbox the observers write to Postgres, and the state the scheduler reads.
 */
import { scriptKeys } from './script-keys';
import { type Arg, GovernanceStore } from './store';

export class BreakerStore extends GovernanceStore {
  /** A downstream's breaker state as the state machine stored it, with its revision (0: none yet). */
  async read(downstream: string): Promise<{ json?: string; rev: number }> {
    const [json, rev] = await this.redis.hmget(this.keys.downstream(downstream, 'breaker'), 'json', 'rev');
    return { ...(json ? { json } : {}), rev: Number(rev ?? 0) };
  }

  /** Compare-and-set of the breaker state; the transitions go to the outbox in the same step. */
  async cas(
    downstream: string,
    rev: number,
    fields: { json: string; st: string; gen: number; observeOnly: boolean; probes: number; closedAt?: number; rampMs: number; openUntil?: number },
    transitions: ReadonlyArray<{ json: string; from: string; to: string }>,
  ): Promise<boolean> {
    const args: Arg[] = [
      this.keys.gov,
      downstream,
      String(rev),
      fields.json,
      fields.st,
      fields.gen,
      fields.observeOnly ? '1' : '0',
      fields.probes,
      fields.closedAt ?? '',
      fields.rampMs,
      fields.openUntil ?? '',
    ];
    for (const t of transitions) args.push(t.json, t.from, t.to);
    return (await this.scripts.breakerCas(scriptKeys.breakerCas(this.keys, downstream), args)) === 1;
  }

  /** The breaker state the scheduler sees ('closed' when none; observe-only breakers read as closed). */
  async gate(downstream: string): Promise<'closed' | 'open' | 'half-open'> {
    const [st, obs] = await this.redis.hmget(this.keys.downstream(downstream, 'breaker'), 'st', 'obs');
    return obs === '1' || !st ? 'closed' : (st as 'closed' | 'open' | 'half-open');
  }

  /** Transitions waiting to be written to Postgres, oldest first (up to `n`). */
  async outbox(n: number): Promise<string[]> {
    return (await this.redis.lrange(this.keys.breakerOutbox(), -n, -1)).reverse();
  }

  /**
   * Drops these outbox entries (written to Postgres). By value, not by count: two observers that
   * flushed the same entries at once each remove them once, and nothing pushed meanwhile is lost.
   */
  async removeFromOutbox(entries: readonly string[]): Promise<void> {
    if (entries.length === 0) return;
    const pipe = this.redis.pipeline();
    for (const e of entries) pipe.lrem(this.keys.breakerOutbox(), -1, e);
    await pipe.exec();
  }

  /** Transition counts per downstream, from and to state (for metrics). */
  async transitionCounts(): Promise<Array<{ downstream: string; from: string; to: string; n: number }>> {
    const raw = await this.redis.hgetall(this.keys.breakerTransitionCounts());
    return Object.entries(raw).map(([k, n]) => {
      const [downstream, from, to] = k.split('|') as [string, string, string];
      return { downstream, from, to, n: Number(n) };
    });
  }
}
