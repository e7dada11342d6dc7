/**
 * Opaque list cursors: base64url of the last id (or offset) returned; `limit` is 1-200 (default 50).
 * A cursor holds a whole number from 0 to 2^31 - 1 (Postgres's integer ids, the smallest id column
 * a cursor walks): anything else is a 400 naming `query.cursor`, never a query that overflows.
 */
import { z } from 'zod';
import { TollgateError } from '../errors';

export const PageQuery = {
  limit: z.coerce.number().int().min(1).max(200).default(50).describe('Items per page, at most 200'),
  cursor: z.string().max(200).optional().describe('Opaque cursor from the previous page\'s nextCursor'),
};

export function encodeCursor(lastId: number): string {
  return Buffer.from(JSON.stringify({ after: lastId })).toString('base64url');
}

/** The largest Postgres `integer` (int4): serial ids, and so cursors, stay at or below it. */
export const INT4_MAX = 2_147_483_647;

export function decodeCursor(cursor: string | undefined): number | undefined {
  if (cursor === undefined) return undefined;
  try {
    const v = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as { after?: unknown };
    if (typeof v.after === 'number' && Number.isInteger(v.after) && v.after >= 0 && v.after <= INT4_MAX) return v.after;
  } catch {
    /* fall through */
  }
  throw invalidCursor();
}

/** The error of a cursor this API did not return (malformed, tampered with, out of range). */
export function invalidCursor(): TollgateError {
  return new TollgateError('TG_ERR_VALIDATION', 'invalid query: query.cursor: not a cursor this API returned', [
    { field: 'query.cursor', message: 'not a cursor this API returned' },
  ]);
}

/** A page of rows (fetched with limit + 1) and the cursor to the next one. */
export function page<T extends { id: number }, V>(rows: T[], limit: number, view: (r: T) => V): { items: V[]; nextCursor?: string } {
  const items = rows.slice(0, limit);
  return {
    items: items.map(view),
    ...(rows.length > limit ? { nextCursor: encodeCursor(items[items.length - 1]!.id) } : {}),
  };
}
