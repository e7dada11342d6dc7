/**
 * How quota and throttle definitions are stored in Redis for the Lua scripts (cjson), and how job
 * payloads are stored while they wait. Globs become anchored Lua patterns here, once, so the scripts
 * can match job names with string.find.
 */
import type { JobsOptions } from 'bullmq';
import type { TenantPolicy } from '../core/policy';
import { specificity, type QuotaDef, type ThrottleDef } from '../core/quota';

const LUA_MAGIC = /[\^$()%.[\]*+\-?]/g;

export function globToLuaPattern(glob: string): string {
  let out = '^';
  for (const ch of glob) {
    if (ch === '*') out += '.*';
    else if (ch === '?') out += '.';
    else out += ch.replace(LUA_MAGIC, '%$&');
  }
  return `${out}$`;
}

/** Only defined fields are written: cjson would turn a JSON null into a userdata, not nil. */
function compact(o: Record<string, unknown>): string {
  return JSON.stringify(Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)));
}

export function encodeQuota(def: QuotaDef): string {
  return compact({
    id: def.id,
    jt: def.jobType !== undefined ? globToLuaPattern(def.jobType) : undefined,
    ds: def.downstream,
    sp: specificity(def),
    r: def.rate,
    b: def.burst,
    c: def.maxConcurrent,
    h: def.periods?.hour,
    d: def.periods?.day,
    m: def.periods?.month,
    rej: def.onPeriodExceeded === 'reject' ? 1 : 0,
    p: def.paused ? 1 : 0,
  });
}

export function encodeThrottle(def: ThrottleDef): string {
  return compact({
    id: def.id,
    t: def.tenantId,
    jt: def.jobType !== undefined ? globToLuaPattern(def.jobType) : undefined,
    a: def.action,
    r: def.rate,
    b: def.burst,
    u: def.until,
  });
}

export function encodeTenantPolicy(tp: TenantPolicy): string {
  return compact({ w: tp.weight, tier: tp.tier, r: tp.reserve, bl: tp.borrowLimit, ms: tp.maxShare });
}

/** What a waiting job needs to be promoted later: its name, data and the producer's options. */
export interface WaitingPayload {
  name: string;
  data: unknown;
  opts: JobsOptions;
  /** When the producer added it to ingress (ms), for the ingress → exec latency metric. */
  addedAt: number;
}

export function encodePayload(p: WaitingPayload): string {
  return JSON.stringify(p);
}

export function decodePayload(raw: string): WaitingPayload {
  return JSON.parse(raw) as WaitingPayload;
}
