/**
 * Alert detection, in every observer: each round reads the live governance state (period usage,
 * in flight and rate tokens per quota, waiting jobs, starvation, adaptive capacity), turns it into
 * observations, and hands them to evaluateAlerts-3.lua, which opens and resolves alerts atomically
 * (so two observers seeing the same crossing open one alert) and appends each change to the alert
 * event stream that the relay writes to Postgres.
 *
 * A round looks only at tenants that were admitted in the last two minutes, have jobs waiting, or
 * have an alert open or pending: usage changes only through admissions, and everything else that
 * could resolve an alert is in the open set. Quota state (usage, in flight, rate tokens) is read only
 * for the admitted ones and those with an alert open or pending: in flight, tokens and usage change
 * only through admissions, and a crossing seen at an admission is pending (so read) from then on.
 * Tenants that only wait are looked at for backlog and starvation, from the waiting counts and the
 * queue of eligible tenants read once per downstream. An observation is built in full only when it
 * can change something (an alert to open, resolve or keep pending): with 20,000 waiting tenants a
 * round costs a few reads and a pass over two maps, not 40,000 reads and 40,000 payloads a second.
 */
import { isStarving } from '../core/starvation';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Config } from '../config/file';
import { above, alertKey, below, effectiveRule, subjectOfKey, type AlertKind, type Observation, type TenantAlertRule } from '../core/alerts';
import { gcraTokens } from '../core/gcra';
import { PERIODS, windowsAt, type Period } from '../core/periods';
import { rateOf } from '../core/quota';
import type { Database } from '../db/client';
import { allAlertRules } from '../db/alerts';
import type { Keys } from '../redis/keys';
import { scriptKeys } from '../redis/script-keys';
import { pipelineReplies } from '../redis/connection';
import { scriptsFor } from '../redis/scripts';

/** Kinds this detector opens and resolves (breaker alerts come from the breaker history). */
const DETECTED: ReadonlySet<AlertKind> = new Set(['period_usage', 'saturation', 'backlog', 'starvation', 'capacity_cut']);
/** Where each period's total and usage are: the stored quota's field, and the state's window and used fields (their index in STATE_FIELDS). */
const PERIOD_AT: Record<Period, { limit: 'h' | 'd' | 'm'; window: number; used: number }> = {
  hour: { limit: 'h', window: 2, used: 3 },
  day: { limit: 'd', window: 4, used: 5 },
  month: { limit: 'm', window: 6, used: 7 },
};
const STATE_FIELDS = ['tat', 'inf', 'hw', 'hn', 'dw', 'dn', 'mw', 'mn'] as const;
/** Observations per script call: bounds one call's run time. */
const CHUNK = 200;
/** Alert events kept in the Redis stream (the relay normally keeps it near empty). */
export const ALERT_STREAM_MAXLEN = 100_000;

interface StoredQuota {
  id: string;
  r?: number;
  b?: number;
  c?: number;
  h?: number;
  d?: number;
  m?: number;
}

export interface AlertPayload {
  kind: AlertKind;
  tenantId?: string;
  downstream?: string;
  threshold?: number;
  value: number;
  window?: { period: Period; start: number; end: number };
  detail: Record<string, unknown>;
}

export interface DetectorDeps {
  redis: Redis;
  keys: Keys;
  config: Config;
  database: Database;
  log: Logger;
  now: () => number;
  /** Called after a round that opened or resolved something (the relay writes it at once). */
  onEvents?: () => void;
}

export class AlertDetector {
  private timer?: NodeJS.Timeout;
  private running?: Promise<number>;
  private rules = new Map<string, Partial<TenantAlertRule>>();

  constructor(private readonly deps: DetectorDeps) {}

  start(): void {
    const every = this.deps.config.alerts.evaluateIntervalMs;
    this.timer = setInterval(() => void this.tick(), every);
    this.timer.unref();
  }

  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.running?.catch(() => undefined);
  }

  /** One round; never throws (a failed round is logged and the next one tries again). */
  tick(): Promise<number> {
    if (this.running) return this.running;
    this.running = this.evaluate()
      .catch((err: Error) => {
        this.deps.log.warn({ err: err.message }, 'alert evaluation failed; retrying next interval');
        return 0;
      })
      .finally(() => {
        this.running = undefined;
      });
    return this.running;
  }

  /** Per-tenant rules from Postgres, re-read every round (a small table); the last ones read stay in force while Postgres is away. */
  private async loadRules(): Promise<void> {
    try {
      const rows = await allAlertRules(this.deps.database.db);
      this.rules = new Map(rows.map((r) => [r.tenantId, r.rule as Partial<TenantAlertRule>]));
    } catch (err) {
      this.deps.log.debug({ err: (err as Error).message }, 'alert rules not re-read (Postgres); the last ones read apply');
    }
  }

  private ruleOf(tenantId: string): TenantAlertRule {
    const a = this.deps.config.alerts;
    return effectiveRule({ periodThresholds: a.periodThresholds, saturationForMs: a.saturationForMs, backlogPercent: a.backlogPercent }, this.rules.get(tenantId));
  }

  /** Evaluates once; returns how many alerts opened or resolved. */
  async evaluate(): Promise<number> {
    const { redis, keys, config } = this.deps;
    const now = this.deps.now();
    await this.loadRules();
    const a = config.alerts;
    const margin = a.rearmMarginPercent;
    const downstreams = config.downstreams;
    const minute = now - (now % 60_000);

    const pipe = redis.pipeline();
    for (const d of downstreams) {
      pipe.hgetall(keys.downstreamOf(d.name, 'admissions', minute));
      pipe.hgetall(keys.downstreamOf(d.name, 'admissions', minute - 60_000));
      pipe.hgetall(keys.downstream(d.name, 'waitingCounts'));
      pipe.zrange(keys.downstream(d.name, 'since'), '0', '-1', 'WITHSCORES');
      pipe.get(keys.downstream(d.name, 'adaptiveCapacity'));
    }
    pipe.hgetall(keys.alertsOpen());
    pipe.hgetall(keys.alertsSince());
    pipe.get(keys.quotaDefault());
    const res = await pipelineReplies(pipe);
    const tenants = new Set<string>();
    /** Tenants whose quota state is read: admitted in the last two minutes, or with an alert open or pending. */
    const quotaTenants = new Set<string>();
    const waiting = new Map<string, Record<string, string>>();
    const queued = new Map<string, Array<[string, number]>>();
    const caps = new Map<string, string | null>();
    downstreams.forEach((d, i) => {
      const [cur, prev, wc, since, cap] = res.slice(i * 5, i * 5 + 5) as [Record<string, string>, Record<string, string>, Record<string, string>, string[], string | null];
      for (const t of [...Object.keys(cur), ...Object.keys(prev)]) quotaTenants.add(t);
      for (const t of Object.keys(wc)) tenants.add(t);
      waiting.set(d.name, wc);
      const q: Array<[string, number]> = [];
      for (let j = 0; j < since.length; j += 2) q.push([since[j]!, Number(since[j + 1])]);
      queued.set(d.name, q);
      caps.set(d.name, cap);
    });
    const base = downstreams.length * 5;
    const open = res[base] as Record<string, string>;
    const sinceMap = res[base + 1] as Record<string, string>;
    const defaultQuota = res[base + 2] as string | null;
    const known = new Set([...Object.keys(open), ...Object.keys(sinceMap)]);
    // Thresholds of open period alerts by (tenant, quota, period, window): evaluated against usage like
    // the rule's, so an alert opened under a threshold that an observer's rules no longer list (a rule
    // changed a moment ago, another observer read it first) resolves on its value, not on its absence.
    const openThresholds = new Map<string, Set<number>>();
    for (const k of known) {
      const { kind, tenantId, parts } = subjectOfKey(k);
      if (kind === 'period_usage' && open[k] !== undefined) {
        const id = `${String(parts[1])}|${String(parts[2])}|${String(parts[3])}|${String(parts[5])}`;
        openThresholds.set(id, (openThresholds.get(id) ?? new Set()).add(Number(parts[4])));
      }
      if (tenantId !== undefined) quotaTenants.add(tenantId);
    }
    for (const t of quotaTenants) tenants.add(t);

    // Quota definitions and states of the tenants whose usage can have moved (the default quota's, and
    // their own where the mirror lists them as having some).
    const list = [...quotaTenants];
    const own = list.length > 0 ? ((await redis.smismember(keys.quotaTenants(), ...list)) as number[]) : [];
    const withOwn = list.filter((_, i) => own[i] === 1);
    const defsPipe = redis.pipeline();
    for (const t of withOwn) defsPipe.hgetall(keys.quotaDefs(t));
    const defsRes = withOwn.length > 0 ? ((await pipelineReplies(defsPipe)) as Array<Record<string, string>>) : [];
    const ownDefs = new Map(withOwn.map((t, i) => [t, defsRes[i] ?? {}]));
    const fallback = defaultQuota ? (JSON.parse(defaultQuota) as StoredQuota) : undefined;
    const pairs: Array<{ tenant: string; q: StoredQuota }> = [];
    for (const t of list) {
      for (const raw of Object.values(ownDefs.get(t) ?? {})) pairs.push({ tenant: t, q: JSON.parse(raw) as StoredQuota });
      if (fallback) pairs.push({ tenant: t, q: fallback });
    }
    const statePipe = redis.pipeline();
    for (const p of pairs) statePipe.hmget(keys.quotaState(p.q.id, p.tenant), ...STATE_FIELDS);
    const states = (await pipelineReplies(statePipe)) as Array<Array<string | null>>;

    // Only observations that can change something are kept and go to Redis (the script decides
    // atomically): a cool one of an open alert, a hot one, one of a pending alert. Their payloads are
    // built then, not for every tenant looked at.
    const obs: Array<Observation & { payload: AlertPayload }> = [];
    const seen = new Set<string>();
    const add = (kind: AlertKind, parts: Array<string | number>, c: { hot: boolean; cool: boolean }, sustainMs: number, payload: () => Omit<AlertPayload, 'kind'>) => {
      const key = alertKey(kind, ...parts);
      if (known.has(key)) seen.add(key);
      const due = open[key] !== undefined ? c.cool : c.hot || sinceMap[key] !== undefined;
      if (due) obs.push({ key, ...c, sustainMs, payload: { kind, ...payload() } });
    };
    const muted = { hot: false, cool: true };
    const windows = windowsAt(now);

    pairs.forEach(({ tenant, q }, i) => {
      const v = states[i]!;
      if (v.every((x) => x === null)) return; // this quota never governed a job of the tenant
      const rule = this.ruleOf(tenant);
      for (const p of PERIODS) {
        const at = PERIOD_AT[p];
        const limit = q[at.limit];
        if (!limit || limit <= 0) continue;
        const w = windows[p];
        if (Number(v[at.window]) !== w.start) continue; // nothing used in this window yet
        const used = Number(v[at.used] ?? 0);
        const value = (used / limit) * 100;
        const thresholds = new Set([...rule.periodThresholds, ...(openThresholds.get(`${tenant}|${q.id}|${p}|${w.start}`) ?? [])]);
        for (const T of thresholds) {
          add('period_usage', [tenant, q.id, p, T, w.start], rule.muted ? muted : above(value, T, margin), 0, () => ({
            tenantId: tenant,
            threshold: T,
            value,
            window: { period: p, start: w.start, end: w.end },
            detail: { quotaId: q.id, used, limit },
          }));
        }
      }
      {
        const forMs = rule.saturationForMs;
        const inf = Number(v[1] ?? 0);
        const rate = rateOf({ ...(q.r !== undefined ? { rate: q.r } : {}), ...(q.b !== undefined ? { burst: q.b } : {}) });
        const tokens = rate ? gcraTokens(Number(v[0] ?? 0), now, rate) : undefined;
        const concurrency = q.c !== undefined && inf >= q.c;
        const rateEmpty = tokens !== undefined && tokens < 1;
        if (q.c !== undefined || rate) {
          const hot = forMs !== null && !rule.muted && (concurrency || rateEmpty);
          add('saturation', [tenant, q.id], { hot, cool: !hot }, forMs ?? 0, () => ({
            tenantId: tenant,
            ...(forMs !== null ? { threshold: forMs } : {}),
            value: inf,
            detail: { quotaId: q.id, cause: concurrency ? 'concurrency' : rateEmpty ? 'rate' : 'none', inFlight: inf, ...(q.c !== undefined ? { maxConcurrent: q.c } : {}), ...(tokens !== undefined ? { rateTokens: tokens } : {}) },
          }));
        }
      }
    });

    const maxWaiting = config.tenantLimits.maxWaiting;
    for (const d of downstreams) {
      if (maxWaiting !== undefined) {
        for (const [tenant, n] of Object.entries(waiting.get(d.name) ?? {})) {
          const rule = this.ruleOf(tenant);
          const share = rule.backlogPercent;
          if (share === null) continue;
          const value = (Number(n) / maxWaiting) * 100;
          add('backlog', [d.name, tenant], rule.muted ? muted : above(value, share, margin), 0, () => ({
            tenantId: tenant,
            downstream: d.name,
            threshold: share,
            value,
            detail: { waiting: Number(n), maxWaiting },
          }));
        }
      }
      if (a.starvation) {
        const bound = config.observer.starvationMs;
        for (const [tenant, since] of queued.get(d.name) ?? []) {
          const waited = now - since;
          const hot = isStarving(since, now, bound) && !this.ruleOf(tenant).muted;
          add('starvation', [d.name, tenant], { hot, cool: !hot }, 0, () => ({
            tenantId: tenant,
            downstream: d.name,
            threshold: bound,
            value: waited,
            detail: { servedOrEligibleAt: new Date(since).toISOString() },
          }));
        }
      }
      const cut = a.capacityCutPercent;
      const cap = caps.get(d.name);
      const adaptive = d.adaptive;
      if (cut !== null && adaptive && cap !== null && cap !== undefined) {
        const value = (Number(cap) / adaptive.ceiling) * 100;
        add('capacity_cut', [d.name], below(value, cut, margin), 0, () => ({
          downstream: d.name,
          threshold: cut,
          value,
          detail: { capacity: Number(cap), ceiling: adaptive.ceiling, floor: adaptive.floor },
        }));
      }
    }

    // An open or pending alert nothing observed any more (window reset, quota or rule removed,
    // tenant no longer queued) resolves.
    for (const k of known) {
      const { kind, tenantId, downstream } = subjectOfKey(k);
      if (seen.has(k) || !DETECTED.has(kind)) continue;
      obs.push({
        key: k,
        hot: false,
        cool: true,
        sustainMs: 0,
        payload: { kind, ...(tenantId !== undefined ? { tenantId } : {}), ...(downstream !== undefined ? { downstream } : {}), value: 0, detail: { resolvedBecause: 'no longer observed (window reset, rule or quota changed, or the condition ended)' } },
      });
    }

    let changed = 0;
    for (let i = 0; i < obs.length; i += CHUNK) {
      const args: Array<string | number> = [now, ALERT_STREAM_MAXLEN];
      for (const o of obs.slice(i, i + CHUNK)) args.push(o.key, o.hot ? '1' : '0', o.cool ? '1' : '0', o.sustainMs, JSON.stringify(o.payload));
      const out = await scriptsFor(redis).evaluateAlerts(scriptKeys.evaluateAlerts(keys), args);
      changed += out.length / 3;
    }
    if (changed > 0) this.deps.onEvents?.();
    return changed;
  }
}
