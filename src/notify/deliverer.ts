/**
 * Delivers the notification outbox: claims due rows under a lease, sends each to its target — a
 * webhook signed the Standard Webhooks way (the `standardwebhooks` library), or a job on the BullMQ
 * notifications queue with the event id as job id — and marks it delivered, or due again after an
 * exponential backoff with jitter (a Retry-After honoured), or dead after the last attempt.
 *
 * At least once: a process killed mid-delivery leaves its rows leased; once the lease ends another
 * deliverer (or the same one, restarted) sends them again with the same event id, which receivers
 * deduplicate on.
 */
import { hostname } from 'node:os';
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { Webhook } from 'standardwebhooks';
import type { Config } from '../config/file';
import type { WebhookTarget } from '../contracts/alerts';
import { parseRetryAfter, retryDelay } from '../core/alerts';
import type { Database } from '../db/client';
import { claimDue, markDelivered, markFailed, type NotificationRow } from '../db/alerts';
import type { Metrics } from '../observability/metrics';

export interface DelivererDeps {
  database: Database;
  config: Config;
  /** Connection for the notifications queue. */
  redis: Redis;
  prefix: string;
  log: Logger;
  metrics: Metrics;
}

type Outcome = { ok: true; status: number | null } | { ok: false; status: number | null; error: string; retryAfterMs?: number; permanent?: boolean };

const USER_AGENT = 'tollgate-notifier';

export class Deliverer {
  readonly owner = `${hostname()}:${process.pid}:${Math.random().toString(36).slice(2, 8)}`;
  private readonly webhooks = new Map<string, { target: WebhookTarget; signer: Webhook }>();
  private queue?: Queue;
  private stopped = false;
  private inFlight = new Set<Promise<void>>();
  private wakeUp?: () => void;
  private loop?: Promise<void>;

  constructor(private readonly deps: DelivererDeps) {
    for (const w of deps.config.notifier.webhooks) this.webhooks.set(`webhook:${w.name}`, { target: w, signer: new Webhook(w.secret) });
    const q = deps.config.notifier.queue;
    if (q.enabled) {
      this.queue = new Queue(q.name, { connection: deps.redis, prefix: deps.prefix });
      this.queue.on('error', (err) => deps.log.debug({ err: err.message }, 'notifications queue error'));
    }
  }

  start(): void {
    this.loop = this.run();
  }

  /** Look for due notifications now (one was just queued in this process). */
  wake(): void {
    this.wakeUp?.();
  }

  async close(): Promise<void> {
    this.stopped = true;
    this.wakeUp?.();
    await this.loop;
    // Deliveries under way finish (or time out) before the queue connection goes.
    await Promise.allSettled([...this.inFlight]);
    await this.queue?.close().catch(() => undefined);
  }

  private async run(): Promise<void> {
    const { config, log } = this.deps;
    const n = config.notifier;
    while (!this.stopped) {
      const free = n.concurrency - this.inFlight.size;
      let claimed: NotificationRow[] = [];
      if (free > 0) {
        try {
          claimed = await claimDue(this.deps.database.db, this.owner, free, n.leaseMs);
        } catch (err) {
          log.warn({ err: (err as Error).message }, 'notification outbox not readable (Postgres); retrying');
        }
      }
      for (const row of claimed) {
        const p: Promise<void> = this.deliver(row).finally(() => {
          this.inFlight.delete(p);
          this.wakeUp?.();
        });
        this.inFlight.add(p);
      }
      if (claimed.length === free && free > 0) continue;
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, n.pollMs);
        this.wakeUp = () => {
          clearTimeout(t);
          resolve();
        };
      });
      this.wakeUp = undefined;
    }
  }

  private async send(row: NotificationRow): Promise<Outcome> {
    if (row.target.startsWith('queue:')) {
      if (!this.queue || row.target !== `queue:${this.queue.name}`) {
        return { ok: false, status: null, error: `target ${row.target} is no longer configured`, permanent: true };
      }
      try {
        await this.queue.add(row.type, row.body, { jobId: row.eventId });
        return { ok: true, status: null };
      } catch (err) {
        return { ok: false, status: null, error: `queue add failed: ${(err as Error).message}` };
      }
    }
    const hook = this.webhooks.get(row.target);
    if (!hook) return { ok: false, status: null, error: `target ${row.target} is no longer configured`, permanent: true };
    const body = JSON.stringify(row.body);
    const at = new Date();
    const headers = {
      'content-type': 'application/json',
      'user-agent': USER_AGENT,
      'webhook-id': row.eventId,
      'webhook-timestamp': String(Math.floor(at.getTime() / 1000)),
      'webhook-signature': hook.signer.sign(row.eventId, at, body),
    };
    try {
      const res = await fetch(hook.target.url, { method: 'POST', headers, body, redirect: 'manual', signal: AbortSignal.timeout(hook.target.timeoutMs) });
      // The body is not needed; reading it frees the connection.
      await res.arrayBuffer().catch(() => undefined);
      if (res.status >= 200 && res.status < 300) return { ok: true, status: res.status };
      const retryAfterMs = parseRetryAfter(res.headers.get('retry-after'), Date.now());
      return { ok: false, status: res.status, error: `receiver answered HTTP ${res.status}`, ...(retryAfterMs !== undefined ? { retryAfterMs } : {}) };
    } catch (err) {
      const e = err as Error & { cause?: { code?: string; message?: string } };
      const why = e.name === 'TimeoutError' ? `no answer within ${hook.target.timeoutMs} ms` : (e.cause?.code ?? e.cause?.message ?? e.message);
      return { ok: false, status: null, error: `request failed: ${why}` };
    }
  }

  private async deliver(row: NotificationRow): Promise<void> {
    const { database, config, metrics, log } = this.deps;
    const target = row.target.split(':')[0]!;
    const outcome = await this.send(row);
    try {
      if (outcome.ok) {
        if (await markDelivered(database.db, row.id, this.owner, outcome.status)) {
          metrics.notifications.inc({ target, outcome: 'delivered' });
          metrics.notificationLatency.observe({ target }, (Date.now() - row.createdAt.getTime()) / 1000);
        }
        return;
      }
      const retry = config.notifier.retry;
      const dead = outcome.permanent === true || row.attempts >= retry.maxAttempts;
      const delayMs = dead ? 0 : retryDelay(row.attempts, retry, Math.random, outcome.retryAfterMs);
      if (await markFailed(database.db, row.id, this.owner, { dead, delayMs, error: outcome.error, status: outcome.status })) {
        metrics.notifications.inc({ target, outcome: dead ? 'dead' : 'retried' });
        const fields = { notification: row.id, eventId: row.eventId, target: row.target, attempts: row.attempts, error: outcome.error };
        if (dead) log.error(fields, 'notification dead: no more attempts (GET /api/v1/notifications?state=dead)');
        else log.warn({ ...fields, retryInMs: delayMs }, 'notification delivery failed; retrying');
      }
    } catch (err) {
      // The row stays leased; once the lease ends it is tried again.
      log.warn({ err: (err as Error).message, notification: row.id }, 'could not record a delivery outcome (Postgres); the notification will be tried again');
    }
  }
}
