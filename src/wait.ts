/**
 * The producer's counterpart of BullMQ's `waitUntilFinished`, across the gate: waits for what became of
 * an ingress job, and settles the way the producer would expect of a plain queue.
 *
 *   import { waitForExecution } from 'tollgate/client';   // no server dependencies (src/client.ts)
 *   const job = await ingress.add('scan.image', { tenantId: 'acme' });
 *   const result = await waitForExecution(job, { timeoutMs: 60_000 });
 *
 * Resolves with the execution job's return value. Rejects with a TollgateError: the dead-letter code
 * (`TG_ERR_QUOTA_EXCEEDED`, `TG_ERR_EXPIRED`, ...; `details.reason` is the dead-letter reason) if the
 * gate or the waiting place refused it, `TG_ERR_EXECUTION_FAILED` with the worker's failure once its
 * attempts are spent, `TG_ERR_EXECUTION_VANISHED` if its execution job was removed before it ended,
 * `TG_ERR_WAIT_TIMEOUT` after `timeoutMs`.
 *
 * It reads governance's decision record for the job (the same one `GET /api/v1/jobs/:id` shows), every
 * `pollMs`, then the execution job. An execution job removed on completion (`removeOnComplete`) leaves
 * its return value in its queue's event stream, where it is looked up. So a late call works for as long
 * as the record is kept (`retention.decisionSeconds`) and the event is in the stream
 * (`observer.eventsMaxLen` events per execution queue).
 */
import { fieldsOf } from './core/fields';
import type { Job, Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { isRejectionCode, TollgateError } from './errors';
import { execJobId, jobKey, Keys } from './redis/keys';

export interface WaitForExecutionOptions {
  /** Reject with `TG_ERR_WAIT_TIMEOUT` after this long (ms). Default: wait as long as it takes. */
  timeoutMs?: number;
  /** How often the decision record is read (ms). Default 50. */
  pollMs?: number;
  /** Waiting by id: the ingress queue the job was added to (its connection and prefix are used). */
  queue?: Queue;
  /** The ioredis connection to read with; default: the job's (or queue's) own. */
  connection?: Redis;
}

interface Target {
  redis: Redis;
  prefix: string;
  id: string;
  /** The job's creation time, when known: picks the instance of a reused custom id. */
  stamp?: string;
}

const MAX_POLL_MS = 10_000;
/** Events read per step when looking for a finished job's event in its queue's stream. */
const EVENTS_PAGE = 1000;

/** The ioredis client behind a BullMQ queue or job (BullMQ 6.7 keeps it on its Redis backend). */
async function clientOf(holder: unknown): Promise<Redis | undefined> {
  const h = holder as { backend?: { client?: Promise<unknown> }; queue?: { backend?: { client?: Promise<unknown> } } } | undefined;
  const pending = h?.backend?.client ?? h?.queue?.backend?.client;
  const client = pending ? await pending : undefined;
  return client && typeof (client as Redis).hmget === 'function' && typeof (client as Redis).xrevrange === 'function' ? (client as Redis) : undefined;
}

async function targetOf(jobOrId: Job | string, opts: WaitForExecutionOptions): Promise<Target> {
  if (typeof jobOrId === 'string') {
    if (!opts.queue) throw new TypeError('waitForExecution(id) needs { queue }: the ingress queue the job was added to');
    const redis = opts.connection ?? (await clientOf(opts.queue));
    if (!redis) throw new TypeError('waitForExecution: the queue has no ioredis connection; pass { connection }');
    return { redis, prefix: opts.queue.opts.prefix ?? 'bull', id: jobOrId };
  }
  if (!jobOrId.id) throw new TypeError('waitForExecution: the job has no id (was it added?)');
  const redis = opts.connection ?? (await clientOf(jobOrId));
  if (!redis) throw new TypeError('waitForExecution: the job carries no ioredis connection; pass the job returned by add, or { connection }');
  return { redis, prefix: jobOrId.prefix, id: jobOrId.id, stamp: String(jobOrId.timestamp) };
}

/**
 * The job key and record of the instance (src/redis/keys.ts, jobKey): with the job's stamp, the record
 * under the ingress id if it is that job's, else the one under the id and stamp; by id alone, the
 * latest instance.
 */
async function findRecord(t: Target, keys: Keys): Promise<{ key: string; rec: Record<string, string> } | undefined> {
  const base = jobKey(t.id);
  const candidates = t.stamp === undefined ? [base, ...new Set(await t.redis.hvals(keys.instances(base)))] : [base, jobKey(t.id, t.stamp)];
  const recs = await Promise.all(candidates.map((k) => t.redis.hgetall(keys.record(k))));
  const found = candidates.map((key, i) => ({ key, rec: recs[i]! })).filter((r) => Object.keys(r.rec).length > 0);
  if (t.stamp !== undefined) return found.find((r) => r.key !== base || r.rec.ts === undefined || r.rec.ts === t.stamp);
  return found.reduce<(typeof found)[number] | undefined>((best, r) => (!best || Number(r.rec.ts ?? 0) >= Number(best.rec.ts ?? 0) ? r : best), undefined);
}

/** The finished job's event (completed or failed) in its queue's stream, newest first. */
async function findEvent(redis: Redis, streamKey: string, jobId: string): Promise<Record<string, string> | undefined> {
  let end = '+';
  for (;;) {
    const page = (await redis.xrevrange(streamKey, end, '-', 'COUNT', EVENTS_PAGE)) as Array<[string, string[]]>;
    for (const [, fields] of page) {
      const ev = fieldsOf(fields);
      if (ev.jobId === jobId && (ev.event === 'completed' || ev.event === 'failed')) return ev;
    }
    if (page.length < EVENTS_PAGE) return undefined;
    end = `(${page[page.length - 1]![0]}`;
  }
}

const parse = (raw: string | null | undefined): unknown => {
  if (raw === null || raw === undefined) return null;
  try {
    return JSON.parse(raw);
  } catch {
    return raw;
  }
};

export async function waitForExecution(jobOrId: Job | string, opts: WaitForExecutionOptions = {}): Promise<unknown> {
  const t = await targetOf(jobOrId, opts);
  const pollMs = Math.min(Math.max(opts.pollMs ?? 50, 1), MAX_POLL_MS);
  const deadline = opts.timeoutMs === undefined ? Infinity : Date.now() + opts.timeoutMs;
  const keys = new Keys(t.prefix);
  for (;;) {
    const found = await findRecord(t, keys);
    if (found) {
      const { key, rec } = found;
      if (rec.st === 'dead') {
        const code = rec.code && isRejectionCode(rec.code) ? rec.code : 'TG_ERR_QUOTA_EXCEEDED';
        throw new TollgateError(code, rec.msg ?? 'dead-lettered', { reason: rec.reason, ingressJobId: t.id, key, downstream: rec.ds });
      }
      const queueName = rec.st === 'waiting' || rec.st === 'shed' || !rec.ds ? undefined : (rec.q ?? (await t.redis.hget(keys.execQueues(), rec.ds)) ?? `exec.${rec.ds}`);
      if (queueName) {
        rec.q = queueName;
        const execId = execJobId(key);
        const jobHash = `${t.prefix}:${rec.q}:${execId}`;
        const [finishedOn, returnvalue, failedReason, attemptsMade] = await t.redis.hmget(jobHash, 'finishedOn', 'returnvalue', 'failedReason', 'atm');
        const state = finishedOn ? ((await t.redis.zscore(`${t.prefix}:${rec.q}:completed`, execId)) !== null ? 'completed' : 'failed') : undefined;
        if (state === 'completed') return parse(returnvalue);
        if (state === 'failed') {
          throw new TollgateError('TG_ERR_EXECUTION_FAILED', failedReason ?? 'failed', { ingressJobId: t.id, key, queue: rec.q, jobId: execId, attemptsMade: Number(attemptsMade ?? 0) });
        }
        // Ended and removed (removeOnComplete / removeOnFail): its event tells how.
        if (rec.st === 'completed' || rec.st === 'failed' || rec.st === 'vanished') {
          const ev = rec.st === 'vanished' ? undefined : await findEvent(t.redis, `${t.prefix}:${rec.q}:events`, execId);
          if (ev?.event === 'completed') return parse(ev.returnvalue);
          if (ev?.event === 'failed') throw new TollgateError('TG_ERR_EXECUTION_FAILED', ev.failedReason ?? 'failed', { ingressJobId: t.id, key, queue: rec.q, jobId: execId });
          throw new TollgateError('TG_ERR_EXECUTION_VANISHED', `execution job ${execId} of ${rec.q} ended (${rec.st}) and was removed; its result is no longer in the queue's event stream`, {
            ingressJobId: t.id,
            key,
            queue: rec.q,
            jobId: execId,
          });
        }
      }
    }
    const left = deadline - Date.now();
    if (left <= 0) {
      throw new TollgateError('TG_ERR_WAIT_TIMEOUT', `ingress job ${t.id} had not finished after ${opts.timeoutMs} ms (${found ? `it is ${found.rec.st}` : 'not decided yet'})`, {
        ingressJobId: t.id,
        state: found?.rec.st ?? 'ingress',
      });
    }
    await new Promise((r) => setTimeout(r, Math.min(pollMs, left)));
  }
}
