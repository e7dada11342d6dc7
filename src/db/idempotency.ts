/**
 * Idempotency keys of creating POSTs (`Idempotency-Key`), in Postgres so every API replica agrees.
 * A key is claimed in the transaction that creates the resource and completed in it with the answer,
 * so a key row is never seen half-done: a concurrent request with the same key waits on the unique
 * index until the first commits (then replays its answer) or rolls back (then creates itself).
 */
import { index, integer, jsonb, pgTable, primaryKey, text, timestamp } from 'drizzle-orm/pg-core';
import { and, eq, lt, sql } from 'drizzle-orm';
import type { Tx } from './quotas';

/** How long a key is remembered. */
export const IDEMPOTENCY_TTL_HOURS = 24;

export const idempotencyKeys = pgTable(
  'idempotency_keys',
  {
    /** The token's name: keys of different callers never collide. */
    principal: text('principal').notNull(),
    /** `POST /api/v1/throttles`: the route, as declared. */
    endpoint: text('endpoint').notNull(),
    key: text('key').notNull(),
    /** SHA-256 of the request body's canonical JSON. */
    requestHash: text('request_hash').notNull(),
    status: integer('status'),
    /** The answer's body as sent (text, not jsonb: a replay is byte for byte the first answer). */
    response: text('response'),
    headers: jsonb('headers').$type<Record<string, string>>(),
    createdAt: timestamp('created_at', { withTimezone: true, mode: 'date' }).notNull().defaultNow(),
  },
  (t) => [primaryKey({ columns: [t.principal, t.endpoint, t.key] }), index('idempotency_keys_created').on(t.createdAt)],
);

export interface IdempotencyScope {
  principal: string;
  endpoint: string;
  key: string;
}

export type Claim =
  | { kind: 'claimed' }
  | { kind: 'replay'; status: number; response: string; headers: Record<string, string> }
  | { kind: 'reused'; createdAt: Date };

const expired = () => sql`now() - make_interval(hours => ${IDEMPOTENCY_TTL_HOURS})`;

/**
 * Claims the key inside `tx` (an expired key is taken over), or says what the earlier request with
 * it answered. Waits while another transaction holds the same key.
 */
export async function claimKey(tx: Tx, scope: IdempotencyScope, requestHash: string): Promise<Claim> {
  const claimed = await tx
    .insert(idempotencyKeys)
    .values({ ...scope, requestHash })
    .onConflictDoUpdate({
      target: [idempotencyKeys.principal, idempotencyKeys.endpoint, idempotencyKeys.key],
      set: { requestHash, status: null, response: null, headers: null, createdAt: sql`now()` },
      setWhere: lt(idempotencyKeys.createdAt, expired()),
    })
    .returning({ key: idempotencyKeys.key });
  if (claimed.length > 0) return { kind: 'claimed' };
  const [row] = await tx
    .select()
    .from(idempotencyKeys)
    .where(and(eq(idempotencyKeys.principal, scope.principal), eq(idempotencyKeys.endpoint, scope.endpoint), eq(idempotencyKeys.key, scope.key)));
  if (!row || row.requestHash !== requestHash || row.status === null) return { kind: 'reused', createdAt: row?.createdAt ?? new Date() };
  return { kind: 'replay', status: row.status, response: row.response ?? '', headers: row.headers ?? {} };
}

/** Records the answer of the request that claimed the key (same transaction as the creation). */
export async function completeKey(tx: Tx, scope: IdempotencyScope, status: number, response: string, headers: Record<string, string>): Promise<void> {
  await tx
    .update(idempotencyKeys)
    .set({ status, response, headers })
    .where(and(eq(idempotencyKeys.principal, scope.principal), eq(idempotencyKeys.endpoint, scope.endpoint), eq(idempotencyKeys.key, scope.key)));
}

/** Deletes up to `limit` expired keys; returns how many. */
export async function pruneKeys(db: Tx, limit = 500): Promise<number> {
  const rows = await db.execute(
    sql`DELETE FROM ${idempotencyKeys} WHERE ctid IN (SELECT ctid FROM ${idempotencyKeys} WHERE ${idempotencyKeys.createdAt} < ${expired()} LIMIT ${limit})`,
  );
  return rows.rowCount ?? 0;
}
