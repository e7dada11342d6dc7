/**
 * Applies drizzle/ migrations under a Postgres advisory lock: drizzle's migrate() takes no lock of
 * its own, and several tollgate processes often start at once against an empty database. The first
 * applies; the others wait on the lock, then find nothing left to do.
 */
import { join } from 'node:path';
import { drizzle } from 'drizzle-orm/node-postgres';
import { migrate } from 'drizzle-orm/node-postgres/migrator';
import type { Pool } from 'pg';
import type { Logger } from 'pino';

export const MIGRATIONS_DIR = join(__dirname, '..', '..', 'drizzle');
/** Arbitrary constant naming tollgate's migration lock (pg_advisory_lock takes a bigint). */
const MIGRATION_LOCK_ID = 7_461_290_113n;

export async function runMigrations(pool: Pool, log: Logger): Promise<void> {
  const client = await pool.connect();
  try {
    // No statement timeout here: waiting for another process's migration is expected.
    await client.query('SET statement_timeout = 0');
    const started = Date.now();
    await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK_ID.toString()]);
    const waitedMs = Date.now() - started;
    try {
      await migrate(drizzle(client), { migrationsFolder: MIGRATIONS_DIR });
      log.info({ waitedForLockMs: waitedMs }, 'database migrations applied');
    } finally {
      await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK_ID.toString()]);
    }
  } finally {
    await client.query('RESET statement_timeout').catch(() => undefined);
    client.release();
  }
}
