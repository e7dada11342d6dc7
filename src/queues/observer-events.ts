/**
 * The execution queues' event streams and what their entries say: the observer's consumer group, the
 * stream of each execution queue, and the decoding of a batch of entries into the releases of jobs
 * that ended and the events the breaker is fed (which events end a job, the cost a completed job
 * reports, the error text of a failure, when each attempt started). Pure, but for the attempts'
 * start times it keeps.
 */
import { fieldsOf } from '../core/fields';
import type { ExecEvent } from '../governance/breaker-events';
import type { Outcome } from '../redis/governance';
import { jobKeyOf } from '../redis/keys';

export const OBSERVER_GROUP = 'tollgate-observer';

export type StreamEntry = [id: string, fields: string[]];
export type ReadReply = Array<[stream: string, entries: StreamEntry[]]> | null;

/** An execution queue's event stream, and the downstream it serves. */
export interface StreamInfo {
  downstream: string;
  queue: string;
  key: string;
}

/** A job that ended, to release (Governance.release). */
export interface Release {
  key: string;
  outcome: Outcome;
  actualCost?: number;
  endedAt?: number;
}

/** When each execution job's current attempt started (its 'active' event), for slow-call detection. */
export class ActiveAttempts {
  private readonly activeAt = new Map<string, number>();

  start(execJobId: string, at: number): void {
    if (this.activeAt.size > 100_000) this.activeAt.delete(this.activeAt.keys().next().value!);
    this.activeAt.set(execJobId, at);
  }

  /** The attempt ended: when it started, if its 'active' event was seen. */
  end(execJobId: string): number | undefined {
    const startedAt = this.activeAt.get(execJobId);
    this.activeAt.delete(execJobId);
    return startedAt;
  }
}

/** A batch of entries of one stream, decoded. */
export interface DecodedBatch {
  releases: Release[];
  /** Every ended attempt (a completion, a final failure, a retried failure, a removal), for the breaker. */
  execEvents: ExecEvent[];
  /** How many events of each kind the batch held. */
  byEvent: Map<string, number>;
}

export function decodeBatch(entries: readonly StreamEntry[], attempts: ActiveAttempts): DecodedBatch {
  const releases: Release[] = [];
  const execEvents: ExecEvent[] = [];
  // Counted per batch: a metric update per event would cost more than the rest of the loop.
  const byEvent = new Map<string, number>();
  for (const [entryId, fields] of entries) {
    const ev = fieldsOf(fields);
    const event = ev.event ?? 'unknown';
    byEvent.set(event, (byEvent.get(event) ?? 0) + 1);
    // Events that neither end a job nor start an attempt ('added', plain 'waiting', 'drained'…).
    if (event === 'added' || event === 'drained' || (event === 'waiting' && ev.prev !== 'active')) continue;
    const outcome = outcomeOf(event, ev.prev);
    const key = ev.jobId ? jobKeyOf(ev.jobId) : undefined;
    // The stream entry id starts with the time BullMQ wrote the event.
    const at = Number(entryId.slice(0, entryId.indexOf('-')));
    if (key !== undefined && ev.jobId) {
      if (event === 'active') attempts.start(ev.jobId, at);
      // Each ended attempt tells the breaker something: a completion, a final failure, or a failed
      // attempt that will be retried (BullMQ moves it to delayed, or straight back to waiting).
      const kind =
        event === 'completed' || event === 'failed'
          ? event
          : event === 'delayed' || (event === 'waiting' && ev.prev === 'active')
            ? 'retry'
            : outcome === 'vanished'
              ? 'removed'
              : undefined;
      if (kind) {
        const startedAt = attempts.end(ev.jobId);
        execEvents.push({
          key,
          execJobId: ev.jobId,
          kind,
          at,
          entryId,
          ...(startedAt !== undefined ? { startedAt } : {}),
          ...(ev.failedReason !== undefined ? { failedReason: ev.failedReason } : {}),
        });
      }
    }
    if (outcome && key !== undefined) {
      const actualCost = event === 'completed' ? reportedCost(ev.returnvalue) : undefined;
      releases.push({ key, outcome, endedAt: at, ...(actualCost !== undefined ? { actualCost } : {}) });
    }
  }
  return { releases, execEvents, byEvent };
}

/** Which BullMQ events end an admitted job. `failed` is emitted only after the last attempt. */
function outcomeOf(event: string, prev: string | undefined): Outcome | undefined {
  if (event === 'completed') return 'completed';
  if (event === 'failed') return 'failed';
  // Removed by hand before it finished: its capacity must come back.
  if (event === 'removed' && prev !== 'completed' && prev !== 'failed') return 'vanished';
  return undefined;
}

/** "Name: message" from the last attempt's stack trace (its first line), else the failed reason. */
export function errorText(failedReason: string | undefined, stacktrace: string | undefined): string | undefined {
  if (stacktrace) {
    try {
      const stacks = JSON.parse(stacktrace) as unknown[];
      const last = stacks[stacks.length - 1];
      if (typeof last === 'string' && last.length > 0) return last.split('\n')[0];
    } catch {
      /* not JSON: fall back */
    }
  }
  return failedReason;
}

/** The cost a completed job reports in its return value (`{ cost: n }`), if a valid one. */
export function reportedCost(returnvalue: string | undefined): number | undefined {
  if (!returnvalue || !returnvalue.includes('cost')) return undefined;
  try {
    const v = JSON.parse(returnvalue) as { cost?: unknown } | null;
    const c = v?.cost;
    return typeof c === 'number' && Number.isInteger(c) && c >= 0 && c <= 10_000 ? c : undefined;
  } catch {
    return undefined;
  }
}
