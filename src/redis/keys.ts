/**
 * Every Redis key tollgate owns, in one place.
 *
 * All governance state shares one hash tag, `{<prefix>.gov}`: a tenant quota spans downstreams, so
 * admitting a job touches the tenant's quota state and the downstream's capacity together, and one
 * Lua script can only do that atomically within one slot (on Redis Cluster as on a single node).
 * BullMQ's queues keep their own keys (`<prefix>:<queue>:...`) and can spread across shards; the
 * governance slot carries small records and counters only. src/redis/lua/includes/governance.lua
 * documents each key under the governance prefix.
 */
export class Keys {
  /** Prefix of every governance key (ends with ':'); passed to the Lua scripts as G. */
  readonly gov: string;

  constructor(readonly prefix: string) {
    this.gov = `${prefix}:gov:{${prefix}.gov}:`;
  }

  record(ingressJobId: string): string {
    return `${this.gov}rec:${ingressJobId}`;
  }

  ds(downstream: string, suffix: string): string {
    return `${this.gov}ds:${downstream}:${suffix}`;
  }

  /** Admitted jobs not yet finished: zset ingress id → admission time (ms). */
  inflight(downstream: string): string {
    return this.ds(downstream, 'inflight');
  }

  /** Decision and outcome counters: of a downstream, or of jobs refused before routing. */
  stats(downstream: string | undefined): string {
    return downstream === undefined ? `${this.gov}unrouted:stats` : this.ds(downstream, 'stats');
  }

  /** Marker: this Redis holds the counters restored from Postgres (absent after a flush). */
  statsRestored(downstream: string | undefined): string {
    return `${this.stats(downstream)}-restored`;
  }

  quotaDefs(tenantId: string): string {
    return `${this.gov}qd:${tenantId}`;
  }

  /** Tenants that have quota definitions in Redis (set). */
  quotaTenants(): string {
    return `${this.gov}qd-tenants`;
  }

  /** Tenants that have throttles of their own in Redis (set). */
  throttleTenants(): string {
    return `${this.gov}th-tenants`;
  }

  /** Version of the quota and throttle definitions the Redis mirror holds (string). */
  mirrorVersion(): string {
    return `${this.gov}mirror-version`;
  }

  /** Breaker transitions not yet written to Postgres, newest first (list; breakerCas-1.lua pushes). */
  breakerOutbox(): string {
    return `${this.gov}brk-outbox`;
  }

  /** Breaker transition counts by `downstream|from|to` (hash; breakerCas-1.lua increments). */
  breakerTransitionCounts(): string {
    return `${this.gov}brk-transitions`;
  }

  quotaDefault(): string {
    return `${this.gov}qd-default`;
  }

  quotaState(quotaId: string, tenantId: string): string {
    return `${this.gov}qs:${quotaId}:${tenantId}`;
  }

  /** Marker: this Redis holds the period usage restored from the Postgres ledger. */
  usageRestored(): string {
    return `${this.gov}usage-restored`;
  }

  throttles(): string {
    return `${this.gov}th`;
  }

  throttlesOf(tenantId: string | undefined): string {
    return tenantId === undefined ? `${this.gov}th-any` : `${this.gov}th-t:${tenantId}`;
  }

  throttleState(throttleId: string): string {
    return `${this.gov}ths:${throttleId}`;
  }

  /** Pub/sub channel on which schedulers are told to look at a downstream again. */
  wakeChannel(): string {
    return `${this.prefix}:gov-wake`;
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
