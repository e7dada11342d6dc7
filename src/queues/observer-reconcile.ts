/**
 * Catching up on what the event streams did not deliver: events a dead observer left pending are
 * claimed and applied (and its consumer forgotten once idle for a day); a gap, the stream trimmed past
 * unread events, is detected and reported, and the outcomes it lost fed to the breaker from the
 * execution queue's finished jobs; and the reconciliation sweep releases admitted jobs that ended or
 * vanished without an event reaching us.
 */
import { fieldsOf } from '../core/fields';
import type { ExecEvent } from '../governance/breaker-events';
import type { Outcome } from '../redis/governance';
import { execJobId, jobKeyOf, parseJobKey } from '../redis/keys';
import { scriptKeys } from '../redis/script-keys';
import { scriptsFor } from '../redis/scripts';
import type { ObserverDeps } from './observer';
import { describeEvents, type BatchApplier } from './observer-batch';
import { forgetDeduplication, sweepHeldDedup } from './observer-dedup';
import { OBSERVER_GROUP, type StreamEntry, type StreamInfo } from './observer-events';

export interface SweepReport {
  checked: number;
  released: number;
  /** Deduplication holds of jobs no longer in flight, ended by the sweep. */
  dedupReleased?: number;
}

export class Reconciler {
  constructor(
    private readonly deps: ObserverDeps,
    private readonly streams: readonly StreamInfo[],
    /** The observer's consumer name in the group. */
    private readonly consumer: string,
    /** Applies the claimed events, as the read loop applies what it reads. */
    private readonly batches: BatchApplier,
    /** False once the observer is closing: claiming stops. */
    private readonly running: () => boolean,
    private readonly now: () => number,
  ) {}

  async claimAbandoned(): Promise<void> {
    const { redis, log } = this.deps;
    const minIdle = this.deps.config.observer.claimIdleMs;
    for (const s of this.streams) {
      let cursor = '0-0';
      do {
        const [next, entries] = (await redis.xautoclaim(s.key, OBSERVER_GROUP, this.consumer, minIdle, cursor, 'COUNT', 500)) as [
          string,
          StreamEntry[],
          string[]?,
        ];
        // Entries trimmed from the stream come back as null fields; their ids are gone from the PEL.
        await this.batches.apply(
          s,
          entries.filter((e) => Array.isArray(e[1])),
          false,
        );
        cursor = next;
      } while (cursor !== '0-0' && this.running());
      // Forget consumers of dead observers once they hold nothing and were idle for a day.
      const consumers = ((await redis.call('XINFO', 'CONSUMERS', s.key, OBSERVER_GROUP)) as unknown[][]).map((c) => fieldsOf(c));
      for (const c of consumers) {
        if (c.name !== this.consumer && Number(c.pending) === 0 && Number(c.idle) > 86_400_000) {
          await redis.xgroup('DELCONSUMER', s.key, OBSERVER_GROUP, String(c.name));
          log.debug({ consumer: c.name }, 'removed idle observer consumer');
        }
      }
    }
  }

  /** A gap: the stream dropped entries the group had not read yet (observer down too long). */
  async detectGaps(): Promise<void> {
    const { redis, log, metrics } = this.deps;
    const scripts = scriptsFor(redis);
    for (const s of this.streams) {
      const [lost, lastDelivered, firstEntry] = await scripts.detectGap(scriptKeys.detectGap(this.deps.keys, s.queue), [OBSERVER_GROUP]);
      if (lost > 0) {
        metrics.observerGaps.inc({ downstream: s.downstream });
        log.warn(
          { downstream: s.downstream, lostEvents: lost, lastDelivered },
          'event stream was trimmed past unread events; the reconciliation sweep releases what they would have',
        );
        await this.rescanGap(s, Number(lastDelivered.split('-')[0]), firstEntry ? Number(firstEntry.split('-')[0]) : this.now());
      }
    }
  }

  /**
   * After a gap, the breaker missed the outcomes the lost events carried: rescan the jobs of the
   * execution queue that finished in the gap (between the last event read and the oldest event still
   * in the stream) and feed them to it. Jobs removed on completion cannot be found; the breaker just
   * sees fewer calls.
   */
  private async rescanGap(s: StreamInfo, from: number, to: number): Promise<void> {
    const breakers = this.deps.breakers;
    if (!breakers?.enabled(s.downstream)) return;
    const { redis, keys } = this.deps;
    const events: ExecEvent[] = [];
    for (const set of ['completed', 'failed'] as const) {
      const ids = (await redis.zrangebyscore(keys.bullSet(s.queue, set), `(${from}`, `(${to}`, 'LIMIT', 0, 10_000)).filter((id) => jobKeyOf(id) !== undefined);
      // One round trip for every job's end time, not one per job.
      const pipe = redis.pipeline();
      for (const jobId of ids) pipe.hget(keys.bullJob(s.queue, jobId), 'finishedOn');
      const finished = ((await pipe.exec()) ?? []).map(([, v]) => v as string | null);
      ids.forEach((jobId, i) => events.push({ key: jobKeyOf(jobId)!, execJobId: jobId, kind: set, at: Number(finished[i] ?? to) }));
    }
    events.sort((a, b) => a.at - b.at);
    if (events.length === 0) return;
    await describeEvents(this.deps, s, events);
    const transitions = await breakers.observe(s.downstream, events);
    this.deps.log.info({ downstream: s.downstream, rescanned: events.length, transitions: transitions.length }, 'outcomes lost in the gap fed to the breaker');
  }

  /**
   * Finds admitted jobs older than `reconcileMinAgeMs` whose execution job finished or vanished
   * without an event reaching us, and releases them. Order matters: the ingress job is checked
   * first, because the gate completes it only after the execution job was added; an admitted job
   * whose ingress job still exists may not have been added yet and is left alone. Jobs admitted from
   * the waiting place have no ingress job any more; until their add is confirmed they hold a
   * promotion lease, and the release script refuses to call a leased job vanished.
   */
  async sweep(): Promise<SweepReport> {
    const { redis, keys, config, governance, metrics, log } = this.deps;
    const report: SweepReport = { checked: 0, released: 0 };
    const olderThan = this.now() - config.observer.reconcileMinAgeMs;
    for (const s of this.streams) {
      let offset = 0;
      for (;;) {
        const ids = await redis.zrangebyscore(keys.inflight(s.downstream), '-inf', olderThan, 'LIMIT', offset, 200);
        if (ids.length === 0) break;
        offset += ids.length;
        report.checked += ids.length;
        const ingress = config.queues.ingress;
        const first = redis.pipeline();
        // By the ingress id behind the job key (for a reused id, a newer job may hold it: left alone, which errs on the safe side).
        // A hash kept only to hold a deduplication id (marked tgheld) is not an ingress job any more.
        for (const id of ids) {
          const ingressKey = keys.bullJob(ingress, parseJobKey(id).ingressJobId);
          first.exists(ingressKey).hexists(ingressKey, 'tgheld');
        }
        const firstRes = ((await first.exec()) ?? []).map(([, v]) => v);
        const ingressAlive = ids.map((_, i) => firstRes[2 * i] === 1 && firstRes[2 * i + 1] !== 1);
        const candidates = ids.filter((_, i) => !ingressAlive[i]);
        if (candidates.length === 0) continue;
        const second = redis.pipeline();
        for (const id of candidates) {
          const jid = execJobId(id);
          second.exists(keys.bullJob(s.queue, jid));
          second.hget(keys.bullJob(s.queue, jid), 'finishedOn');
          second.zscore(keys.bullSet(s.queue, 'completed'), jid);
        }
        const res = ((await second.exec()) ?? []).map(([, v]) => v);
        const releases: Array<{ key: string; outcome: Outcome }> = [];
        candidates.forEach((id, i) => {
          const [exists, finishedOn, completedScore] = res.slice(i * 3, i * 3 + 3);
          if (exists !== 1) releases.push({ key: id, outcome: 'vanished' });
          else if (finishedOn) releases.push({ key: id, outcome: completedScore !== null ? 'completed' : 'failed' });
        });
        if (releases.length === 0) continue;
        const { released } = await governance.release(s.downstream, releases, { publish: true });
        let n = 0;
        const forget: string[] = [];
        released.forEach((r, i) => {
          if (!r) return;
          n++;
          forget.push(releases[i]!.key);
          metrics.observerReleases.inc({ downstream: s.downstream, outcome: releases[i]!.outcome, source: 'sweep' });
        });
        if (forget.length > 0) {
          const pipe = redis.pipeline();
          const releaseHolds = forgetDeduplication(this.deps, pipe, s.downstream, forget);
          await pipe.exec();
          await releaseHolds?.();
        }
        offset -= n; // released entries left the zset; keep the window aligned
        report.released += n;
        if (n > 0) {
          log.warn({ downstream: s.downstream, released: n }, 'reconciliation released admitted jobs whose completion events were missed');
        }
      }
    }
    report.dedupReleased = await sweepHeldDedup(this.deps);
    return report;
  }
}
