/**
 * The governance state operations of the gate and observer, each one atomic Lua script call on the
 * keys of one downstream. Callers batch; this module only maps arguments and results.
 */
import type { Redis } from 'ioredis';
import { Keys, UNROUTED } from './keys';
import { scriptsFor, type Scripts } from './scripts';

export type AdmitCode = 'A' | 'R' | 'F';
export type Outcome = 'completed' | 'failed' | 'vanished';

export interface AdmitItem {
  ingressJobId: string;
  tenantId: string;
  name: string;
}

export interface DeadLetterItem {
  ingressJobId: string;
  reason: string;
  code: string;
  message: string;
  tenantId?: string;
}

export class Governance {
  private readonly scripts: Scripts;

  constructor(
    private readonly redis: Redis,
    readonly keys: Keys,
    private readonly retentionMs: number,
    private readonly now: () => number = Date.now,
  ) {
    this.scripts = scriptsFor(redis);
  }

  async admit(downstream: string, queue: string, items: readonly AdmitItem[]): Promise<AdmitCode[]> {
    const args: Array<string | number> = [this.keys.recordPrefix(downstream), this.now(), this.retentionMs, downstream, queue];
    for (const it of items) args.push(it.ingressJobId, it.tenantId, it.name);
    return (await this.scripts.admit([this.keys.inflight(downstream), this.keys.stats(downstream)], args)) as AdmitCode[];
  }

  /** Returns, per item, whether this call released it (false: released before or never admitted). */
  async release(downstream: string, items: ReadonlyArray<{ ingressJobId: string; outcome: Outcome }>): Promise<boolean[]> {
    const args: Array<string | number> = [this.keys.recordPrefix(downstream), this.now(), this.retentionMs];
    for (const it of items) args.push(it.ingressJobId, it.outcome);
    const out = await this.scripts.release([this.keys.inflight(downstream), this.keys.stats(downstream)], args);
    return out.map((n) => n === 1);
  }

  /** Records refusals; `downstream` undefined for jobs refused before routing. Returns 'N' new / 'E' existing. */
  async deadLetter(downstream: string | undefined, items: readonly DeadLetterItem[]): Promise<Array<'N' | 'E'>> {
    const tag = downstream ?? UNROUTED;
    const args: Array<string | number> = [this.keys.recordPrefix(tag), this.now(), this.retentionMs, downstream ?? ''];
    for (const it of items) args.push(it.ingressJobId, it.reason, it.code, it.message, it.tenantId ?? '');
    return (await this.scripts.deadLetter([this.keys.stats(tag)], args)) as Array<'N' | 'E'>;
  }

  /** Adds a Postgres snapshot to the counters once per Redis lifetime; false if already done. */
  async restoreStats(tag: string, counters: Record<string, number>): Promise<boolean> {
    const args = Object.entries(counters).flatMap(([k, v]) => [k, v]);
    return (await this.scripts.restoreStats([this.keys.stats(tag), this.keys.statsRestored(tag)], args)) === 1;
  }

  async statsRestored(tag: string): Promise<boolean> {
    return (await this.redis.exists(this.keys.statsRestored(tag))) === 1;
  }

  async inFlightCount(downstream: string): Promise<number> {
    return this.redis.zcard(this.keys.inflight(downstream));
  }

  async readStats(tag: string): Promise<Record<string, number>> {
    const raw = await this.redis.hgetall(this.keys.stats(tag));
    return Object.fromEntries(Object.entries(raw).map(([k, v]) => [k, Number(v)]));
  }

  /** The decision record of a job, searched under every given tag (downstreams and unrouted). */
  async findRecord(ingressJobId: string, tags: readonly string[]): Promise<Record<string, string> | undefined> {
    const all = [...tags, UNROUTED];
    const pipe = this.redis.pipeline();
    for (const t of all) pipe.hgetall(this.keys.record(t, ingressJobId));
    const res = (await pipe.exec()) ?? [];
    for (const [err, val] of res) {
      if (err) throw err;
      if (val && Object.keys(val as object).length > 0) return val as Record<string, string>;
    }
    return undefined;
  }
}
