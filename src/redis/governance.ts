/**
 * Governance decisions of the gate, the observer and the API, each one atomic Lua script call on the
 * governance slot: intake (admit now, wait, refuse), the release of finished jobs, refusals, give-backs,
 * wakes after definition changes, and what-if explanations. This module maps arguments; replies are
 * decoded by ./replies; the rules are in the scripts (and, for quotas, mirrored in src/core/quota.ts).
 *
 * The other governance stores hang off it, one per concern: `waiting` (the waiting place), `mirror`
 * (quota, throttle and policy definitions mirrored from Postgres), `breakers` (breaker state and its
 * outbox) and `reads` (read models for the API, the dashboard and the sync).
 */
import type { Redis } from 'ioredis';
import type { Period } from '../core/periods';
import { ERRORS, type RejectionCode } from '../errors';
import { BreakerStore } from './breaker-store';
import { DefinitionsMirror } from './definitions-mirror';
import type { Keys } from './keys';
import { scriptKeys } from './script-keys';
import { ReadModels } from './read-models';
import { decodeAbandon, decodeDeadLetter, decodeIntake, decodeRelease, type AbandonOutcome, type IntakeVerdict } from './replies';
import { type Arg, GovernanceStore, type StoreDeps } from './store';
import { WaitingPlace } from './waiting-place';

export type Outcome = 'completed' | 'failed' | 'vanished';

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

export interface DeadLetterItem extends Delivery {
  reason: string;
  code: string;
  message: string;
  tenantId?: string;
}

export interface Explanation {
  kind: 'admit' | 'wait' | 'reject';
  quotaId: string;
  reason?: string;
  message?: string;
  until?: number;
  tatAfter?: number;
}

const takenArg = (taken: boolean | undefined) => (taken === undefined ? '' : taken ? '1' : '0');

export class Governance extends GovernanceStore {
  readonly waiting: WaitingPlace;
  readonly mirror: DefinitionsMirror;
  readonly breakers: BreakerStore;
  readonly reads: ReadModels;

  constructor(redis: Redis, keys: Keys, retentionMs: number, downstreams: readonly string[], now: () => number = Date.now) {
    const deps: StoreDeps = { redis, keys, retentionMs, downstreams, now };
    super(deps);
    this.waiting = new WaitingPlace(deps);
    this.mirror = new DefinitionsMirror(deps);
    this.breakers = new BreakerStore(deps);
    this.reads = new ReadModels(deps);
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
    const raw = await this.scripts.intake(scriptKeys.intake(this.keys, downstream), args);
    return decodeIntake(raw);
  }

  /** Ends the leases of jobs added where they go: their execution queue, or the dead-letter queue. */
  async confirm(downstream: string, ids: readonly string[], to: 'exec' | 'dead-letter' = 'exec'): Promise<number> {
    if (ids.length === 0) return 0;
    return this.scripts.confirm(scriptKeys.confirm(this.keys, downstream, to), [this.keys.gov, ...ids]);
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
    return decodeRelease(await this.scripts.release(scriptKeys.release(this.keys, downstream), args));
  }

  /** Re-evaluates waiting flows of a tenant (or of everyone) after a quota or throttle change. */
  async wake(tenantId?: string): Promise<number> {
    return this.scripts.wake(scriptKeys.wake(this.keys), [this.keys.gov, this.downstreams.join(','), tenantId ?? '', '0', this.now()]);
  }

  /** After a policy change: re-queues the downstream's tenants in their new tiers and wakes every flow. */
  async repolicy(downstream: string): Promise<number> {
    return this.scripts.wake(scriptKeys.wake(this.keys), [this.keys.gov, downstream, '', '1', this.now()]);
  }

  /**
   * Records refusals; `downstream` undefined for jobs refused before routing. Per job: whether it was
   * recorded now (false: an earlier attempt did) and its job key, which names its dead-letter job.
   */
  async deadLetter(downstream: string | undefined, items: readonly DeadLetterItem[]): Promise<Array<{ recorded: boolean; key: string }>> {
    const args: Arg[] = [this.keys.gov, this.now(), this.retentionMs, downstream ?? ''];
    for (const it of items) args.push(it.ingressJobId, it.stamp, takenArg(it.taken), it.reason, it.code, it.message, it.tenantId ?? '');
    return decodeDeadLetter(await this.scripts.deadLetter(scriptKeys.deadLetter(this.keys, downstream), args));
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
  ): Promise<AbandonOutcome[]> {
    const args: Arg[] = [...this.context(), downstream, this.downstreams.join(','), opts.leaseMs ?? '', opts.attempts];
    for (const it of items) args.push(it.key, ERRORS[it.code].reason, it.code, it.message);
    const { outcomes, wake } = decodeAbandon(await this.scripts.abandon(scriptKeys.abandon(this.keys, downstream), args));
    if (wake.length > 0) await this.publishWake(wake);
    return outcomes;
  }

  async explain(downstream: string, tenantId: string, name: string, cost = 1, now = this.now()): Promise<Explanation> {
    const [kind = 'admit', quotaId = '', text, until, tat] = await this.scripts.explain(scriptKeys.explain(this.keys), [...this.context(now), downstream, tenantId, name, cost]);
    return {
      kind: kind as Explanation['kind'],
      quotaId,
      ...(kind === 'wait' ? { reason: text } : kind === 'reject' ? { message: text } : {}),
      ...(until ? { until: Number(until) } : {}),
      ...(tat ? { tatAfter: Number(tat) } : {}),
    };
  }

  /** Records live execution jobs that have no governance record as admitted (see adopt-1.lua). */
  async adopt(items: ReadonlyArray<{ key: string; tenantId: string; name: string; downstream: string; queue: string; cost: number }>): Promise<number> {
    if (items.length === 0) return 0;
    const args = this.context();
    for (const it of items) args.push(it.key, it.tenantId, it.name, it.downstream, it.queue, it.cost);
    return this.scripts.adopt(scriptKeys.adopt(this.keys), args);
  }

  async restoreStats(downstream: string | undefined, counters: Record<string, number>): Promise<boolean> {
    const args = Object.entries(counters).flatMap(([k, v]) => [k, v]);
    return (await this.scripts.restoreStats(scriptKeys.restoreStats(this.keys, downstream), args)) === 1;
  }

  /** Adds ledger usage to this Redis once (after a loss); false if it already had it. */
  async restoreUsage(entries: ReadonlyArray<{ quotaId: string; tenantId: string; period: Period; window: number; used: number }>): Promise<boolean> {
    const fields: Record<Period, [string, string]> = { hour: ['hw', 'hn'], day: ['dw', 'dn'], month: ['mw', 'mn'] };
    const args: Arg[] = [this.keys.gov];
    for (const e of entries) args.push(e.quotaId, e.tenantId, fields[e.period][0], fields[e.period][1], String(e.window), e.used);
    return (await this.scripts.restoreUsage(scriptKeys.restoreUsage(this.keys), args)) === 1;
  }

  /** Tells every gate's scheduler to look at these downstreams again. */
  async publishWake(downstreams: readonly string[] = this.downstreams): Promise<void> {
    await this.redis.publish(this.keys.wakeChannel(), downstreams.join(','));
  }

  /** Whether a gate holds ingress job `id` in a claimed batch (see claimIngress-8.lua). */
  async isClaimed(ingressQueue: string, id: string): Promise<boolean> {
    return (await this.redis.zscore(this.keys.ingressClaims(ingressQueue), id)) !== null;
  }
}
