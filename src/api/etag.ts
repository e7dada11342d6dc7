/**
 * Optimistic concurrency over HTTP (RFC 9110 §8.8.3, §13.1.1): strong `ETag`s computed from what a
 * resource stores (a hash of its canonical JSON, so every replica derives the same tag from the same
 * rows, with no version column), and `If-Match` turned into a precondition the change checks under
 * its lock, in its own transaction, so a stale tag can never slip past a concurrent change.
 */
import { createHash } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { TollgateError } from '../errors';

/** JSON with object keys sorted, so equal values hash equally whatever their key order. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) =>
    v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Date)
      ? Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0)))
      : v,
  );
}

/** A strong entity tag (quoted) of a value: 128 bits of its SHA-256, base64url. */
export function etagOf(value: unknown): string {
  return `"${createHash('sha256').update(canonicalJson(value)).digest('base64url').slice(0, 22)}"`;
}

/** `*`, or the entity tags listed (weak ones kept with their `W/`, so they never match). */
export type IfMatch = '*' | string[];

const ENTITY_TAG = /^(W\/)?"[\x21\x23-\x7e\x80-\xff]*"$/;

export function ifMatchOf(req: FastifyRequest): IfMatch | undefined {
  const raw = req.headers['if-match'];
  if (raw === undefined) return undefined;
  const text = (Array.isArray(raw) ? raw.join(',') : raw).trim();
  if (text === '*') return '*';
  const tags = text.split(',').map((t) => t.trim()).filter((t) => t.length > 0);
  if (tags.length === 0 || !tags.every((t) => ENTITY_TAG.test(t))) {
    const message = `expected * or quoted entity tags like "abc" (as an ETag header gave them), got ${JSON.stringify(text.slice(0, 200))}`;
    throw new TollgateError('TG_ERR_VALIDATION', `invalid headers: headers.if-match: ${message}`, [{ field: 'headers.if-match', message }]);
  }
  return tags;
}

/** Strong comparison: a weak tag matches nothing; `*` matches any current representation. */
export function matches(ifMatch: IfMatch, current: string): boolean {
  return ifMatch === '*' || ifMatch.includes(current);
}

/**
 * The precondition of a change as a check on the resource's current state (read under the change's
 * lock): undefined without `If-Match` (unconditional). `what` names the resource in the message.
 */
export function preconditionOf<T>(req: FastifyRequest, what: string, tagOf: (current: T) => string): ((current: T) => void) | undefined {
  const ifMatch = ifMatchOf(req);
  if (ifMatch === undefined) return undefined;
  return (current) => {
    const tag = tagOf(current);
    if (!matches(ifMatch, tag)) {
      throw new TollgateError(
        'TG_ERR_PRECONDITION_FAILED',
        `If-Match ${(ifMatch as string[]).join(', ')} is not the current ETag of ${what}: it changed since it was read; nothing was changed (GET it again and retry)`,
      );
    }
  };
}

export function withETag<T>(reply: FastifyReply, tag: string, body: T): T {
  reply.header('etag', tag);
  return body;
}

/** For route declarations: the response header and the 412 answer (OpenAPI). */
export const ETAG_HEADER = { ETag: z.string().describe('Strong entity tag of the resource; send it back in `If-Match` to change it only if nobody did meanwhile') };
export const IF_MATCH_HEADER = {
  'If-Match': z
    .string()
    .optional()
    .describe('Apply only if the resource still has this ETag (or `*`: any); otherwise 412 TG_ERR_PRECONDITION_FAILED and nothing changes. Absent: unconditional'),
};
export const PRECONDITION_FAILED = 'If-Match names no current ETag: the resource changed since it was read; nothing was changed';
