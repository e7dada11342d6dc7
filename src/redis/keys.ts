/**
 * Every Redis key tollgate owns, in one place: the layout tables below are the only spelling of key
 * names. TypeScript builds keys through `Keys`; the Lua scripts build the per-entity keys they derive
 * at run time (a tenant's quota state, a job's record) through `includes/keys.lua`, which the script
 * loader generates from the same tables (src/redis/scripts.ts), and get every fixed key through KEYS.
 *
 * All governance state shares one hash tag, `{<prefix>.gov}`: a tenant quota spans downstreams, so
 * admitting a job touches the tenant's quota state and the downstream's capacity together, and one
 * Lua script can only do that atomically within one slot (on Redis Cluster as on a single node).
 * BullMQ's queues keep their own keys (`<prefix>:<queue>:...`) and can spread across shards; the
 * governance slot carries small records and counters only.
 */

/** Keys directly under the governance prefix G (`<G><suffix>`). */
export const GOV_KEYS = {
  /** Each downstream's execution queue name (hash: downstream → queue), written by gates at start. */
  execQueues: 'queues',
  /** Default quota definition (JSON string). */
  quotaDefault: 'qd-default',
  /** Tenants that have quota definitions in Redis (set). */
  quotaTenants: 'qd-tenants',
  /** Throttle definitions (hash: id → JSON). */
  throttles: 'th',
  /** Ids of throttles that apply to every tenant (set). */
  throttlesAny: 'th-any',
  /** Tenants that have throttles of their own in Redis (set). */
  throttleTenants: 'th-tenants',
  /** Version of the quota and throttle definitions the Redis mirror holds (string). */
  mirrorVersion: 'mirror-version',
  /** Marker: this Redis holds the period usage restored from the Postgres ledger. */
  usageRestored: 'usage-restored',
  /** Breaker transitions not yet written to Postgres, newest first (list; breakerCas-3.lua pushes). */
  breakerOutbox: 'brk-outbox',
  /** Breaker transition counts by `downstream|from|to` (hash; breakerCas-3.lua increments). */
  breakerTransitions: 'brk-transitions',
  /** Open alerts: alert key → id of the event that opened it (hash; evaluateAlerts-3.lua). */
  alertsOpen: 'alerts:open',
  /** Since when a sustained alert condition has been hot: alert key → ms (hash). */
  alertsSince: 'alerts:since',
  /** Marker: this Redis holds the open alerts Postgres knows (absent after a flush; the relay re-seeds). */
  alertsSeeded: 'alerts:seeded',
  /** Alert events not yet known to be in Postgres, read from here by the relay (stream). */
  alertEvents: 'alerts:ev',
  /** Decision and outcome counters of jobs refused before routing (hash). */
  unroutedStats: 'unrouted:stats',
  /** Sequence giving waiting jobs their arrival order (string counter). */
  seq: 'seq',
} as const;

/** Families of keys under G, one per entity (`<G><prefix><id>`). */
export const GOV_FAMILIES = {
  /** A job's decision record, by job key (hash; see jobKey below). */
  record: 'rec:',
  /** Later jobs reusing an ingress id, by tenant: tenant → job key (hash; includes/instance.lua). */
  instances: 'ri:',
  /** A tenant's quota definitions (hash: quota id → JSON). */
  quotaDefs: 'qd:',
  /** A quota's state for a tenant, `<quota id>:<tenant>` (hash: tat, inf, period windows and usage). */
  quotaState: 'qs:',
  /** Ids of a tenant's own throttles (set). */
  throttlesOf: 'th-t:',
  /** A slow throttle's GCRA TAT (string). */
  throttleState: 'ths:',
  /** Everything of one downstream: `ds:<downstream>:` then DOWNSTREAM_KEYS or DOWNSTREAM_FAMILIES. */
  downstream: 'ds:',
} as const;

/** Keys of a downstream (`<G>ds:<downstream>:<suffix>`). */
export const DOWNSTREAM_KEYS = {
  /** Admitted jobs not yet finished: zset job key → admission time (ms). */
  inflight: 'inflight',
  /** Decision and outcome counters (hash). */
  stats: 'stats',
  /** Jobs leased out of the waiting place for their execution add (zset job key → lease end). */
  promoting: 'promoting',
  /** Jobs leased out of the waiting place for their dead-letter add (zset job key → lease end). */
  deadLetterPending: 'dlpending',
  /** The allocation policy (hash). */
  policy: 'pol',
  /** Per-tenant policy settings (hash: tenant → JSON). */
  policyTenants: 'pol-t',
  /** Adaptive capacity in force (string), when adaptive concurrency set one. */
  adaptiveCapacity: 'cap',
  /** Marker: adaptive concurrency observes this downstream. */
  adaptiveOn: 'obs-on',
  /** Adaptive concurrency's round lock (string with a TTL). */
  adaptiveLock: 'aimd-lock',
  /** Adaptive concurrency's latency observations (list). */
  adaptiveObservations: 'obs',
  /** When adaptive concurrency last changed the capacity (string, ms). */
  adaptiveAt: 'aimd-at',
  /** The breaker as the state machine stored it and as the scheduler reads it (hash). */
  breaker: 'brk',
  /** Capacity units in use (string counter). */
  used: 'used',
  /** Cost units in flight per tenant (hash). */
  tenantInflight: 'tin',
  /** Jobs in the waiting place (string counter). */
  waitingTotal: 'wtotal',
  /** Waiting jobs per tenant (hash). */
  waitingCounts: 'wc',
  /** Waiting jobs by priority, for load shedding (zset). */
  byPriority: 'bypri',
  /** Waiting jobs with a deadline (zset job key → deadline). */
  deadlines: 'deadlines',
  /** Marker: load shedding is on. */
  shedding: 'shedding',
  /** Jobs set aside by load shedding's delay action (zset job key → due time). */
  shed: 'shed',
  /** Tenants queued for service, with when they were last served or became eligible (zset). */
  since: 'since',
  /** State of each waiting flow: 'e' eligible, 't|reason|until' timer, 'p|reason' parked (hash). */
  flowStates: 'fst',
  /** Flow samples for the dashboard, newest first (list of JSON). */
  flowSamples: 'flow',
  /** The scheduler's global virtual time (string). */
  globalVt: 'gvt',
  /** Tiers with queued tenants (zset tier → tier). */
  tiers: 'tiers',
  /** Flows waiting for a timer (zset flow → due time). */
  timers: 'timers',
  /** Each queued tenant's tier (hash: tenant → tier). */
  tenantTiers: 'stier',
  /** Each tenant's virtual time (hash). */
  tenantVt: 'tvt',
} as const;

/** Families of a downstream's keys, one per entity (`<G>ds:<downstream>:<prefix><id>`). */
export const DOWNSTREAM_FAMILIES = {
  /** A waiting flow (tenant/name): zset job key → arrival order. */
  flow: 'f:',
  /** A tenant's flows with waiting jobs (set). */
  tenantFlows: 'fl:',
  /** A tenant's eligible flows (zset). */
  eligibleFlows: 'tf:',
  /** A tenant's parked flows (set). */
  parkedFlows: 'pk:',
  /** Cost admitted per tenant in the minute starting at the id (hash, ms). */
  admissions: 'adm:',
  /** A tenant's last admissions from the waiting place: `at:waitMs` (list). */
  waitSamples: 'waits:',
  /** Queued tenants of a tier, by virtual time (zset). */
  schedule: 'sched:',
  /** Probes taken in a half-open breaker generation (string counter). */
  probed: 'probed:',
} as const;

export class Keys {
  /** Prefix of every governance key (ends with ':'); passed to the Lua scripts as G. */
  readonly gov: string;

  constructor(readonly prefix: string) {
    this.gov = `${prefix}:gov:{${prefix}.gov}:`;
  }

  private at(name: keyof typeof GOV_KEYS): string {
    return `${this.gov}${GOV_KEYS[name]}`;
  }

  private of(family: keyof typeof GOV_FAMILIES, id: string): string {
    return `${this.gov}${GOV_FAMILIES[family]}${id}`;
  }

  /** A downstream's key (`DOWNSTREAM_KEYS`). */
  downstream(downstream: string, name: keyof typeof DOWNSTREAM_KEYS): string {
    return `${this.of('downstream', downstream)}:${DOWNSTREAM_KEYS[name]}`;
  }

  /** A downstream's per-entity key (`DOWNSTREAM_FAMILIES`). */
  downstreamOf(downstream: string, family: keyof typeof DOWNSTREAM_FAMILIES, id: string | number): string {
    return `${this.of('downstream', downstream)}:${DOWNSTREAM_FAMILIES[family]}${id}`;
  }

  /** A job's decision record, by job key (see jobKey below). */
  record(key: string): string {
    return this.of('record', key);
  }

  execQueues(): string {
    return this.at('execQueues');
  }

  instances(baseKey: string): string {
    return this.of('instances', baseKey);
  }

  inflight(downstream: string): string {
    return this.downstream(downstream, 'inflight');
  }

  /** Decision and outcome counters: of a downstream, or of jobs refused before routing. */
  stats(downstream: string | undefined): string {
    return downstream === undefined ? this.at('unroutedStats') : this.downstream(downstream, 'stats');
  }

  /** Marker: this Redis holds the counters restored from Postgres (absent after a flush). */
  statsRestored(downstream: string | undefined): string {
    return `${this.stats(downstream)}-restored`;
  }

  /** A waiting flow's key: `flow` is `<tenant>/<job name>`. */
  flow(downstream: string, flow: string): string {
    return this.downstreamOf(downstream, 'flow', flow);
  }

  quotaDefs(tenantId: string): string {
    return this.of('quotaDefs', tenantId);
  }

  quotaTenants(): string {
    return this.at('quotaTenants');
  }

  throttleTenants(): string {
    return this.at('throttleTenants');
  }

  mirrorVersion(): string {
    return this.at('mirrorVersion');
  }

  breakerOutbox(): string {
    return this.at('breakerOutbox');
  }

  breakerTransitionCounts(): string {
    return this.at('breakerTransitions');
  }

  alertsOpen(): string {
    return this.at('alertsOpen');
  }

  alertsSince(): string {
    return this.at('alertsSince');
  }

  alertsSeeded(): string {
    return this.at('alertsSeeded');
  }

  alertEvents(): string {
    return this.at('alertEvents');
  }

  quotaDefault(): string {
    return this.at('quotaDefault');
  }

  quotaState(quotaId: string, tenantId: string): string {
    return this.of('quotaState', `${quotaId}:${tenantId}`);
  }

  /** Pattern matching every quota state (SCAN). */
  quotaStatePattern(): string {
    return this.of('quotaState', '*');
  }

  usageRestored(): string {
    return this.at('usageRestored');
  }

  throttles(): string {
    return this.at('throttles');
  }

  throttlesOf(tenantId: string | undefined): string {
    return tenantId === undefined ? this.at('throttlesAny') : this.of('throttlesOf', tenantId);
  }

  throttleState(throttleId: string): string {
    return this.of('throttleState', throttleId);
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
    return this.bullKey(queue, 'tg-claims');
  }

  /**
   * Simple-mode deduplication ids of ingress jobs still in flight (hash: job key → deduplication id,
   * newline, ingress id): kept until the job's execution ends (finishIngress, releaseDedup).
   */
  ingressHeldDedup(queue: string): string {
    return this.bullKey(queue, 'tg-dedup');
  }

  /** A key of BullMQ's layout for a queue (`<prefix>:<queue>:<name>`): its job hashes, lists and sets. */
  bullKey(queue: string, name: string): string {
    return `${this.prefix}:${queue}:${name}`;
  }

  /** Key of a BullMQ job hash, for direct existence checks in sweeps. */
  bullJob(queue: string, jobId: string): string {
    return this.bullKey(queue, jobId);
  }

  bullSet(queue: string, set: 'completed' | 'failed'): string {
    return this.bullKey(queue, set);
  }

  /** BullMQ's event stream of a queue, read by the observer through a consumer group. */
  events(queue: string): string {
    return this.bullKey(queue, 'events');
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
