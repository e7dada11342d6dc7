/**
 * Postgres access: one pg Pool per process, wrapped by drizzle, every connection inside the
 * deployment's schema (search_path, see src/db/pg-schema.ts). Queries fail fast (connection and
 * statement timeouts) so an outage surfaces as an error the caller can retry or answer 503 to.
 */
import { drizzle, type NodePgDatabase } from 'drizzle-orm/node-postgres';
import { Pool } from 'pg';
import type { Logger } from 'pino';
import { connectionInSchema } from './pg-schema';
import * as schema from './schema';

export type Db = NodePgDatabase<typeof schema>;

export interface Database {
  /** The Postgres schema every connection of the pool works in. */
  schema: string;
  pool: Pool;
  db: Db;
  close(): Promise<void>;
}

export function createDatabase(url: string, log: Logger, opts: { schema: string; max?: number }): Database {
  const pool = new Pool({
    ...connectionInSchema(url, opts.schema),
    max: opts.max ?? 5,
    connectionTimeoutMillis: 3000,
    statement_timeout: 5000,
    idleTimeoutMillis: 30_000,
    application_name: 'tollgate',
  });
  // An idle client that loses its server emits here; without a listener the process would crash.
  pool.on('error', (err) => log.warn({ err: err.message }, 'Postgres connection lost; the pool reconnects on next use'));
  // A checked-out client has no pool listener (pg-pool removes it at checkout): one that loses its server
  // between two statements of a transaction (the relay, the outbox flush, migrations' lock) would emit an
  // unhandled 'error' and crash the process. Its next query fails instead, and the caller retries.
  pool.on('connect', (client) => client.on('error', (err) => log.warn({ err: err.message }, 'Postgres connection of a running transaction lost; it fails and is retried')));
  const db = drizzle(pool, { schema });
  let closed = false;
  return {
    schema: opts.schema,
    pool,
    db,
    async close() {
      if (closed) return;
      closed = true;
      await pool.end();
    },
  };
}
