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

  /** A job's decision record, by job key (see jobKey below). */
  record(key: string): string {
    return `${this.gov}rec:${key}`;
  }

  /** Each downstream's execution queue name (hash: downstream → queue), written by gates at start. */
  execQueues(): string {
    return `${this.gov}queues`;
  }

  /** Later jobs reusing an ingress id, by tenant: tenant → job key (hash; includes/instance.lua). */
  instances(baseKey: string): string {
    return `${this.gov}ri:${baseKey}`;
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

  /** Open alerts: alert key -> id of the event that opened it (hash; evaluateAlerts-3.lua). */
  alertsOpen(): string {
    return `${this.gov}alerts:open`;
  }

  /** Since when a sustained alert condition has been hot: alert key -> ms (hash). */
  alertsSince(): string {
    return `${this.gov}alerts:since`;
  }

  /** Marker: this Redis holds the open alerts Postgres knows (absent after a flush; the relay re-seeds). */
  alertsSeeded(): string {
    return `${this.gov}alerts:seeded`;
  }

  /** Alert events not yet known to be in Postgres are read from here by the relay (stream). */
  alertEvents(): string {
    return `${this.gov}alerts:ev`;
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

  /**
   * The gate's claims on ingress jobs (zset: job id → lease end, ms): tollgate's own key, inside the
   * ingress queue's key space (and so its hash tag) because claimIngress-8.lua changes both at once.
   */
  ingressClaims(queue: string): string {
    return `${this.prefix}:${queue}:tg-claims`;
  }

  /**
   * Simple-mode deduplication ids of ingress jobs still in flight (hash: job key → deduplication id,
   * newline, ingress id): kept until the job's execution ends (finishIngress, releaseDedup).
   */
  ingressHeldDedup(queue: string): string {
    return `${this.prefix}:${queue}:tg-dedup`;
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

/**
 * Job keys. Governance knows an ingress job by its *job key*: the ingress id, with '%', ':' and '~'
 * percent-encoded (BullMQ refuses ':' in custom ids, and a job scheduler's ids are
 * `repeat:<scheduler id>:<time>`), and, for a job that reuses the id of an earlier job that governance
 * still knows (a custom id added again, by another tenant or after the first ended), `~<stamp>`
 * appended: the stamp tells this instance from the earlier one (see includes/instance.lua). The
 * encoding is one-to-one, so distinct jobs never share a key, and for ordinary ids (BullMQ's numbers,
 * custom ids without those three characters) the job key is the ingress id itself.
 */
export function encodeJobId(ingressJobId: string): string {
  return ingressJobId.replace(/[%:~]/g, (c) => (c === '%' ? '%25' : c === ':' ? '%3A' : '%7E'));
}

/** The job key of the first instance of an ingress id (a reused id's later instances add `~<stamp>`). */
export function jobKey(ingressJobId: string, stamp?: string | number): string {
  return stamp === undefined ? encodeJobId(ingressJobId) : `${encodeJobId(ingressJobId)}~${stamp}`;
}

/** The ingress id (and the instance stamp, for a reused id) behind a job key. */
export function parseJobKey(key: string): { ingressJobId: string; stamp?: string } {
  const tilde = key.indexOf('~');
  const encoded = tilde < 0 ? key : key.slice(0, tilde);
  const ingressJobId = encoded.replace(/%(25|3A|7E)/g, (_, h: string) => (h === '25' ? '%' : h === '3A' ? ':' : '~'));
  return tilde < 0 ? { ingressJobId } : { ingressJobId, stamp: key.slice(tilde + 1) };
}

/** Execution (and dead-letter) job ids derive from the job key, so promotion is idempotent. */
const EXEC_ID_PREFIX = 'tg-';

export function execJobId(key: string): string {
  return `${EXEC_ID_PREFIX}${key}`;
}

/** The job key behind an execution job id, or undefined for jobs tollgate did not promote. */
export function jobKeyOf(execJobIdValue: string): string | undefined {
  return execJobIdValue.startsWith(EXEC_ID_PREFIX) ? execJobIdValue.slice(EXEC_ID_PREFIX.length) : undefined;
}

/** The ingress job id behind an execution (or dead-letter) job id, or undefined for jobs tollgate did not add. */
export function ingressIdOf(execJobIdValue: string): string | undefined {
  const key = jobKeyOf(execJobIdValue);
  return key === undefined ? undefined : parseJobKey(key).ingressJobId;
}
