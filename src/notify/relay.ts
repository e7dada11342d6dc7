/**
 * The alert relay: writes the alert event stream (Redis, appended by evaluateAlerts-3.lua) into
 * Postgres — the alert rows and one notification per target — in stream order, once. The position
 * reached is a Postgres row locked for the duration of each batch, so relays in several observers
 * take turns and a batch's events and its new position commit together. While Postgres is away the
 * events wait in the stream.
 */
import { fieldsOf } from '../core/fields';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { AlertKind } from '../core/alerts';
import type { Database } from '../db/client';
import { advanceRelayCursor, openAlertKeys, pruneAlerts, recordAlertEvent, relayCursor, type AlertEventInput, type Target } from '../db/alerts';
import type { Metrics } from '../observability/metrics';
import type { Keys } from '../redis/keys';
import type { AlertPayload } from './detector';

export interface RelayDeps {
  redis: Redis;
  keys: Keys;
  database: Database;
  targets: readonly Target[];
  log: Logger;
  metrics: Metrics;
  /** Called after a batch that queued notifications (the local deliverer looks at once). */
  onQueued?: () => void;
  intervalMs?: number;
  /** Delivered notifications and resolved alerts older than this are deleted (once an hour). */
  retentionDays?: number;
}

type StreamEntry = [id: string, fields: string[]];

export function eventFromEntry(id: string, fields: readonly string[]): AlertEventInput {
  const f = fieldsOf(fields);
  const p = JSON.parse(f.p ?? '{}') as AlertPayload;
  return {
    eventId: `evt_${id}`,
    sourceEvent: `redis:${id}`,
    type: f.t === 'resolved' ? 'resolved' : 'opened',
    key: f.k ?? '',
    kind: p.kind as AlertKind,
    ...(p.tenantId !== undefined ? { tenantId: p.tenantId } : {}),
    ...(p.downstream !== undefined ? { downstream: p.downstream } : {}),
    ...(p.threshold !== undefined ? { threshold: p.threshold } : {}),
    value: p.value,
    ...(p.window ? { window: p.window } : {}),
    detail: p.detail ?? {},
    at: Number(f.at),
  };
}

export class AlertRelay {
  private timer?: NodeJS.Timeout;
  private running?: Promise<number>;
  private again = false;
  private prunedAt = 0;

  constructor(private readonly deps: RelayDeps) {}

  start(): void {
    this.timer = setInterval(() => void this.tick(), this.deps.intervalMs ?? 500);
    this.timer.unref();
  }

  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.running?.catch(() => undefined);
  }

  /** Relays what is there now; a call while one runs makes it go round once more. Never throws. */
  tick(): Promise<number> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = (async () => {
      let total = 0;
      // Neither may keep the relay from relaying.
      await this.seedLostState().catch((err: Error) => this.deps.log.warn({ err: err.message }, 'could not re-seed alert state into Redis; retrying'));
      await this.prune().catch((err: Error) => this.deps.log.warn({ err: err.message }, 'could not delete old alerts; retrying in an hour'));
      do {
        this.again = false;
        for (;;) {
          const n = await this.relayBatch();
          total += n;
          if (n < 200) break;
        }
      } while (this.again);
      return total;
    })()
      .catch((err: Error) => {
        this.deps.log.warn({ err: err.message }, 'alert relay to Postgres failed; the events wait in Redis, retrying');
        return 0;
      })
      .finally(() => {
        this.running = undefined;
      });
    return this.running;
  }

  /**
   * A Redis that lost its alert state (a flush, a new server) would never resolve the alerts Postgres
   * has open: their keys go back into the open set, so the detector resolves each once its condition
   * has ended. Breaker alerts are left out (the breaker's own transitions resolve them).
   */
  private async seedLostState(): Promise<void> {
    const { redis, keys, database, log } = this.deps;
    if ((await redis.exists(keys.alertsSeeded())) === 1) return;
    const open = await openAlertKeys(database.db, ['period_usage', 'saturation', 'backlog', 'starvation', 'capacity_cut']);
    const pipe = redis.pipeline();
    for (const o of open) pipe.hsetnx(keys.alertsOpen(), o.alertKey, o.sourceEvent.replace(/^redis:/, ''));
    pipe.set(keys.alertsSeeded(), '1');
    await pipe.exec();
    if (open.length > 0) log.warn({ alerts: open.length }, 'alert state was missing in Redis: open alerts re-seeded from Postgres');
  }

  private async prune(): Promise<void> {
    const days = this.deps.retentionDays;
    if (days === undefined || Date.now() - this.prunedAt < 3_600_000) return;
    this.prunedAt = Date.now();
    const n = await pruneAlerts(this.deps.database.db, days);
    if (n > 0) this.deps.log.info({ deleted: n, olderThanDays: days }, 'old alerts and delivered notifications deleted');
  }

  /** One batch of up to 200 events; 0 when there is nothing new or another relay holds the turn. */
  async relayBatch(): Promise<number> {
    const { redis, keys, database, targets, metrics } = this.deps;
    const recorded: Array<{ kind: string; type: string; notifications: number }> = [];
    let last: string | undefined;
    const n = await database.db.transaction(async (tx) => {
      const cursor = await relayCursor(tx);
      if (cursor === '') return 0;
      const entries = (await redis.xrange(keys.alertEvents(), `(${cursor}`, '+', 'COUNT', 200)) as StreamEntry[];
      for (const [id, fields] of entries) {
        const r = await recordAlertEvent(tx, eventFromEntry(id, fields), targets);
        if (r) recorded.push({ kind: r.alert.kind, type: r.type, notifications: r.notifications });
      }
      if (entries.length > 0) {
        last = entries[entries.length - 1]![0];
        await advanceRelayCursor(tx, last);
      }
      return entries.length;
    });
    for (const r of recorded) metrics.alertEvents.inc({ kind: r.kind, event: r.type });
    if (last !== undefined) {
      // Written to Postgres: the stream keeps only what comes after.
      await redis.xtrim(keys.alertEvents(), 'MINID', last).catch(() => undefined);
      if (recorded.length > 0) this.deps.log.info({ events: recorded.map((r) => `${r.type} ${r.kind}`) }, 'alert events recorded');
    }
    if (recorded.some((r) => r.notifications > 0)) this.deps.onQueued?.();
    return n;
  }
}
