/**
 * Every Redis key tollgate owns, in one place.
 *
 * Governance state of a downstream shares one hash tag (`{<downstream>}`) so each Lua script touches
 * keys of a single slot on Redis Cluster, and different downstreams can live on different shards.
 * Jobs the gate refuses before routing have no downstream; their records use the tag `{~}`.
 * BullMQ queue keys are BullMQ's own (`<prefix>:<queue>:...`).
 */
export const UNROUTED = '~';

export class Keys {
  constructor(readonly prefix: string) {}

  /** Common prefix of one downstream's governance keys (ends with ':'). */
  gov(downstream: string): string {
    return `${this.prefix}:gov:{${downstream}}:`;
  }

  /** Prefix of decision records: `<gov>rec:<ingressJobId>` (hash). */
  recordPrefix(downstream: string): string {
    return `${this.gov(downstream)}rec:`;
  }

  record(downstream: string, ingressJobId: string): string {
    return `${this.recordPrefix(downstream)}${ingressJobId}`;
  }

  /** Admitted jobs not yet finished: zset ingressJobId → admission time (ms). */
  inflight(downstream: string): string {
    return `${this.gov(downstream)}inflight`;
  }

  /** Decision and outcome counters of a downstream (hash). */
  stats(downstream: string): string {
    return `${this.gov(downstream)}stats`;
  }

  /** Marker: this Redis holds the counters restored from Postgres (absent after a flush). */
  statsRestored(downstream: string): string {
    return `${this.gov(downstream)}stats-restored`;
  }

  /** Key of a BullMQ job hash, for direct existence checks in sweeps. */
  bullJob(queue: string, jobId: string): string {
    return `${this.prefix}:${queue}:${jobId}`;
  }

  bullSet(queue: string, set: 'completed' | 'failed'): string {
    return `${this.prefix}:${queue}:${set}`;
  }

  /** BullMQ's event stream of a queue, read by the observer through a consumer group. */
  events(queue: string): string {
    return `${this.prefix}:${queue}:events`;
  }
}

/** Execution (and dead-letter) job ids derive from the ingress job id, so promotion is idempotent. */
const EXEC_ID_PREFIX = 'tg-';

export function execJobId(ingressJobId: string): string {
  return `${EXEC_ID_PREFIX}${ingressJobId}`;
}

/** The ingress job id behind an execution job id, or undefined for jobs tollgate did not promote. */
export function ingressIdOf(execJobIdValue: string): string | undefined {
  return execJobIdValue.startsWith(EXEC_ID_PREFIX) ? execJobIdValue.slice(EXEC_ID_PREFIX.length) : undefined;
}
