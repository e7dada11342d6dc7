/**
 * Read models of governance state for the API, the dashboard, the sync and the observer's samples:
 * period usage, counters, what is in flight, admissions per minute, flow samples and decision records.
 */
import { scanTargets } from './maintenance';
import { PERIODS, windowsAt, type Period } from '../core/periods';
import { pipelineReplies } from './connection';
import { jobKey } from './keys';
import { GovernanceStore } from './store';

/** One flow sample of a downstream (see ReadModels.pushFlowSample). */
export interface FlowSample {
  at: number;
  admitted: number;
  deadLettered: number;
  waiting: number;
  inFlight: number;
  capacity: number;
  /** The breaker's window then (calls and failure rate), when the downstream has a breaker. */
  breaker?: { state: string; calls: number; failureRate: number };
}

export class ReadModels extends GovernanceStore {
  /** Period usage of every quota state in Redis, for the current windows only. */
  async usage(now = this.now()): Promise<Array<{ quotaId: string; tenantId: string; period: Period; window: number; used: number }>> {
    const windows = windowsAt(now);
    const prefix = this.keys.quotaStatePattern().slice(0, -1);
    const out: Array<{ quotaId: string; tenantId: string; period: Period; window: number; used: number }> = [];
    // Every master on a cluster (the governance slot's keys are on one of them; SCAN has no key to route by).
    for (const node of scanTargets(this.redis)) {
      let cursor = '0';
      do {
        const [next, keys] = await node.scan(cursor, 'MATCH', this.keys.quotaStatePattern(), 'COUNT', 1000);
        cursor = next;
        if (keys.length === 0) continue;
        const pipe = this.redis.pipeline();
        for (const k of keys) pipe.hmget(k, 'hw', 'hn', 'dw', 'dn', 'mw', 'mn');
        const res = (await pipe.exec()) ?? [];
        keys.forEach((k, i) => {
          const rest = k.slice(prefix.length);
          const colon = rest.indexOf(':');
          const quotaId = rest.slice(0, colon);
          const tenantId = rest.slice(colon + 1);
          const v = (res[i]?.[1] ?? []) as Array<string | null>;
          PERIODS.forEach((p, j) => {
            const window = Number(v[j * 2]);
            if (window === windows[p].start) out.push({ quotaId, tenantId, period: p, window, used: Number(v[j * 2 + 1] ?? 0) });
          });
        });
      } while (cursor !== '0');
    }
    return out;
  }

  async usageRestored(): Promise<boolean> {
    return (await this.redis.exists(this.keys.usageRestored())) === 1;
  }

  async statsRestored(downstream: string | undefined): Promise<boolean> {
    return (await this.redis.exists(this.keys.statsRestored(downstream))) === 1;
  }

  async inFlightCount(downstream: string): Promise<number> {
    return this.redis.zcard(this.keys.inflight(downstream));
  }

  async stats(downstream: string | undefined): Promise<Record<string, number>> {
    const raw = await this.redis.hgetall(this.keys.stats(downstream));
    return Object.fromEntries(Object.entries(raw).map(([k, v]) => [k, Number(v)]));
  }

  /** Cost units in flight per tenant on a downstream. */
  async inFlightByTenant(downstream: string): Promise<Record<string, number>> {
    const raw = await this.redis.hgetall(this.keys.downstream(downstream, 'tenantInflight'));
    return Object.fromEntries(Object.entries(raw).map(([k, v]) => [k, Number(v)]).filter(([, n]) => (n as number) > 0));
  }

  /** Cost units admitted per minute start (ms), per tenant, for the last `minutes` complete minutes and this one. */
  async admissionsByMinute(downstream: string, minutes: number, now = this.now()): Promise<Array<{ minute: number; byTenant: Record<string, number> }>> {
    const current = now - (now % 60_000);
    const starts = Array.from({ length: minutes + 1 }, (_, i) => current - i * 60_000);
    const pipe = this.redis.pipeline();
    for (const m of starts) pipe.hgetall(this.keys.downstreamOf(downstream, 'admissions', m));
    const res = (await pipe.exec()) ?? [];
    return starts.map((minute, i) => ({
      minute,
      byTenant: Object.fromEntries(Object.entries((res[i]?.[1] ?? {}) as Record<string, string>).map(([t, n]) => [t, Number(n)])),
    }));
  }

  /**
   * The records governance holds for an ingress id: its first job's, and those of later jobs that
   * reused the id (see includes/instance.lua), with their job keys.
   */
  async findInstances(ingressJobId: string): Promise<Array<{ key: string; record: Record<string, string> }>> {
    const base = jobKey(ingressJobId);
    const [first, later] = await Promise.all([this.redis.hgetall(this.keys.record(base)), this.redis.hvals(this.keys.instances(base))]);
    const keys = [...new Set(later.filter((k) => k !== base))];
    const records = keys.length > 0 ? await Promise.all(keys.map((k) => this.redis.hgetall(this.keys.record(k)))) : [];
    return [{ key: base, record: first }, ...keys.map((key, i) => ({ key, record: records[i]! }))].filter((r) => Object.keys(r.record).length > 0);
  }

  /**
   * Flow samples of a downstream, newest first, kept for 15 minutes' worth (FLOW_SAMPLES at the
   * observer's interval): counters as they were then (cumulative admitted and dead-lettered) and levels
   * (waiting, in flight, effective capacity).
   */
  async pushFlowSample(downstream: string, sample: FlowSample, keep: number): Promise<void> {
    const key = this.keys.downstream(downstream, 'flowSamples');
    await this.redis.multi().lpush(key, JSON.stringify(sample)).ltrim(key, 0, keep - 1).exec();
  }

  async flowSamples(downstream: string): Promise<FlowSample[]> {
    return (await this.redis.lrange(this.keys.downstream(downstream, 'flowSamples'), 0, -1)).map((s) => JSON.parse(s) as FlowSample);
  }

  /** Each job's record state (`st`), or null where it has no record (one round trip). */
  async recordStates(keys: readonly string[]): Promise<Array<string | null>> {
    if (keys.length === 0) return [];
    const pipe = this.redis.pipeline();
    for (const k of keys) pipe.hget(this.keys.record(k), 'st');
    return (await pipelineReplies(pipe)) as Array<string | null>;
  }

  async findRecord(key: string): Promise<Record<string, string> | undefined> {
    const rec = await this.redis.hgetall(this.keys.record(key));
    return Object.keys(rec).length > 0 ? rec : undefined;
  }
}
