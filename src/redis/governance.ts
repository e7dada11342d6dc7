/**
 * Governance operations of the gate, the observer and the API, each one atomic Lua script call on
 * the governance slot. This module maps arguments and results; the rules are in the scripts (and,
 * for quotas, mirrored in src/core/quota.ts).
 */
import type { Redis } from 'ioredis';
import { PERIODS, windowsAt, type Period } from '../core/periods';
import type { QuotaDef, ThrottleDef } from '../core/quota';
import { encodeQuota, encodeTenantPolicy, encodeThrottle } from './codec';
import type { Policy } from '../core/policy';
import { jobKey, type Keys } from './keys';
import { scriptsFor, type Scripts } from './scripts';
import { ERRORS, isRejectionCode, type RejectionCode } from '../errors';
import { pipelineReplies } from './connection';

export type Outcome = 'completed' | 'failed' | 'vanished';

/** What intake decided for one ingress job; `key` is its job key (src/redis/keys.ts, jobKey). */
export type IntakeVerdict =
  /** Admitted: add it to the execution queue. `again`: an earlier attempt admitted it (the add is idempotent). */
  | { kind: 'admitted'; key: string; again: boolean }
  /** Must wait: store it in the waiting place under its key. */
  | { kind: 'wait'; key: string }
  /** Stored in the waiting place by this call (it came with its payload). */
  | { kind: 'stored'; key: string }
  /** An earlier attempt did the work: it waits already, or it ran. */
  | { kind: 'queued' | 'finished'; key: string }
  /** Refused: dead-letter it. `again`: refused by an earlier attempt (its dead-letter job may be missing). */
  | { kind: 'refused'; key: string; code: RejectionCode; message: string; again: boolean }
  /** Redis's definitions mirror is behind the version given (it lost them): nothing is decided now. */
  | { kind: 'unmirrored' };

/** Identifies one delivery of an ingress job: its id and its stamp (see includes/instance.lua). */
export interface Delivery {
  ingressJobId: string;
  /** The ingress job's creation time, telling a new job that reuses an id from a repeated delivery. */
  stamp: string;
  /**
   * Whether an execution or dead-letter job already has the id of this id's first instance (a custom
   * id seen before); undefined when not looked up (BullMQ's own numeric ids, never handed out twice).
   */
  taken?: boolean;
}

export interface IntakeItem extends Delivery {
  tenantId: string;
  name: string;
  cost: number;
  /** Sent when the job is likely to wait (its downstream had waits): then intake stores it at once. */
  waiting?: { priority: number; payload: string; deadline?: number };
}

export interface WaitItem {
  /** The job key intake gave it. */
  key: string;
  stamp: string;
  tenantId: string;
  name: string;
  cost: number;
  priority: number;
  payload: string;
  /** ms since the epoch; a job still waiting then is refused ('expired'). */
  deadline?: number;
}

export interface DeadLetterItem extends Delivery {
  reason: string;
  code: string;
  message: string;
  tenantId?: string;
}

export interface DrainResult {
  /** When the scheduler should look again (a timer or lease falls due), if ever. */
  nextWake?: number;
  /** More work may be admissible right away. */
  more: boolean;
  admitted: Array<{ id: string; payload: string }>;
  refused: Array<{ id: string; payload: string; message: string; code: string }>;
}

export interface Explanation {
  kind: 'admit' | 'wait' | 'reject';
  quotaId: string;
  reason?: string;
  message?: string;
  until?: number;
  tatAfter?: number;
}

type Arg = string | number;

const INTAKE_KINDS: Record<string, 'admitted' | 'wait' | 'stored' | 'queued' | 'finished'> = { A: 'admitted', R: 'admitted', W: 'wait', S: 'stored', Q: 'queued', F: 'finished' };

const takenArg = (taken: boolean | undefined) => (taken === undefined ? '' : taken ? '1' : '0');

/** intake-1.lua's reply for one job (code, key, detail) as a verdict. */
function intakeVerdict(code: string, key: string, detail: string): IntakeVerdict {
  if (code === 'U') return { kind: 'unmirrored' };
  if (code === 'X' || code === 'D') {
    const bar = detail.indexOf('|');
    const errorCode = detail.slice(0, bar);
    if (!isRejectionCode(errorCode)) throw new Error(`intake refused job ${key} with an unknown code ${JSON.stringify(errorCode)}`);
    return { kind: 'refused', key, code: errorCode, message: detail.slice(bar + 1), again: code === 'D' };
  }
  const kind = INTAKE_KINDS[code];
  if (kind === undefined) throw new Error(`intake answered ${JSON.stringify(code)} for job ${key}`);
  return kind === 'admitted' ? { kind, key, again: code === 'R' } : { kind, key };
}

/** One flow sample of a downstream (see Governance.pushFlowSample). */
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

export class Governance {
  private readonly scripts: Scripts;

  constructor(
    private readonly redis: Redis,
    readonly keys: Keys,
    private readonly retentionMs: number,
    /** Every downstream of the installation (a release may wake a tenant's flows on any). */
    private readonly downstreams: readonly string[],
    private readonly now: () => number = Date.now,
  ) {
    this.scripts = scriptsFor(redis);
  }

  /** G, now, retention and the UTC windows of now, as every governance script expects them. */
  private context(now = this.now()): Arg[] {
    const w = windowsAt(now);
    const iso = (ms: number) => new Date(ms).toISOString();
    return [
      this.keys.gov,
      now,
      this.retentionMs,
      w.hour.start,
      w.hour.end,
      iso(w.hour.end),
      w.day.start,
      w.day.end,
      iso(w.day.end),
      w.month.start,
      w.month.end,
      iso(w.month.end),
    ];
  }

  async intake(
    downstream: string,
    queue: string,
    capacity: number,
    items: readonly IntakeItem[],
    knownVersion = -1,
    backlog?: { maxWaiting?: number; onBacklogFull: 'reject' | 'keep' },
  ): Promise<IntakeVerdict[]> {
    const args = [...this.context(), downstream, queue, capacity, knownVersion, backlog?.maxWaiting ?? '', backlog?.onBacklogFull ?? 'keep'];
    for (const it of items) {
      const w = it.waiting;
      args.push(it.ingressJobId, it.stamp, takenArg(it.taken), it.tenantId, it.name, it.cost, w?.priority ?? 0, w?.payload ?? '', w?.deadline ?? '');
    }
    const raw = await this.scripts.intake([this.keys.inflight(downstream)], args);
    const out: IntakeVerdict[] = [];
    for (let i = 0; i < raw.length; i += 3) out.push(intakeVerdict(raw[i]!, raw[i + 1]!, raw[i + 2]!));
    return out;
  }

  /**
   * Stores waiting jobs; per job 'S' stored, 'E' known already, 'B' refused (the tenant's backlog is
   * full). `shed`: jobs load shedding dead-lettered (from this batch or waiting before), to be added to
   * the dead-letter queue and confirmed.
   */
  async enqueue(
    downstream: string,
    queue: string,
    items: readonly WaitItem[],
    opts: {
      backlog?: { maxWaiting?: number; onBacklogFull: 'reject' | 'keep' };
      shedding?: { high: number; low: number; action: 'dead-letter' | 'delay'; delayMs: number };
      leaseMs?: number;
    } = {},
  ): Promise<{ codes: Array<'S' | 'E' | 'B'>; shed: Array<{ id: string; payload: string; message: string }> }> {
    const b = opts.backlog;
    const sh = opts.shedding;
    const args = [
      ...this.context(),
      downstream,
      queue,
      b?.maxWaiting ?? '',
      b?.onBacklogFull ?? 'keep',
      sh?.high ?? '',
      sh?.low ?? '',
      sh?.action ?? 'dead-letter',
      sh?.delayMs ?? 0,
      opts.leaseMs ?? 30_000,
    ];
    for (const it of items) args.push(it.key, it.stamp, it.tenantId, it.name, it.cost, it.priority, it.payload, it.deadline ?? '');
    const raw = await this.scripts.enqueue([this.keys.inflight(downstream)], args);
    const sep = raw.indexOf('|');
    const shed: Array<{ id: string; payload: string; message: string }> = [];
    for (let i = sep + 1; i < raw.length; i += 3) shed.push({ id: raw[i]!, payload: raw[i + 1]!, message: raw[i + 2]! });
    return { codes: raw.slice(0, sep) as Array<'S' | 'E' | 'B'>, shed };
  }

  async drain(
    downstream: string,
    opts: { capacity: number; maxAdmit: number; leaseMs: number; maxEvaluations: number; shedLow?: number },
  ): Promise<DrainResult> {
    const args = [...this.context(), downstream, opts.capacity, opts.maxAdmit, opts.leaseMs, opts.maxEvaluations, opts.shedLow ?? ''];
    const raw = (await this.scripts.drain([this.keys.inflight(downstream)], args)) as Array<string | number>;
    const nextWake = Number(raw[0]);
    const sep = raw.indexOf('|', 2);
    const admitted: DrainResult['admitted'] = [];
    for (let i = 2; i < sep; i += 2) admitted.push({ id: String(raw[i]), payload: String(raw[i + 1]) });
    const refused: DrainResult['refused'] = [];
    for (let i = sep + 1; i < raw.length; i += 4) {
      refused.push({ id: String(raw[i]), payload: String(raw[i + 1]), message: String(raw[i + 2]), code: String(raw[i + 3]) });
    }
    return { ...(nextWake >= 0 ? { nextWake } : {}), more: Number(raw[1]) === 1, admitted, refused };
  }

  /** Ends the leases of jobs added where they go: their execution queue, or the dead-letter queue. */
  async confirm(downstream: string, ids: readonly string[], to: 'exec' | 'dead-letter' = 'exec'): Promise<number> {
    if (ids.length === 0) return 0;
    return this.scripts.confirm([this.keys.ds(downstream, to === 'exec' ? 'promoting' : 'dlpending')], [this.keys.gov, ...ids]);
  }

  /**
   * Returns, per item, whether this call released it, and the downstreams whose schedulers should
   * look again (a flow woke there, or capacity came back where flows wait for it).
   */
  async release(
    downstream: string,
    items: ReadonlyArray<{ key: string; outcome: Outcome; actualCost?: number; endedAt?: number }>,
    opts: { publish?: boolean } = {},
  ): Promise<{ released: boolean[]; generations: Array<number | undefined>; wake: string[] }> {
    const args: Arg[] = [...this.context(), downstream, this.downstreams.join(','), opts.publish ? this.keys.wakeChannel() : ''];
    for (const it of items) args.push(it.key, it.outcome, it.actualCost ?? '', it.endedAt ?? '');
    const out = await this.scripts.release([this.keys.inflight(downstream)], args);
    const wake = String(out[out.length - 1] ?? '');
    const released: boolean[] = [];
    const generations: Array<number | undefined> = [];
    for (let i = 0; i + 1 < out.length; i += 2) {
      released.push(out[i] === 1);
      generations.push(out[i + 1] === '' ? undefined : Number(out[i + 1]));
    }
    return { released, generations, wake: wake === '' ? [] : wake.split(',') };
  }

  /** Re-evaluates waiting flows of a tenant (or of everyone) after a quota or throttle change. */
  async wake(tenantId?: string): Promise<number> {
    return this.scripts.wake([this.keys.throttles()], [this.keys.gov, this.downstreams.join(','), tenantId ?? '', '0', this.now()]);
  }

  /** After a policy change: re-queues the downstream's tenants in their new tiers and wakes every flow. */
  async repolicy(downstream: string): Promise<number> {
    return this.scripts.wake([this.keys.throttles()], [this.keys.gov, downstream, '', '1', this.now()]);
  }

  /**
   * Records refusals; `downstream` undefined for jobs refused before routing. Per job: whether it was
   * recorded now (false: an earlier attempt did) and its job key, which names its dead-letter job.
   */
  async deadLetter(downstream: string | undefined, items: readonly DeadLetterItem[]): Promise<Array<{ recorded: boolean; key: string }>> {
    const args: Arg[] = [this.keys.gov, this.now(), this.retentionMs, downstream ?? ''];
    for (const it of items) args.push(it.ingressJobId, it.stamp, takenArg(it.taken), it.reason, it.code, it.message, it.tenantId ?? '');
    const raw = await this.scripts.deadLetter([this.keys.stats(downstream)], args);
    const out: Array<{ recorded: boolean; key: string }> = [];
    for (let i = 0; i < raw.length; i += 2) out.push({ recorded: raw[i] === 'N', key: raw[i + 1]! });
    return out;
  }

  /**
   * Admitted jobs whose execution add failed for a reason of their own (see abandon-1.lua): counts the
   * failure, and past `attempts` failures gives back the admission and records the job dead-lettered.
   * `leaseMs`: for jobs admitted from the waiting place (no ingress job to retry the dead-letter add).
   */
  async abandon(
    downstream: string,
    items: ReadonlyArray<{ key: string; code: RejectionCode; message: string }>,
    opts: { attempts: number; leaseMs?: number },
  ): Promise<Array<'given-up' | 'retry' | 'not-admitted'>> {
    const args: Arg[] = [...this.context(), downstream, this.downstreams.join(','), opts.leaseMs ?? '', opts.attempts];
    for (const it of items) args.push(it.key, ERRORS[it.code].reason, it.code, it.message);
    const raw = await this.scripts.abandon([this.keys.inflight(downstream)], args);
    const wake = String(raw[raw.length - 1] ?? '');
    if (wake !== '') await this.publishWake(wake.split(','));
    return raw.slice(0, -1).map((r) => (r === 'G' ? 'given-up' : r === 'T' ? 'retry' : 'not-admitted'));
  }

  async explain(downstream: string, tenantId: string, name: string, cost = 1, now = this.now()): Promise<Explanation> {
    const [kind = 'admit', quotaId = '', text, until, tat] = await this.scripts.explain([this.keys.throttles()], [...this.context(now), downstream, tenantId, name, cost]);
    return {
      kind: kind as Explanation['kind'],
      quotaId,
      ...(kind === 'wait' ? { reason: text } : kind === 'reject' ? { message: text } : {}),
      ...(until ? { until: Number(until) } : {}),
      ...(tat ? { tatAfter: Number(tat) } : {}),
    };
  }

  // ---- definitions mirrored from Postgres (written by the API and the sync) ----

  async writeDefaultQuota(def: QuotaDef): Promise<void> {
    await this.redis.set(this.keys.quotaDefault(), encodeQuota(def));
  }

  /** Replaces the tenant's quota definitions (an empty list removes them). */
  async writeTenantQuotas(tenantId: string, defs: readonly QuotaDef[]): Promise<void> {
    const key = this.keys.quotaDefs(tenantId);
    const multi = this.redis.multi().del(key);
    if (defs.length > 0) multi.hset(key, Object.fromEntries(defs.map((d) => [d.id, encodeQuota(d)]))).sadd(this.keys.quotaTenants(), tenantId);
    else multi.srem(this.keys.quotaTenants(), tenantId);
    await multi.exec();
  }

  async writeThrottle(def: ThrottleDef): Promise<void> {
    const multi = this.redis.multi().hset(this.keys.throttles(), def.id, encodeThrottle(def)).sadd(this.keys.throttlesOf(def.tenantId), def.id);
    if (def.tenantId !== undefined) multi.sadd(this.keys.throttleTenants(), def.tenantId);
    await multi.exec();
  }

  async removeThrottle(def: Pick<ThrottleDef, 'id' | 'tenantId'>): Promise<void> {
    await this.redis.multi().hdel(this.keys.throttles(), def.id).srem(this.keys.throttlesOf(def.tenantId), def.id).del(this.keys.throttleState(def.id)).exec();
  }

  /** Rebuilds the whole mirror from Postgres rows (after a flush, or when a change was not mirrored). */
  async replaceDefinitions(quotasByTenant: ReadonlyMap<string, QuotaDef[]>, throttleDefs: readonly ThrottleDef[], version: number): Promise<void> {
    const k = this.keys;
    const [staleQuotaTenants, staleThrottleTenants] = await Promise.all([
      this.redis.smembers(k.quotaTenants()),
      this.redis.smembers(k.throttleTenants()),
    ]);
    const multi = this.redis.multi();
    for (const t of staleQuotaTenants) if (!quotasByTenant.has(t)) multi.del(k.quotaDefs(t));
    multi.del(k.quotaTenants());
    for (const [tenant, defs] of quotasByTenant) {
      multi.del(k.quotaDefs(tenant));
      if (defs.length > 0) multi.hset(k.quotaDefs(tenant), Object.fromEntries(defs.map((d) => [d.id, encodeQuota(d)]))).sadd(k.quotaTenants(), tenant);
    }
    multi.del(k.throttles(), k.throttlesOf(undefined), k.throttleTenants());
    for (const t of staleThrottleTenants) multi.del(k.throttlesOf(t));
    for (const d of throttleDefs) {
      multi.hset(k.throttles(), d.id, encodeThrottle(d)).sadd(k.throttlesOf(d.tenantId), d.id);
      if (d.tenantId !== undefined) multi.sadd(k.throttleTenants(), d.tenantId);
    }
    multi.set(k.mirrorVersion(), version);
    await multi.exec();
  }

  /**
   * Writes a downstream's allocation policy where the scheduler reads it. A config policy never
   * replaces a runtime one (set over the API); the sync and the API write runtime policies.
   */
  /** Records each downstream's execution queue, for readers without the config (waitForExecution). */
  async writeExecQueues(queues: Record<string, string>): Promise<void> {
    if (Object.keys(queues).length > 0) await this.redis.hset(this.keys.execQueues(), queues);
  }

  async writePolicy(downstream: string, policy: Policy, source: 'config' | 'runtime', opts: { force?: boolean } = {}): Promise<boolean> {
    const polKey = this.keys.ds(downstream, 'pol');
    if (source === 'config' && !opts.force && (await this.redis.hget(polKey, 'src')) === 'runtime') return false;
    const multi = this.redis
      .multi()
      .del(polKey, this.keys.ds(downstream, 'pol-t'))
      .hset(polKey, {
        src: source,
        k: policy.kind,
        cap: policy.capacity,
        dw: policy.defaultWeight,
        dt: policy.defaultTier,
        ...(policy.agingMs !== undefined ? { ag: policy.agingMs } : {}),
      });
    const tenants = Object.entries(policy.tenants);
    if (tenants.length > 0) multi.hset(this.keys.ds(downstream, 'pol-t'), Object.fromEntries(tenants.map(([t, tp]) => [t, encodeTenantPolicy(tp)])));
    await multi.exec();
    return true;
  }

  /** The policy the scheduler uses now, as mirrored in Redis (undefined before anything wrote it). */
  async readPolicy(downstream: string): Promise<Policy | undefined> {
    const [p, t] = await Promise.all([this.redis.hgetall(this.keys.ds(downstream, 'pol')), this.redis.hgetall(this.keys.ds(downstream, 'pol-t'))]);
    if (!p.k) return undefined;
    const tenants: Policy['tenants'] = {};
    for (const [tenant, raw] of Object.entries(t)) {
      const v = JSON.parse(raw) as { w?: number; tier?: number; r?: number; bl?: number; ms?: number };
      tenants[tenant] = {
        ...(v.w !== undefined ? { weight: v.w } : {}),
        ...(v.tier !== undefined ? { tier: v.tier } : {}),
        ...(v.r !== undefined ? { reserve: v.r } : {}),
        ...(v.bl !== undefined ? { borrowLimit: v.bl } : {}),
        ...(v.ms !== undefined ? { maxShare: v.ms } : {}),
      };
    }
    return {
      kind: p.k as Policy['kind'],
      capacity: Number(p.cap),
      defaultWeight: Number(p.dw ?? 1),
      defaultTier: Number(p.dt ?? 1),
      ...(p.ag !== undefined ? { agingMs: Number(p.ag) } : {}),
      tenants,
    };
  }

  /** Capacity in force: the adaptive capacity when one is set, else the policy's. */
  async effectiveCapacity(downstream: string): Promise<number | undefined> {
    const [adaptive, configured] = await Promise.all([
      this.redis.get(this.keys.ds(downstream, 'cap')),
      this.redis.hget(this.keys.ds(downstream, 'pol'), 'cap'),
    ]);
    const v = adaptive ?? configured;
    return v === null ? undefined : Number(v);
  }

  async mirrorVersion(): Promise<number> {
    return Number((await this.redis.get(this.keys.mirrorVersion())) ?? 0);
  }

  /** False when Redis has no definitions mirror at all (never written, or lost with its data). */
  async hasMirror(): Promise<boolean> {
    return (await this.redis.exists(this.keys.mirrorVersion())) === 1;
  }

  /** Records that the mirror moved from `from` to `to`; false when it was not at `from` (a gap). */
  async advanceMirrorVersion(from: number, to: number): Promise<boolean> {
    return (await this.scripts.advanceVersion([this.keys.mirrorVersion()], [String(from), String(to)])) === 1;
  }

  /** Tells every gate's scheduler to look at these downstreams again. */
  /** Whether a gate holds ingress job `id` in a claimed batch (see claimIngress-8.lua). */
  async isClaimed(ingressQueue: string, id: string): Promise<boolean> {
    return (await this.redis.zscore(this.keys.ingressClaims(ingressQueue), id)) !== null;
  }

  async publishWake(downstreams: readonly string[] = this.downstreams): Promise<void> {
    await this.redis.publish(this.keys.wakeChannel(), downstreams.join(','));
  }

  // ---- reads ----

  async restoreStats(downstream: string | undefined, counters: Record<string, number>): Promise<boolean> {
    const args = Object.entries(counters).flatMap(([k, v]) => [k, v]);
    return (await this.scripts.restoreStats([this.keys.stats(downstream), this.keys.statsRestored(downstream)], args)) === 1;
  }

  /** Period usage of every quota state in Redis, for the current windows only. */
  async readUsage(now = this.now()): Promise<Array<{ quotaId: string; tenantId: string; period: Period; window: number; used: number }>> {
    const windows = windowsAt(now);
    const prefix = `${this.keys.gov}qs:`;
    const out: Array<{ quotaId: string; tenantId: string; period: Period; window: number; used: number }> = [];
    let cursor = '0';
    do {
      const [next, keys] = await this.redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
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
    return out;
  }

  /** Records live execution jobs that have no governance record as admitted (see adopt-1.lua). */
  async adopt(items: ReadonlyArray<{ key: string; tenantId: string; name: string; downstream: string; queue: string; cost: number }>): Promise<number> {
    if (items.length === 0) return 0;
    const args = this.context();
    for (const it of items) args.push(it.key, it.tenantId, it.name, it.downstream, it.queue, it.cost);
    return this.scripts.adopt([this.keys.throttles()], args);
  }

  /** Adds ledger usage to this Redis once (after a loss); false if it already had it. */
  async restoreUsage(entries: ReadonlyArray<{ quotaId: string; tenantId: string; period: Period; window: number; used: number }>): Promise<boolean> {
    const fields: Record<Period, [string, string]> = { hour: ['hw', 'hn'], day: ['dw', 'dn'], month: ['mw', 'mn'] };
    const args: Arg[] = [];
    for (const e of entries) args.push(this.keys.quotaState(e.quotaId, e.tenantId), fields[e.period][0], fields[e.period][1], String(e.window), e.used);
    return (await this.scripts.restoreUsage([this.keys.usageRestored()], args)) === 1;
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

  async readStats(downstream: string | undefined): Promise<Record<string, number>> {
    const raw = await this.redis.hgetall(this.keys.stats(downstream));
    return Object.fromEntries(Object.entries(raw).map(([k, v]) => [k, Number(v)]));
  }

  /** Waiting jobs per tenant on a downstream. */
  async waitingByTenant(downstream: string): Promise<Record<string, number>> {
    const raw = await this.redis.hgetall(this.keys.ds(downstream, 'wc'));
    return Object.fromEntries(Object.entries(raw).map(([k, v]) => [k, Number(v)]).filter(([, n]) => (n as number) > 0));
  }

  // ---- circuit breakers ----

  /** A downstream's breaker state as the state machine stored it, with its revision (0: none yet). */
  async readBreaker(downstream: string): Promise<{ json?: string; rev: number }> {
    const [json, rev] = await this.redis.hmget(this.keys.ds(downstream, 'brk'), 'json', 'rev');
    return { ...(json ? { json } : {}), rev: Number(rev ?? 0) };
  }

  /** Compare-and-set of the breaker state; the transitions go to the outbox in the same step. */
  async casBreaker(
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
    return (await this.scripts.breakerCas([this.keys.ds(downstream, 'brk')], args)) === 1;
  }

  /** The breaker state the scheduler sees ('closed' when none; observe-only breakers read as closed). */
  async breakerGate(downstream: string): Promise<'closed' | 'open' | 'half-open'> {
    const [st, obs] = await this.redis.hmget(this.keys.ds(downstream, 'brk'), 'st', 'obs');
    return obs === '1' || !st ? 'closed' : (st as 'closed' | 'open' | 'half-open');
  }

  /** Transitions waiting to be written to Postgres, oldest first (up to `n`). */
  async breakerOutbox(n: number): Promise<string[]> {
    return (await this.redis.lrange(this.keys.breakerOutbox(), -n, -1)).reverse();
  }

  /**
   * Drops these outbox entries (written to Postgres). By value, not by count: two observers that
   * flushed the same entries at once each remove them once, and nothing pushed meanwhile is lost.
   */
  async removeFromBreakerOutbox(entries: readonly string[]): Promise<void> {
    if (entries.length === 0) return;
    const pipe = this.redis.pipeline();
    for (const e of entries) pipe.lrem(this.keys.breakerOutbox(), -1, e);
    await pipe.exec();
  }

  /** Transition counts per downstream, from and to state (for metrics). */
  async breakerTransitionCounts(): Promise<Array<{ downstream: string; from: string; to: string; n: number }>> {
    const raw = await this.redis.hgetall(this.keys.breakerTransitionCounts());
    return Object.entries(raw).map(([k, n]) => {
      const [downstream, from, to] = k.split('|') as [string, string, string];
      return { downstream, from, to, n: Number(n) };
    });
  }

  /** Drain (dead-letter) or replay (admit despite the breaker) held jobs; leased like the scheduler's. */
  async releaseHeld(
    downstream: string,
    mode: 'drain' | 'replay',
    opts: { limit: number; tenantId?: string; leaseMs: number; actor: string },
  ): Promise<{ taken: Array<{ id: string; payload: string }>; skipped: number }> {
    const raw = await this.scripts.drainHeld(
      [this.keys.inflight(downstream)],
      [...this.context(), downstream, mode, opts.limit, opts.tenantId ?? '', opts.leaseMs, opts.actor],
    );
    const sep = raw.indexOf('|');
    const taken: Array<{ id: string; payload: string }> = [];
    for (let i = 0; i < sep; i += 2) taken.push({ id: String(raw[i]), payload: String(raw[i + 1]) });
    return { taken, skipped: Number(raw[sep + 1] ?? 0) };
  }

  /** Up to `limit` jobs waiting on a downstream (one tenant's, or anyone's), in each tenant's order. */
  async waitingJobs(downstream: string, opts: { tenantId?: string; limit: number }): Promise<Array<{ id: string; tenantId: string; name: string; since: number }>> {
    const tenants = opts.tenantId !== undefined ? [opts.tenantId] : Object.keys(await this.waitingByTenant(downstream));
    const out: Array<{ id: string; tenantId: string; name: string; since: number }> = [];
    const results = async (pipe: ReturnType<Redis['pipeline']>) => ((await pipe.exec()) ?? []).map(([, v]) => v);
    // Three round trips per tenant, whatever its number of flows: its flows, their heads, the heads' enqueue times.
    for (const t of tenants) {
      if (out.length >= opts.limit) break;
      const flows = await this.redis.smembers(this.keys.ds(downstream, `fl:${t}`));
      const heads = this.redis.pipeline();
      for (const f of flows) heads.zrange(this.keys.ds(downstream, `f:${f}`), '0', String(opts.limit - 1), 'WITHSCORES');
      const ids: Array<{ id: string; score: number; name: string }> = [];
      (await results(heads)).forEach((raw, k) => {
        const r = (raw ?? []) as string[];
        for (let i = 0; i < r.length; i += 2) ids.push({ id: r[i]!, score: Number(r[i + 1]), name: flows[k]!.slice(t.length + 1) });
      });
      ids.sort((a, b) => a.score - b.score);
      const take = ids.slice(0, opts.limit - out.length);
      const enqueued = this.redis.pipeline();
      for (const j of take) enqueued.hget(this.keys.record(j.id), 'enq');
      const enq = (await results(enqueued)).map((v) => Number(v ?? 0));
      take.forEach((j, k) => out.push({ id: j.id, tenantId: t, name: j.name, since: enq[k]! }));
    }
    return out;
  }

  /** Jobs in a downstream's waiting place. */
  async waitingTotal(downstream: string): Promise<number> {
    return Number((await this.redis.get(this.keys.ds(downstream, 'wtotal'))) ?? 0);
  }

  /** Whether load shedding is on for a downstream. */
  async isShedding(downstream: string): Promise<boolean> {
    return (await this.redis.exists(this.keys.ds(downstream, 'shedding'))) === 1;
  }

  /** Cost units in flight per tenant on a downstream. */
  async inFlightByTenant(downstream: string): Promise<Record<string, number>> {
    const raw = await this.redis.hgetall(this.keys.ds(downstream, 'tin'));
    return Object.fromEntries(Object.entries(raw).map(([k, v]) => [k, Number(v)]).filter(([, n]) => (n as number) > 0));
  }

  /** Position (1-based) of a waiting job in its tenant's waiting order on a downstream. */
  async waitingPosition(downstream: string, tenantId: string, name: string, key: string): Promise<number | undefined> {
    const score = await this.redis.zscore(this.keys.ds(downstream, `f:${tenantId}/${name}`), key);
    if (score === null) return undefined;
    const flows = await this.redis.smembers(this.keys.ds(downstream, `fl:${tenantId}`));
    const pipe = this.redis.pipeline();
    for (const f of flows) pipe.zcount(this.keys.ds(downstream, `f:${f}`), '-inf', score);
    return ((await pipe.exec()) ?? []).reduce((sum, [, n]) => sum + Number(n ?? 0), 0);
  }

  /** Cost units admitted per minute start (ms), per tenant, for the last `minutes` complete minutes and this one. */
  async admissionsByMinute(downstream: string, minutes: number, now = this.now()): Promise<Array<{ minute: number; byTenant: Record<string, number> }>> {
    const current = now - (now % 60_000);
    const starts = Array.from({ length: minutes + 1 }, (_, i) => current - i * 60_000);
    const pipe = this.redis.pipeline();
    for (const m of starts) pipe.hgetall(this.keys.ds(downstream, `adm:${m}`));
    const res = (await pipe.exec()) ?? [];
    return starts.map((minute, i) => ({
      minute,
      byTenant: Object.fromEntries(Object.entries((res[i]?.[1] ?? {}) as Record<string, string>).map(([t, n]) => [t, Number(n)])),
    }));
  }

  /** The tenant's last (up to 200) jobs admitted from the waiting place: when, and after how long a wait. */
  async waitSamples(downstream: string, tenantId: string): Promise<Array<{ at: number; waitMs: number }>> {
    return (await this.redis.lrange(this.keys.ds(downstream, `waits:${tenantId}`), 0, -1)).map((v) => {
      const [at, wait] = v.split(':');
      return { at: Number(at), waitMs: Number(wait) };
    });
  }

  /** Tenants queued for service on a downstream, with when they were last served or became eligible. */
  async queuedTenants(downstream: string): Promise<Array<{ tenantId: string; since: number }>> {
    const raw = await this.redis.zrange(this.keys.ds(downstream, 'since'), '0', '-1', 'WITHSCORES');
    const out: Array<{ tenantId: string; since: number }> = [];
    for (let i = 0; i < raw.length; i += 2) out.push({ tenantId: raw[i]!, since: Number(raw[i + 1]) });
    return out;
  }

  /** State of a waiting flow: eligible, a timer (reason, until) or parked (reason). */
  async flowState(downstream: string, tenantId: string, name: string): Promise<{ state: 'eligible' | 'timer' | 'parked'; reason?: string; until?: number } | undefined> {
    const raw = await this.redis.hget(this.keys.ds(downstream, 'fst'), `${tenantId}/${name}`);
    if (!raw) return undefined;
    if (raw === 'e') return { state: 'eligible' };
    const [kind, reason, until] = raw.split('|');
    return kind === 't' ? { state: 'timer', reason: reason!, until: Number(until) } : { state: 'parked', reason: reason! };
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
    const key = this.keys.ds(downstream, 'flow');
    await this.redis.multi().lpush(key, JSON.stringify(sample)).ltrim(key, 0, keep - 1).exec();
  }

  async flowSamples(downstream: string): Promise<FlowSample[]> {
    return (await this.redis.lrange(this.keys.ds(downstream, 'flow'), 0, -1)).map((s) => JSON.parse(s) as FlowSample);
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
