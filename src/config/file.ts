/**
 * The topology and policy file (TOLLGATE_CONFIG): downstreams, routing, tenant id path and tuning.
 * Parsed once by zod; every error names the file and the exact path inside it.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { z } from 'zod';
import { AlertsConfigSchema, NotifierConfigSchema } from '../contracts/alerts';
import { BreakerConfigSchema } from '../contracts/breakers';
import { PolicyInputSchema } from '../contracts/policies';
import { QuotaLimitsSchema } from '../contracts/quotas';
import { TollgateError } from '../errors';
import { hashTagOf, queueName } from './queue-name';
import type { Policy } from '../core/policy';
import type { AimdConfig } from '../core/aimd';
import { toPolicy } from '../config/policies';
import { MAX_CAPACITY, MAX_DURATION_MS } from '../core/limits';

/** A duration in ms, at most ten years (src/core/limits.ts). */
const ms = (min: number) => z.number().int().min(min).max(MAX_DURATION_MS);

const dataPath = z
  .string()
  .regex(/^data(\.[A-Za-z0-9_$-]+)+$/, 'must be a dotted path into the job data, like data.tenantId');

const DownstreamSchema = z.strictObject({
  name: z.string().regex(/^[a-z0-9][a-z0-9_-]{0,62}$/, 'must be 1-63 characters from [a-z0-9_-], starting with a letter or digit'),
  /** Execution queue; default `exec.<name>`. */
  queue: queueName.optional(),
  /** Max admitted, unfinished cost units in the execution queue (enforced by the allocation policy). */
  capacity: z.number().int().positive().max(MAX_CAPACITY),
  /** Allocation policy when capacity binds; default proportional with equal weights. */
  policy: PolicyInputSchema.optional(),
  /** Circuit breaker of the downstream (src/core/breaker.ts); on by default. */
  breaker: BreakerConfigSchema.prefault({}),
  /** Load shedding: above `high` waiting jobs, shed the lowest priorities until below `low`. */
  shedding: z
    .strictObject({
      high: z.number().int().min(1).max(1e9),
      low: z.number().int().min(0).max(1e9),
      /** dead-letter (reason `shed`), or set the job aside for `delayMs` and then put it back. */
      action: z.enum(['dead-letter', 'delay']).default('dead-letter'),
      delayMs: ms(1).default(600_000),
    })
    .refine((s) => s.low < s.high, { message: 'low must be below high', path: ['low'] })
    .optional(),
  /** Adaptive capacity: between `floor` and `capacity` (the ceiling), by AIMD on latency and failures. */
  adaptive: z
    .strictObject({
      floor: z.number().int().min(1).max(MAX_CAPACITY),
      /** p90 of admission-to-completion latency above this cuts capacity. */
      targetLatencyMs: ms(1),
      maxFailureRate: z.number().min(0).max(1).default(0.2),
      decreaseFactor: z.number().gt(0).lt(1).default(0.7),
      increaseStep: z.number().int().min(1).max(MAX_CAPACITY).default(1),
      intervalMs: ms(50).default(5_000),
      minSamples: z.number().int().min(1).max(1_000_000).default(10),
    })
    .optional(),
});

const RoutingRuleSchema = z.strictObject({
  /** Glob on the job name: `*` any run of characters, `?` one character. */
  jobName: z.string().min(1),
  downstream: z.string().min(1),
});

const ConfigSchema = z
  .strictObject({
    queues: z
      .strictObject({
        ingress: queueName.default('ingress'),
        deadLetter: queueName.default('dead-letter'),
      })
      .prefault({}),
    tenant: z.strictObject({ idPath: dataPath.default('data.tenantId') }).prefault({}),
    downstreams: z.array(DownstreamSchema).min(1, 'declare at least one downstream'),
    routing: z
      .strictObject({
        rules: z.array(RoutingRuleSchema).default([]),
        /** Data field naming the downstream when no rule matches; null disables it. */
        dataField: dataPath.nullable().default('data.downstream'),
      })
      .prefault({}),
    quotas: z
      .strictObject({
        /** Applies to every tenant without a quota of its own; each tenant gets its own allowance. */
        default: QuotaLimitsSchema.prefault({}),
      })
      .prefault({}),
    scheduler: z
      .strictObject({
        /** Waiting jobs one scheduler call may admit. */
        maxAdmitPerCall: z.number().int().min(1).max(5000).default(200),
        /** Flows one scheduler call may evaluate (bounds the script's run time). */
        maxEvaluationsPerCall: z.number().int().min(1).max(100_000).default(1000),
        /** A job admitted from the waiting place is added again if its add is not confirmed by then. */
        leaseMs: ms(100).default(30_000),
        /** Each scheduler looks at every downstream at least this often, whatever it was told. */
        safetyTickMs: ms(10).default(1000),
      })
      .prefault({}),
    jobs: z
      .strictObject({
        /** Cost units by job-name glob, first match wins; the job's cost field overrides. Default 1. */
        costs: z.array(z.strictObject({ jobName: z.string().min(1), cost: z.number().int().min(1).max(10_000) })).default([]),
        /** Where a job may state its own cost (a whole number from 1 to 10,000). */
        costField: dataPath.default('data.cost'),
        /** Time to live by job-name glob: a job still waiting this long after it entered ingress expires. */
        ttls: z.array(z.strictObject({ jobName: z.string().min(1), ttlMs: ms(1) })).default([]),
        /** Where a job may state its deadline (ISO time or ms since epoch); it overrides the TTL. */
        deadlineField: dataPath.default('data.deadline'),
      })
      .prefault({}),
    tenantLimits: z
      .strictObject({
        /** Jobs one tenant may have waiting on one downstream; absent = no limit. */
        maxWaiting: z.number().int().min(1).optional(),
        /** Past it: dead-letter new jobs (`tenant-backlog-full`), or keep them waiting anyway. */
        onBacklogFull: z.enum(['reject', 'keep']).default('reject'),
      })
      .prefault({}),
    limits: z
      .strictObject({
        maxPayloadBytes: z.number().int().positive().max(512 * 1_048_576).default(1_048_576),
        /** Longer job names are dead-lettered (`job-name-too-long`) before any key or record is built from them. */
        maxJobNameLength: z.number().int().min(1).max(4096).default(256),
        /** A dead-lettered job's data over maxPayloadBytes is kept as its first this many bytes (with its size and SHA-256). */
        deadLetterExcerptBytes: z.number().int().min(0).max(65_536).default(4096),
        /** Dead-letter jobs kept at most; each add past it removes the oldest. */
        deadLetterMaxJobs: z.number().int().min(1).max(10_000_000).default(50_000),
      })
      .prefault({}),
    gate: z
      .strictObject({
        /** Ingress jobs one gate process works on at once; decisions are batched across them. */
        concurrency: z.number().int().min(1).max(20_000).default(4000),
        /** Max decisions per Redis script call. */
        maxBatch: z.number().int().min(1).max(1000).default(250),
        lockDurationMs: ms(100).default(30_000),
        stalledIntervalMs: ms(50).default(30_000),
        /** Promotion is idempotent, so a job may stall (its gate died) many times without harm. */
        maxStalledCount: z.number().int().min(1).max(1_000_000).default(1000),
      })
      .prefault({}),
    metrics: z
      .strictObject({
        /** Tenants per downstream with series of their own on /metrics (most waiting, then in flight); the rest are summed as tenant="(other)". */
        tenantSeries: z.number().int().min(0).max(10_000).default(50),
        /** Whether this process's API /metrics carries the cluster-wide series (also served alone at /metrics/cluster). */
        clusterSeries: z.boolean().default(true),
      })
      .prefault({}),
    dashboard: z
      .strictObject({
        /** bull-board, read-only, at /queues (a read or admin token; Basic authentication with it as the password). */
        bullBoard: z.boolean().default(false),
      })
      .prefault({}),
    telemetry: z
      .strictObject({
        /**
         * OpenTelemetry spans for the gate's part of each job (off by default): through the global tracer
         * provider the process registered (OpenTelemetry's SDK), each continuing the producer's trace.
         */
        enabled: z.boolean().default(false),
        tracerName: z.string().min(1).max(200).default('tollgate'),
      })
      .prefault({}),
    observer: z
      .strictObject({
        /** How long one XREADGROUP blocks. */
        blockMs: z.number().int().min(10).max(60_000).default(1000),
        /** Max events read per call. */
        batch: z.number().int().min(1).max(10_000).default(500),
        /** How often the reconciliation sweep looks for admitted jobs whose completion was missed. */
        reconcileIntervalMs: ms(100).default(30_000),
        /** An admitted job is checked by the sweep only after this long. */
        reconcileMinAgeMs: ms(0).default(120_000),
        /** Events another observer read but did not acknowledge for this long are taken over (it died). */
        claimIdleMs: ms(100).default(30_000),
        /** A tenant with waiting work and no admission for this long is starving (metric and warning). */
        starvationMs: ms(100).default(60_000),
        /** How often counters, definitions and period usage are synced between Redis and Postgres. */
        syncIntervalMs: ms(100).default(5_000),
        /** How often each downstream's flow (admitted, dead-lettered, waiting, in flight, capacity) is sampled for the dashboard. */
        flowSampleMs: ms(100).default(10_000),
        /** Length kept of each execution queue's event stream (BullMQ's default is 10,000). */
        eventsMaxLen: z.number().int().min(100).max(100_000_000).default(100_000),
      })
      .prefault({}),
    /** Alert detection (docs/alerts.md). */
    alerts: AlertsConfigSchema,
    /** Where alert events go: signed webhooks and a BullMQ notifications queue, from a durable outbox. */
    notifier: NotifierConfigSchema,
    retention: z
      .strictObject({
        /** How long a job's decision record (and its promotion marker) is kept. */
        decisionSeconds: z.number().int().min(60).max(MAX_DURATION_MS / 1000).default(86_400),
      })
      .prefault({}),
  })
  .superRefine((cfg, ctx) => {
    const names = new Map<string, number>();
    const queues = new Map<string, string>([
      [cfg.queues.ingress, 'queues.ingress'],
      [cfg.queues.deadLetter, 'queues.deadLetter'],
    ]);
    if (cfg.queues.ingress === cfg.queues.deadLetter) {
      ctx.addIssue({ code: 'custom', path: ['queues', 'deadLetter'], message: 'must differ from queues.ingress' });
    }
    cfg.downstreams.forEach((d, i) => {
      if (names.has(d.name)) {
        ctx.addIssue({ code: 'custom', path: ['downstreams', i, 'name'], message: `"${d.name}" is declared twice` });
      }
      names.set(d.name, i);
      const q = d.queue ?? `exec.${d.name}`;
      const clash = queues.get(q);
      if (clash) {
        ctx.addIssue({ code: 'custom', path: ['downstreams', i, 'queue'], message: `queue "${q}" is already used by ${clash}` });
      }
      queues.set(q, `downstreams[${i}]`);
      if (d.adaptive && d.adaptive.floor > (d.policy?.capacity ?? d.capacity)) {
        ctx.addIssue({ code: 'custom', path: ['downstreams', i, 'adaptive', 'floor'], message: `must not exceed the capacity (${d.policy?.capacity ?? d.capacity})` });
      }
      if (d.policy?.kind === 'reserved') {
        const total = Object.values(d.policy.tenants ?? {}).reduce((sum, t) => sum + (t.reserve ?? 0), 0);
        const cap = d.policy.capacity ?? d.capacity;
        if (total > cap) {
          ctx.addIssue({ code: 'custom', path: ['downstreams', i, 'policy', 'tenants'], message: `reserves add up to ${total}, over the capacity of ${cap}` });
        }
      }
    });
    const nq = cfg.notifier.queue.name;
    if (cfg.notifier.queue.enabled && queues.has(nq)) {
      ctx.addIssue({ code: 'custom', path: ['notifier', 'queue', 'name'], message: `queue "${nq}" is already used by ${queues.get(nq)}` });
    }
    cfg.routing.rules.forEach((r, i) => {
      if (!names.has(r.downstream)) {
        ctx.addIssue({
          code: 'custom',
          path: ['routing', 'rules', i, 'downstream'],
          message: `"${r.downstream}" is not a declared downstream (declared: ${[...names.keys()].join(', ')})`,
        });
      }
    });
  });

export type ConfigInput = z.input<typeof ConfigSchema>;
type ParsedConfig = z.output<typeof ConfigSchema>;

export interface DownstreamConfig {
  name: string;
  queue: string;
  capacity: number;
  policy: Policy;
  adaptive?: AimdConfig & { intervalMs: number };
  shedding?: { high: number; low: number; action: 'dead-letter' | 'delay'; delayMs: number };
  breaker: z.output<typeof BreakerConfigSchema>;
}

export type Config = Omit<ParsedConfig, 'downstreams'> & { downstreams: DownstreamConfig[] };

/** `['downstreams', 1, 'capacity']` → `downstreams[1].capacity`. */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : out === '' ? String(p) : `.${String(p)}`;
  return out === '' ? '(root)' : out;
}

/** Validates a parsed JSON value; `source` names it in errors. */
export function parseConfig(value: unknown, source = 'config'): Config {
  const parsed = ConfigSchema.safeParse(value);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `${formatPath(i.path)}: ${i.message}`);
    throw new TollgateError('TG_ERR_CONFIG', `${source}: ${lines.join('; ')}`, { issues: lines });
  }
  const cfg = parsed.data;
  return {
    ...cfg,
    downstreams: cfg.downstreams.map((d) => ({
      name: d.name,
      queue: d.queue ?? `exec.${d.name}`,
      capacity: d.capacity,
      policy: toPolicy(d.policy ?? { kind: 'proportional' }, d.capacity),
      ...(d.adaptive ? { adaptive: { ...d.adaptive, ceiling: d.policy?.capacity ?? d.capacity } } : {}),
      ...(d.shedding ? { shedding: d.shedding } : {}),
      breaker: d.breaker,
    })),
  };
}

export function loadConfigFile(path: string): Config {
  const file = resolve(path);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new TollgateError(
      'TG_ERR_CONFIG',
      `${file}: cannot read the config file (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); set TOLLGATE_CONFIG to its path`,
    );
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new TollgateError('TG_ERR_CONFIG', `${file}: not valid JSON: ${(err as Error).message}`);
  }
  return parseConfig(json, file);
}

/**
 * On Redis Cluster (REDIS_CLUSTER_NODES), every queue tollgate uses must carry a hash tag in its name,
 * so that all of one queue's keys fall in one slot, as BullMQ needs; without one, BullMQ's scripts
 * would fail with CROSSSLOT at the first job. Refused at start, naming each queue and its config path.
 */
export function checkClusterQueueNames(config: Config, source = 'the config'): void {
  const queues: Array<[string, string]> = [
    ['queues.ingress', config.queues.ingress],
    ['queues.deadLetter', config.queues.deadLetter],
    ...config.downstreams.map((d, i): [string, string] => [`downstreams[${i}].queue`, d.queue]),
  ];
  if (config.notifier.queue.enabled) queues.push(['notifier.queue.name', config.notifier.queue.name]);
  const untagged = queues.filter(([, q]) => hashTagOf(q) === undefined);
  if (untagged.length === 0) return;
  throw new TollgateError(
    'TG_ERR_CONFIG',
    `${source}: on Redis Cluster (REDIS_CLUSTER_NODES) every queue name needs a hash tag so each queue's keys share one slot: ` +
      untagged.map(([path, q]) => `${path} "${q}" (e.g. "{${q}}")`).join(', '),
  );
}
