/**
 * Applying a batch of events read from one stream: the jobs that ended are released at once (a slot
 * that came back is offered to the schedulers in the same round trip); the breaker observations and
 * the acknowledgement run behind, in order, while the next batch is read. An event is acknowledged
 * only after its release was applied (releases are idempotent: a redelivery after a crash is harmless).
 * Also the description of execution events the breaker needs (breaker generation, error text).
 */
import type { ExecEvent } from '../governance/breaker-events';
import type { ObserverDeps } from './observer';
import { forgetDeduplication } from './observer-dedup';
import { ActiveAttempts, decodeBatch, errorText, OBSERVER_GROUP, type StreamEntry, type StreamInfo } from './observer-events';

export class BatchApplier {
  /** When each execution job's current attempt started (its 'active' event), for slow-call detection. */
  private readonly attempts = new ActiveAttempts();
  /**
   * The breaker observations and the acknowledgement of the last batch, in order: they run while the
   * next batch is read and released, so a slot's way back to the schedulers does not wait for them.
   */
  private tail: Promise<void> = Promise.resolve();
  private tailError?: Error;
  private tailsPending = 0;

  constructor(
    private readonly deps: ObserverDeps,
    /** The observer's consumer name in the group. */
    private readonly consumer: string,
  ) {}

  /**
   * Applies a batch of events of one stream, then acknowledges it. `fresh`: read with '>' (first
   * delivery), else claimed from a dead observer (perhaps applied already: see EventBatch).
   */
  async apply(stream: StreamInfo, entries: StreamEntry[], fresh = true): Promise<void> {
    if (entries.length === 0) return;
    const { governance, metrics, failpoints, redis } = this.deps;
    const { releases, execEvents, byEvent } = decodeBatch(entries, this.attempts);
    for (const [event, n] of byEvent) metrics.observerEvents.inc({ downstream: stream.downstream, event }, n);
    const forget: string[] = [];
    if (releases.length > 0) {
      // The release publishes the wake itself: a slot that came back is offered to the schedulers
      // in the same round trip.
      const { released, generations } = await governance.release(stream.downstream, releases, { publish: true });
      // The release read each job's record: its breaker generation comes with it (no second read).
      const genOf = new Map<string, number>();
      released.forEach((r, i) => {
        if (r) {
          metrics.observerReleases.inc({ downstream: stream.downstream, outcome: releases[i]!.outcome, source: 'event' });
          forget.push(releases[i]!.key);
        }
        if (generations[i] !== undefined) genOf.set(releases[i]!.key, generations[i]!);
      });
      for (const e of execEvents) if (e.kind !== 'retry' && genOf.has(e.key)) e.gen = genOf.get(e.key)!;
      await failpoints.hit('observer.after-release');
    }
    const ids = entries.map(([id]) => id);
    // At most one batch's tail runs behind the reads: a slow breaker store slows the reads down.
    if (this.tailsPending > 0) await this.tail;
    const prev = this.tail;
    this.tailsPending++;
    this.tail = (async () => {
      await prev;
      try {
        if (execEvents.length > 0 && this.deps.breakers?.enabled(stream.downstream)) {
          await describeEvents(this.deps, stream, execEvents);
          await this.deps.breakers.observe(stream.downstream, execEvents, { consumer: this.consumer, fresh, entryIds: ids });
        }
        await failpoints.hit('observer.before-ack');
        const pipe = redis.pipeline();
        const releaseHolds = forgetDeduplication(this.deps, pipe, stream.downstream, forget);
        pipe.xack(stream.key, OBSERVER_GROUP, ...ids);
        for (const [err] of (await pipe.exec()) ?? []) if (err) throw err;
        // On a cluster, in ingress's slot (a hold missed here is ended by the sweep).
        await releaseHolds?.();
      } catch (err) {
        this.tailError ??= err as Error;
      } finally {
        this.tailsPending--;
      }
    })();
    if (!fresh) await this.tail;
  }

  /**
   * The error of a batch's tail that failed, once (its events stay pending, to be reclaimed and
   * re-applied later, which is harmless).
   */
  takeError(): Error | undefined {
    const err = this.tailError;
    this.tailError = undefined;
    return err;
  }

  /** Settles once the tail of the last batch applied so far has run. */
  settled(): Promise<void> {
    return this.tail;
  }
}

/**
 * Adds to each event the breaker generation its job was admitted in (unless its release brought it)
 * and, for failures, the error.
 */
export async function describeEvents(deps: Pick<ObserverDeps, 'redis' | 'keys'>, stream: StreamInfo, events: ExecEvent[]): Promise<void> {
  const { redis, keys } = deps;
  const needed = events.filter((e) => e.gen === undefined || e.kind !== 'completed');
  if (needed.length === 0) return;
  // Two pipelines, one per slot (the records are governance's, the job hashes the execution queue's),
  // sent together.
  const recPipe = redis.pipeline();
  const jobPipe = redis.pipeline();
  for (const e of needed) {
    if (e.gen === undefined) recPipe.hget(keys.record(e.key), 'bg');
    if (e.kind !== 'completed') jobPipe.hmget(keys.bullJob(stream.queue, e.execJobId), 'failedReason', 'stacktrace');
  }
  const [recRes, jobRes] = await Promise.all([recPipe.length > 0 ? recPipe.exec() : [], jobPipe.length > 0 ? jobPipe.exec() : []]);
  const recs = (recRes ?? []).map(([, v]) => v);
  const jobs = (jobRes ?? []).map(([, v]) => v);
  let r = 0;
  let j = 0;
  for (const e of needed) {
    if (e.gen === undefined) {
      const gen = recs[r++] as string | null;
      if (gen !== null) e.gen = Number(gen);
    }
    if (e.kind !== 'completed') {
      const [reason, stack] = (jobs[j++] ?? []) as Array<string | null>;
      e.errorText = errorText(reason ?? e.failedReason, stack ?? undefined);
    }
  }
}
