/**
 * What the observer feeds the circuit breakers: execution events (ExecEvent), the outcome each one
 * means to a breaker (outcomeOfEvent), and the record of the stream entries a breaker already counted,
 * kept in its stored state so a batch redelivered after an observer died counts once (EventBatch).
 */
import { countsAsFailure, retryAfterOf, type BreakerOutcome, type BreakerState } from '../core/breaker';

/** An execution event the observer passes on: a job ended, or one of its attempts failed. */
export interface ExecEvent {
  /** The job key of the ingress job behind it (src/redis/keys.ts). */
  key: string;
  execJobId: string;
  /** `removed`: removed before it ended (neither a success nor a failure of the downstream). */
  kind: 'completed' | 'failed' | 'retry' | 'removed';
  /** When it happened (the event's time). */
  at: number;
  /** When the attempt started, if the observer saw its 'active' event. */
  startedAt?: number;
  /** The breaker generation the job was admitted in (from its record). */
  gen?: number;
  /** For failures: "Name: message" of the error (its stack's first line), or the failed reason. */
  errorText?: string;
  /** The failed reason the event carried (used when the job is already removed). */
  failedReason?: string;
  /** The id of the stream entry that carried the event (for de-duplication of redelivered batches). */
  entryId?: string;
}

/**
 * The stream entries one observer call fed to a breaker. An observer acknowledges a batch only after
 * feeding it, so a batch whose observer died in between is redelivered (claimed by another observer):
 * the breaker remembers which entries it already counted, in its state, in the same compare-and-set
 * as the counts, and skips them the second time.
 */
export interface EventBatch {
  /** The observer's consumer name in the group. */
  consumer: string;
  /**
   * Read with XREADGROUP '>': never delivered before, and a contiguous range of the stream nobody
   * else was given (remembered as its first and last id). Otherwise claimed from a dead observer
   * (remembered id by id).
   */
  fresh: boolean;
  /** Every entry id of the batch, with or without an outcome. */
  entryIds: readonly string[];
}

/** A batch the breaker counted: a fresh range, or the ids of a claimed batch. */
interface AppliedBatch {
  at: number;
  from?: string;
  to?: string;
  ids?: string[];
}

/** The stored breaker state: the machine's state plus, per observer, the batches it last counted. */
export type StoredState = BreakerState & { applied?: Record<string, AppliedBatch[]> };

/** Batches remembered per observer (one is enough unless an acknowledgement failed) and observers kept. */
const APPLIED_PER_CONSUMER = 4;
const APPLIED_CONSUMERS = 16;

/** A stream entry id ('<ms>-<seq>') as two numbers, for ordering. */
function entryId(id: string): [number, number] {
  const dash = id.indexOf('-');
  return dash < 0 ? [Number(id), 0] : [Number(id.slice(0, dash)), Number(id.slice(dash + 1))];
}

function compareEntryIds(a: [number, number], b: [number, number]): number {
  return a[0] !== b[0] ? a[0] - b[0] : a[1] - b[1];
}

/** A test of "was this stream entry counted already?", built once per observe call. */
export function appliedFilter(applied: Record<string, AppliedBatch[]>): (entryId: string) => boolean {
  const ids = new Set<string>();
  const ranges: Array<[[number, number], [number, number]]> = [];
  for (const batches of Object.values(applied)) {
    for (const b of batches) {
      b.ids?.forEach((id) => ids.add(id));
      if (b.from !== undefined && b.to !== undefined) ranges.push([entryId(b.from), entryId(b.to)]);
    }
  }
  return (id) => {
    if (ids.has(id)) return true;
    if (ranges.length === 0) return false;
    const e = entryId(id);
    return ranges.some(([from, to]) => compareEntryIds(from, e) <= 0 && compareEntryIds(e, to) <= 0);
  };
}

export function rememberBatch(applied: Record<string, AppliedBatch[]>, batch: EventBatch, now: number): Record<string, AppliedBatch[]> {
  // A fresh batch comes from XREADGROUP '>' in stream order: its first and last ids bound it.
  const rec: AppliedBatch = batch.fresh
    ? { at: now, from: batch.entryIds[0]!, to: batch.entryIds[batch.entryIds.length - 1]! }
    : { at: now, ids: [...batch.entryIds] };
  const next = { ...applied, [batch.consumer]: [...(applied[batch.consumer] ?? []), rec].slice(-APPLIED_PER_CONSUMER) };
  const lastAt = (list: AppliedBatch[]) => list[list.length - 1]?.at ?? 0;
  return Object.fromEntries(
    Object.entries(next)
      .sort(([, a], [, b]) => lastAt(b) - lastAt(a))
      .slice(0, APPLIED_CONSUMERS),
  );
}

/**
 * What an execution event tells the breaker: a success or a failure (slow by how long the attempt
 * took, failed or not), an outcome that does not count (`ignored`: an ignored error, a job removed
 * before it ended; a probe's permit comes back), or nothing (no generation known; a job sent back to
 * wait without an error, which ends later).
 */
export function outcomeOfEvent(e: ExecEvent, settings: { slowCallMs?: number | undefined }, rules: { count: readonly RegExp[]; ignore: readonly RegExp[] }): BreakerOutcome | undefined {
  const gen = e.gen;
  if (gen === undefined) return undefined;
  const slow = settings.slowCallMs !== undefined && e.startedAt !== undefined && e.at - e.startedAt > settings.slowCallMs;
  if (e.kind === 'completed') return { at: e.at, gen, failed: false, slow };
  if (e.kind === 'removed') return { at: e.at, gen, failed: false, slow: false, ignored: true };
  if (e.kind === 'retry' && !e.errorText) return undefined;
  const text = e.errorText ?? '';
  if (!countsAsFailure(text, rules)) return { at: e.at, gen, failed: false, slow: false, ignored: true };
  const retryAfterMs = retryAfterOf(text);
  return { at: e.at, gen, failed: true, slow, ...(retryAfterMs !== undefined ? { retryAfterMs } : {}) };
}
