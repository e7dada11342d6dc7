/**
 * The dead-letter queue for operators: counts by reason (governance's counters, every downstream), a
 * paged list filtered by reason and tenant with each job's original name and data, and re-drive: the
 * original job goes back through ingress (so every rule applies to it again), once.
 *
 * Re-drive is idempotent: the ingress job id derives from the dead-letter job (or is the producer's own
 * custom id), a marker remembers what a dead-letter job became for `retention.decisionSeconds`, and
 * the dead-letter job is removed only after the add. A second call answers with the first one's job.
 * A dead-letter job that keeps only an excerpt of its data or a truncated name (src/queues/dead-letter.ts)
 * is not re-driven (TG_ERR_NOT_REDRIVABLE): its original job is gone, and a replay would be another job.
 */
import type { JobsOptions } from 'bullmq';
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { z } from 'zod';
import { insertAudit } from '../../db/quotas';
import { TollgateError } from '../../errors';
import { isWhole, type DeadLetterData } from '../../queues/dead-letter';
import { requireGlobalReader } from '../auth';
import type { ApiContext } from '../context';
import { operatorOf } from '../operator';
import { decodeCursor, invalidCursor, PageQuery } from '../pagination';
import { defineRoute, ErrorBody, type RouteDef } from '../route';

/** Dead-letter jobs looked at per list call, at most: a filter over a huge queue answers in bounded time. */
const MAX_SCANNED = 20_000;
const CHUNK = 1000;

/**
 * A list page's cursor names the last dead-letter job the page looked at (and its time): the next page
 * starts right after that job, wherever new dead letters pushed it, and says nothing of how many other
 * jobs (other tenants') lie before it. If the job left the queue meanwhile (re-driven, trimmed), the
 * next page resumes at the first job not newer than it (a job of the same millisecond may show twice,
 * none is skipped). Cursors of the earlier `{after: offset}` form are still read.
 *
 * A tenant token's cursors are sealed (AES-256-GCM, `s.` prefix): the job a page ended on may be
 * another tenant's, and BullMQ's job ids count every job. The key derives from the digests of the
 * configured API tokens, so every replica with the same TOLLGATE_API_TOKENS reads the others' cursors.
 */
type DeadLetterCursor = { job: string; ts: number } | { after: number };

function cursorKey(tokens: ReadonlyArray<{ digest: Buffer }>): Buffer {
  const h = createHash('sha256').update('tollgate dead-letter cursor v1');
  for (const t of tokens) h.update(t.digest);
  return h.digest();
}

function encodeDeadLetterCursor(job: { id?: string; timestamp: number }, sealWith?: Buffer): string {
  const plain = Buffer.from(JSON.stringify({ job: job.id, ts: job.timestamp }));
  if (!sealWith) return plain.toString('base64url');
  const iv = randomBytes(12);
  const c = createCipheriv('aes-256-gcm', sealWith, iv);
  const body = Buffer.concat([c.update(plain), c.final()]);
  return `s.${Buffer.concat([iv, c.getAuthTag(), body]).toString('base64url')}`;
}

function unseal(cursor: string, key: Buffer): string | undefined {
  try {
    const raw = Buffer.from(cursor.slice(2), 'base64url');
    const d = createDecipheriv('aes-256-gcm', key, raw.subarray(0, 12));
    d.setAuthTag(raw.subarray(12, 28));
    return Buffer.concat([d.update(raw.subarray(28)), d.final()]).toString('utf8');
  } catch {
    return undefined;
  }
}

function decodeDeadLetterCursor(cursor: string | undefined, key: Buffer): DeadLetterCursor | undefined {
  if (cursor === undefined) return undefined;
  try {
    const text = cursor.startsWith('s.') ? unseal(cursor, key) : Buffer.from(cursor, 'base64url').toString('utf8');
    const v = JSON.parse(text ?? 'null') as { job?: unknown; ts?: unknown };
    if (typeof v.job === 'string' && v.job.length > 0 && v.job.length <= 200 && typeof v.ts === 'number' && Number.isSafeInteger(v.ts) && v.ts >= 0) return { job: v.job, ts: v.ts };
  } catch {
    /* not this form: a sealed cursor that does not open is refused, a plain one may be the older form */
  }
  if (cursor.startsWith('s.')) throw invalidCursor();
  return { after: decodeCursor(cursor)! };
}

/** Options of the original job that do not carry over to its re-drive. */
const DROPPED_OPTS = ['jobId', 'repeat', 'repeatJobKey', 'delay', 'timestamp', 'prevMillis', 'parent', 'telemetry'] as const;

const DeadLetterItem = z
  .object({
    id: z.string().describe('The dead-letter job id'),
    reason: z.string(),
    code: z.string(),
    message: z.string(),
    ingressJobId: z.string(),
    tenantId: z.string().optional(),
    downstream: z.string().optional(),
    rejectedAt: z.string(),
    job: z.object({
      name: z.string(),
      data: z.unknown().describe('The original data; null when it was over limits.maxPayloadBytes (see dataExcerpt)'),
      opts: z.record(z.string(), z.unknown()),
      dataExcerpt: z
        .object({ excerpt: z.string(), bytes: z.number(), sha256: z.string() })
        .optional()
        .describe("Data over limits.maxPayloadBytes: the first limits.deadLetterExcerptBytes bytes of its JSON, its size in bytes and its SHA-256 (hex); the job cannot be re-driven"),
      nameTruncated: z
        .object({ length: z.number(), sha256: z.string() })
        .optional()
        .describe('A name over limits.maxJobNameLength: `name` is its first characters; its length and SHA-256 (hex); the job cannot be re-driven'),
    }),
  })
  .meta({ id: 'DeadLetterItem' });

const ListQuery = z.strictObject({
  reason: z.string().max(64).optional(),
  tenantId: z.string().max(128).optional(),
  ...PageQuery,
});

export function deadLetterRoutes(ctx: ApiContext): RouteDef[] {
  const dlq = () => ctx.topology.deadLetter;
  const sealKey = cursorKey(ctx.tokens);
  const markerKey = (id: string) => dlq().toKey(`tg-redriven:${id}`);
  const retentionMs = ctx.config.retention.decisionSeconds * 1000;
  return [
    defineRoute({
      method: 'GET',
      url: '/api/v1/dead-letter/summary',
      summary: 'Dead-lettered jobs so far, by reason and downstream (governance counters), and how many are in the queue now',
      tag: 'dead-letter',
      access: 'read',
      responses: {
        200: {
          description: 'Counts',
          schema: z.object({ inQueue: z.number(), byReason: z.record(z.string(), z.number()), byDownstream: z.record(z.string(), z.record(z.string(), z.number())) }).meta({ id: 'DeadLetterSummary' }),
        },
      },
      handler: async ({ auth }) => {
        requireGlobalReader(auth);
        const byReason: Record<string, number> = {};
        const byDownstream: Record<string, Record<string, number>> = {};
        for (const d of [...ctx.config.downstreams.map((x) => x.name), undefined]) {
          const stats = await ctx.governance.reads.stats(d);
          for (const [k, n] of Object.entries(stats)) {
            if (!k.startsWith('dead:') || !n) continue;
            const reason = k.slice(5);
            byReason[reason] = (byReason[reason] ?? 0) + n;
            const label = d ?? 'unrouted';
            (byDownstream[label] ??= {})[reason] = n;
          }
        }
        return { inQueue: await dlq().getWaitingCount(), byReason, byDownstream };
      },
    }),
    defineRoute({
      method: 'GET',
      url: '/api/v1/dead-letter',
      summary: 'Dead-lettered jobs, newest first, filtered by reason and tenant (each with its original name, data and options); paginated',
      tag: 'dead-letter',
      access: 'read',
      query: ListQuery,
      responses: {
        200: {
          description: 'A page of dead-lettered jobs',
          schema: z.object({ items: z.array(DeadLetterItem), nextCursor: z.string().optional(), scanned: z.number().optional().describe('Jobs looked at for this page (every tenant\'s; not shown to a tenant token)') }).meta({ id: 'DeadLetterList' }),
        },
      },
      handler: async ({ query, auth }) => {
        const tenantId = auth.tenantId ?? query.tenantId;
        if (auth.tenantId !== undefined && query.tenantId !== undefined && query.tenantId !== auth.tenantId) return { items: [] };
        const items: Array<z.infer<typeof DeadLetterItem>> = [];
        const cursor = decodeDeadLetterCursor(query.cursor, sealKey);
        let offset = 0;
        /** Resuming by time: jobs newer than this were on earlier pages. */
        let newerThan: number | undefined;
        if (cursor && 'after' in cursor) offset = cursor.after;
        else if (cursor) {
          const pos = await ctx.topology.connection.lpos(dlq().keys.wait!, cursor.job);
          if (pos !== null) offset = pos + 1;
          else newerThan = cursor.ts;
        }
        let scanned = 0;
        let exhausted = false;
        let last: { id?: string; timestamp: number } | undefined;
        while (items.length < query.limit && scanned < MAX_SCANNED) {
          const jobs = await dlq().getJobs(['waiting'], offset, offset + CHUNK - 1, false);
          if (jobs.length === 0) {
            exhausted = true;
            break;
          }
          let used = 0;
          for (const j of jobs) {
            used++;
            scanned++;
            last = j;
            if (newerThan !== undefined && j.timestamp > newerThan) continue;
            const d = j.data as DeadLetterData;
            if (query.reason !== undefined && d.reason !== query.reason) continue;
            if (tenantId !== undefined && d.tenantId !== tenantId) continue;
            items.push({ id: j.id!, ...d });
            if (items.length === query.limit) break;
          }
          offset += used;
          if (jobs.length < CHUNK && used === jobs.length) {
            exhausted = true;
            break;
          }
        }
        // How many jobs were looked at counts every tenant's: a tenant token does not see it.
        return { items, ...(auth.tenantId === undefined ? { scanned } : {}), ...(exhausted || !last ? {} : { nextCursor: encodeDeadLetterCursor(last, auth.tenantId !== undefined ? sealKey : undefined) }) };
      },
    }),
    defineRoute({
      method: 'POST',
      url: '/api/v1/dead-letter/:id/redrive',
      summary: 'Re-drive a dead-lettered job: its original name, data and options go back through ingress (every rule applies again); idempotent (admin, audited)',
      tag: 'dead-letter',
      access: 'admin',
      postgres: true,
      params: z.strictObject({ id: z.string().min(1).max(600) }),
      responses: {
        200: {
          description: 'The ingress job it became',
          schema: z.object({ ingressJobId: z.string(), redriven: z.boolean().describe('False when an earlier call re-drove it already') }).meta({ id: 'Redrive' }),
        },
        404: { description: 'No such dead-letter job', schema: ErrorBody },
        422: { description: 'The dead-letter job keeps only an excerpt of its data or a truncated name (TG_ERR_NOT_REDRIVABLE)', schema: ErrorBody },
      },
      handler: async ({ params, auth, req }) => {
        const op = operatorOf(req, auth);
        const earlier = await ctx.redis.get(markerKey(params.id));
        if (earlier) return { ingressJobId: earlier, redriven: false };
        const job = await dlq().getJob(params.id);
        if (!job) throw new TollgateError('TG_ERR_NOT_FOUND', `no dead-letter job ${params.id}`);
        const d = job.data as DeadLetterData;
        if (!isWhole(d.job)) {
          const what = d.job.dataExcerpt
            ? `its data was ${d.job.dataExcerpt.bytes} bytes, over limits.maxPayloadBytes: only an excerpt, its size and SHA-256 ${d.job.dataExcerpt.sha256} are kept`
            : `its name was ${d.job.nameTruncated!.length} characters, over limits.maxJobNameLength: only its first characters are kept`;
          throw new TollgateError('TG_ERR_NOT_REDRIVABLE', `dead-letter job ${params.id} cannot be re-driven: ${what}; the producer must send the job again`, {
            ...(d.job.dataExcerpt ? { bytes: d.job.dataExcerpt.bytes, sha256: d.job.dataExcerpt.sha256 } : {}),
            ...(d.job.nameTruncated ? { nameLength: d.job.nameTruncated.length, nameSha256: d.job.nameTruncated.sha256 } : {}),
          });
        }
        const opts: Record<string, unknown> = { ...d.job.opts };
        for (const k of DROPPED_OPTS) delete opts[k];
        // The producer's custom id, if it had one, so the job keeps its identity; else one derived from
        // this dead-letter job, so that a repeated re-drive is the same ingress job.
        const custom = d.job.opts.jobId;
        const jobId = typeof custom === 'string' && !/^\d+$/.test(custom) ? custom : `redrive-${params.id}`;
        const added = await ctx.topology.ingress.add(d.job.name, d.job.data, { ...(opts as JobsOptions), jobId });
        await ctx.redis.set(markerKey(params.id), added.id!, 'PX', retentionMs);
        // By id, not job.remove(): the job may be gone by now (the queue trims its oldest, limits.deadLetterMaxJobs).
        await dlq().remove(params.id);
        await insertAudit(ctx.database.db, {
          actor: op.actor,
          action: 'dead-letter.redrive',
          resourceType: 'dead-letter',
          resourceId: params.id,
          tenantId: d.tenantId ?? null,
          before: { reason: d.reason, code: d.code, ingressJobId: d.ingressJobId },
          after: { ingressJobId: added.id },
          reason: op.reason,
          ticket: op.ticket ?? null,
        });
        return { ingressJobId: added.id!, redriven: true };
      },
    }),
  ];
}
