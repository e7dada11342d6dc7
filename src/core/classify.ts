/**
 * Pure classification of an ingress job: is it well-formed, whose is it, and where does it go.
 * No I/O; the gate calls it once per job before any Redis work.
 */
import { ERRORS, type RejectionCode } from '../errors';
import { compileGlob } from './glob';
import { MAX_TIME_MS } from './limits';
import { readPath } from './paths';

export const TENANT_ID = /^[A-Za-z0-9._:@-]{1,128}$/;
/** BullMQ's own priority range: 0 (none) to 2^21 - 1 (BullMQ refuses 2097152 on add). */
export const MAX_PRIORITY = 2_097_151;
/** `limits.maxJobNameLength`'s default: longer names are refused before anything is built from them. */
export const DEFAULT_MAX_JOB_NAME_LENGTH = 256;

export interface RoutingConfig {
  rules: ReadonlyArray<{ jobName: string; downstream: string }>;
  dataField: string | null;
  downstreams: ReadonlyArray<string>;
}

export interface JobRulesConfig {
  costs: ReadonlyArray<{ jobName: string; cost: number }>;
  costField: string;
  ttls: ReadonlyArray<{ jobName: string; ttlMs: number }>;
  deadlineField: string;
}

export interface ClassifyConfig {
  tenantIdPath: string;
  maxPayloadBytes: number;
  /** Characters (UTF-16 code units) a job name may have; default DEFAULT_MAX_JOB_NAME_LENGTH. */
  maxJobNameLength?: number;
  routing: RoutingConfig;
  jobs?: JobRulesConfig;
}

export const MAX_COST = 10_000;

export interface IngressJobView {
  name: string;
  data: unknown;
  opts: { priority?: unknown };
  /** When the producer added the job (ms); TTLs count from when it became due: this plus its delay. */
  timestamp?: number;
  /** Its BullMQ `delay` option (ms), if any (the job's own `delay` field is reset to 0 when BullMQ promotes it). */
  delay?: number;
  /** The size of its data as stored (bytes of JSON), when known: spares serializing it again. */
  dataBytes?: number;
}

export type Classification =
  | { ok: true; tenantId: string; downstream: string; priority: number; cost: number; deadline?: number }
  | { ok: false; code: RejectionCode; reason: string; message: string; tenantId?: string };

export interface Router {
  route(name: string, data: Record<string, unknown>): { downstream: string } | { code: RejectionCode; message: string };
}

/** Routing: the first rule whose glob matches the job name wins; else the data field, if enabled. */
export function createRouter(cfg: RoutingConfig): Router {
  const rules = cfg.rules.map((r) => ({ re: compileGlob(r.jobName), glob: r.jobName, downstream: r.downstream }));
  const known = new Set(cfg.downstreams);
  const field = cfg.dataField;
  return {
    route(name, data) {
      for (const r of rules) if (r.re.test(name)) return { downstream: r.downstream };
      if (field !== null) {
        const named = readPath({ data }, field);
        if (named !== undefined) {
          if (typeof named === 'string' && known.has(named)) return { downstream: named };
          return {
            code: 'TG_ERR_UNKNOWN_DOWNSTREAM',
            message: `${field} is ${JSON.stringify(named).slice(0, 80)}, not a declared downstream (declared: ${[...known].join(', ')})`,
          };
        }
      }
      return {
        code: 'TG_ERR_NO_ROUTE',
        message: `no routing rule matches job name ${JSON.stringify(name).slice(0, 120)}${field ? ` and ${field} is not set` : ''}`,
      };
    },
  };
}

function reject(code: RejectionCode, message: string, tenantId?: string): Classification {
  const out: Classification = { ok: false, code, reason: ERRORS[code].reason, message };
  if (tenantId !== undefined) out.tenantId = tenantId;
  return out;
}

export function createClassifier(cfg: ClassifyConfig): (job: IngressJobView) => Classification {
  const router = createRouter(cfg.routing);
  const costRules = (cfg.jobs?.costs ?? []).map((r) => ({ re: compileGlob(r.jobName), cost: r.cost }));
  const ttlRules = (cfg.jobs?.ttls ?? []).map((r) => ({ re: compileGlob(r.jobName), ttlMs: r.ttlMs }));
  const maxName = cfg.maxJobNameLength ?? DEFAULT_MAX_JOB_NAME_LENGTH;
  return (job) => {
    // First: the name reaches Redis keys (waiting flows), records and globs once the job is routed.
    if (job.name.length > maxName) {
      return reject('TG_ERR_JOB_NAME_TOO_LONG', `job name is ${job.name.length} characters, over the limit of ${maxName} (limits.maxJobNameLength)`);
    }
    const data = job.data;
    if (data === null || typeof data !== 'object' || Array.isArray(data)) {
      const kind = data === null ? 'null' : Array.isArray(data) ? 'an array' : typeof data;
      return reject('TG_ERR_INVALID_PAYLOAD', `job data must be a JSON object, got ${kind}`);
    }
    const record = data as Record<string, unknown>;
    const size = job.dataBytes ?? Buffer.byteLength(JSON.stringify(record), 'utf8');
    if (size > cfg.maxPayloadBytes) {
      return reject('TG_ERR_PAYLOAD_TOO_LARGE', `job data is ${size} bytes, over the limit of ${cfg.maxPayloadBytes}`);
    }
    const tenant = readPath({ data: record }, cfg.tenantIdPath);
    if (tenant === undefined || tenant === null || tenant === '') {
      return reject('TG_ERR_MISSING_TENANT', `no tenant id at ${cfg.tenantIdPath}`);
    }
    if (typeof tenant !== 'string' || !TENANT_ID.test(tenant)) {
      return reject(
        'TG_ERR_INVALID_TENANT',
        `${cfg.tenantIdPath} must be a string of 1-128 characters from [A-Za-z0-9._:@-], got ${JSON.stringify(tenant).slice(0, 80)}`,
      );
    }
    const rawPriority = job.opts.priority !== undefined && job.opts.priority !== 0 ? job.opts.priority : record.priority;
    let priority = 0;
    if (rawPriority !== undefined && rawPriority !== null) {
      if (typeof rawPriority !== 'number' || !Number.isInteger(rawPriority) || rawPriority < 0 || rawPriority > MAX_PRIORITY) {
        return reject(
          'TG_ERR_INVALID_PRIORITY',
          `priority must be an integer from 0 to ${MAX_PRIORITY}, got ${JSON.stringify(rawPriority).slice(0, 40)}`,
          tenant,
        );
      }
      priority = rawPriority;
    }
    let cost = costRules.find((r) => r.re.test(job.name))?.cost ?? 1;
    const costField = cfg.jobs?.costField ?? 'data.cost';
    const statedCost = readPath({ data: record }, costField);
    if (statedCost !== undefined) {
      if (typeof statedCost !== 'number' || !Number.isInteger(statedCost) || statedCost < 1 || statedCost > MAX_COST) {
        return reject('TG_ERR_INVALID_COST', `${costField} must be a whole number from 1 to ${MAX_COST}, got ${JSON.stringify(statedCost).slice(0, 40)}`, tenant);
      }
      cost = statedCost;
    }
    let deadline: number | undefined;
    const deadlineField = cfg.jobs?.deadlineField ?? 'data.deadline';
    const statedDeadline = readPath({ data: record }, deadlineField);
    if (statedDeadline !== undefined) {
      deadline = typeof statedDeadline === 'number' ? statedDeadline : typeof statedDeadline === 'string' ? Date.parse(statedDeadline) : NaN;
      if (
        !Number.isFinite(deadline) ||
        deadline < 0 ||
        deadline > MAX_TIME_MS ||
        (typeof statedDeadline === 'string' && !/^\d{4}-\d\d-\d\dT/.test(statedDeadline))
      ) {
        return reject(
          'TG_ERR_INVALID_DEADLINE',
          `${deadlineField} must be an ISO time or ms since the epoch, no later than the year 9999, got ${JSON.stringify(statedDeadline).slice(0, 60)}`,
          tenant,
        );
      }
    } else {
      const ttl = ttlRules.find((r) => r.re.test(job.name))?.ttlMs;
      // From when the job became due, as a BullMQ worker would first see it: a delayed job's TTL starts
      // when its delay is over, not at its add.
      const delay = typeof job.delay === 'number' && Number.isFinite(job.delay) && job.delay > 0 ? job.delay : 0;
      if (ttl !== undefined && job.timestamp !== undefined) deadline = job.timestamp + delay + ttl;
    }
    const routed = router.route(job.name, record);
    if ('code' in routed) return reject(routed.code, routed.message, tenant);
    return { ok: true, tenantId: tenant, downstream: routed.downstream, priority, cost, ...(deadline !== undefined ? { deadline } : {}) };
  };
}
