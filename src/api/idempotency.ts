/**
 * `Idempotency-Key` on creating POSTs (draft-ietf-httpapi-idempotency-key-header): a retry with the
 * same key and body within 24 hours answers what the first request answered (same status, body and
 * ETag, plus `Idempotent-Replayed: true`) and creates nothing; the same key with another body is a
 * 422. The key is claimed and its answer recorded in the creation's own transaction (src/db/idempotency.ts),
 * so replicas agree and two requests with one key at once create one thing.
 */
import { createHash } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { claimKey, completeKey, IDEMPOTENCY_TTL_HOURS, pruneKeys, type IdempotencyScope } from '../db/idempotency';
import { TollgateError } from '../errors';
import type { CreationHooks } from '../governance/definitions';
import type { ApiContext } from './context';
import { canonicalJson } from './etag';

export interface Answer {
  status: number;
  body: unknown;
  headers: Record<string, string>;
}

/** An answer as sent: its body serialized once, so the first answer and a replay are the same bytes. */
interface Sent {
  status: number;
  json: string;
  headers: Record<string, string>;
}

/** Visible ASCII, 1-255 characters; a quoted structured-header string is accepted too. */
const KEY = /^[\x21-\x7e]{1,255}$/;

export const IDEMPOTENCY_KEY_HEADER = {
  'Idempotency-Key': z
    .string()
    .optional()
    .describe(
      `Makes the POST safe to retry: the same key and body within ${IDEMPOTENCY_TTL_HOURS} hours answer the first result (with \`Idempotent-Replayed: true\`) and create nothing; the same key with another body is 422 TG_ERR_IDEMPOTENCY_KEY_REUSED. 1-255 visible ASCII characters, unique per request (a UUID)`,
    ),
};

export function idempotencyKeyOf(req: FastifyRequest): string | undefined {
  const raw = req.headers['idempotency-key'];
  if (raw === undefined) return undefined;
  const text = typeof raw === 'string' ? raw.trim().replace(/^"(.*)"$/, '$1') : undefined;
  if (text === undefined || !KEY.test(text)) {
    const message = typeof raw === 'string' ? `must be 1-255 visible ASCII characters (got ${raw.length} characters)` : 'must be sent once';
    throw new TollgateError('TG_ERR_VALIDATION', `invalid headers: headers.idempotency-key: ${message}`, [{ field: 'headers.idempotency-key', message }]);
  }
  return text;
}

/** Carries the earlier answer out of the creation's transaction (and rolls it back: nothing written). */
class Replay {
  constructor(readonly answer: Sent) {}
}

const serialized = (a: Answer): Sent => ({ status: a.status, json: JSON.stringify(a.body), headers: a.headers });

function send(reply: FastifyReply, a: Sent, replayed: boolean): FastifyReply {
  for (const [name, value] of Object.entries(a.headers)) reply.header(name, value);
  if (replayed) reply.header('idempotent-replayed', 'true');
  return reply.status(a.status).type('application/json; charset=utf-8').send(a.json);
}

/**
 * Creates through `create` and answers with `answer(created)`, honouring the request's
 * Idempotency-Key if it has one. `endpoint` names the route the key belongs to; the request body
 * (as parsed) is what must be the same on a retry.
 */
export async function idempotentCreate<R>(
  ctx: Pick<ApiContext, 'database' | 'log'>,
  req: FastifyRequest,
  reply: FastifyReply,
  request: { principal: string; endpoint: string; body: unknown },
  create: (hooks: CreationHooks<R> | undefined) => Promise<R>,
  answer: (created: R) => Answer,
): Promise<FastifyReply> {
  const key = idempotencyKeyOf(req);
  if (key === undefined) return send(reply, serialized(answer(await create(undefined))), false);
  const scope: IdempotencyScope = { principal: request.principal, endpoint: request.endpoint, key };
  const requestHash = createHash('sha256').update(canonicalJson(request.body)).digest('hex');
  let first: Sent | undefined;
  try {
    await create({
      async begin(tx) {
        const claim = await claimKey(tx, scope, requestHash);
        if (claim.kind === 'replay') throw new Replay({ status: claim.status, json: claim.response, headers: claim.headers });
        if (claim.kind === 'reused') {
          throw new TollgateError(
            'TG_ERR_IDEMPOTENCY_KEY_REUSED',
            `Idempotency-Key ${JSON.stringify(key)} was used at ${claim.createdAt.toISOString()} for ${request.endpoint} with another body; nothing was created (a new request needs a new key)`,
          );
        }
      },
      async created(tx, row) {
        first = serialized(answer(row));
        await completeKey(tx, scope, first.status, first.json, first.headers);
      },
    });
  } catch (err) {
    if (err instanceof Replay) return send(reply, err.answer, true);
    throw err;
  }
  // Expired keys go a few at a time, by the requests that add keys.
  pruneKeys(ctx.database.db).catch((err: Error) => ctx.log.warn({ err: err.message }, 'could not prune expired idempotency keys; the next keyed request tries again'));
  return send(reply, first!, false);
}
