/**
 * Applies drizzle/ migrations inside the deployment's schema (TOLLGATE_PG_SCHEMA), under an advisory
 * lock of that schema: drizzle's migrate() takes no lock of its own, and several tollgate processes
 * often start at once against an empty database. The first applies; the others wait on the lock, then
 * find nothing left to do. Deployments with other schemas migrate side by side.
 *
 * Before any migration the schema is claimed: `tollgate_deployment` (one row, outside drizzle's
 * migrations so it is read before them) records the TOLLGATE_PREFIX that first migrated it, and a
 * deployment with another prefix is refused (TG_ERR_PG_SCHEMA_OWNED) without touching the schema.
 */
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { drizzle } from 'drizzle-orm/node-postgres';
import { migrate } from 'drizzle-orm/node-postgres/migrator';
import type { Pool, PoolClient } from 'pg';
import type { Logger } from 'pino';
import { TollgateError } from '../errors';
import { adoptLegacyTables } from './legacy';

export const MIGRATIONS_DIR = join(__dirname, '..', '..', 'drizzle');

/** The table of a schema that names the deployment owning it. */
export const OWNER_TABLE = 'tollgate_deployment';

/** Start-up errors no retry can fix: the process stops instead of retrying (src/runtime.ts). */
export const FATAL_MIGRATION_ERRORS = new Set(['TG_ERR_PG_SCHEMA_OWNED', 'TG_ERR_PG_SEARCH_PATH']);

/**
 * The advisory lock (pg_advisory_lock takes a bigint) that serializes migrations of one schema: the
 * first 8 bytes of a SHA-256 of its name, as a signed 64-bit number. Never the pre-schema versions'
 * single lock (src/db/legacy.ts), which only the move of their tables takes.
 */
export function migrationLockId(schema: string): bigint {
  return createHash('sha256').update(`tollgate:migrations:${schema}`).digest().readBigInt64BE(0);
}

export interface MigrationTarget {
  /** The schema every connection of the pool works in (search_path). */
  schema: string;
  /** TOLLGATE_PREFIX of this deployment, recorded as the schema's owner. */
  prefix: string;
}

export async function runMigrations(pool: Pool, log: Logger, target: MigrationTarget): Promise<void> {
  const { schema } = target;
  const lockId = migrationLockId(schema).toString();
  const client = await pool.connect();
  try {
    // No statement timeout here: waiting for another process's migration is expected.
    await client.query('SET statement_timeout = 0');
    const started = Date.now();
    await client.query('SELECT pg_advisory_lock($1)', [lockId]);
    const waitedMs = Date.now() - started;
    try {
      await claimSchema(client, target);
      await adoptLegacyTables(client, schema, MIGRATIONS_DIR, log);
      // The journal in the deployment's schema too (drizzle's default is a `drizzle` schema shared by
      // every deployment, and by every other drizzle app of the database).
      await migrate(drizzle(client), { migrationsFolder: MIGRATIONS_DIR, migrationsSchema: schema });
      log.info({ waitedForLockMs: waitedMs, schema }, 'database migrations applied');
    } finally {
      await client.query('SELECT pg_advisory_unlock($1)', [lockId]);
    }
  } finally {
    await client.query('RESET statement_timeout').catch(() => undefined);
    client.release();
  }
}

/** Creates the schema if needed, checks that the connection works inside it, and claims it. */
async function claimSchema(client: PoolClient, { schema, prefix }: MigrationTarget): Promise<void> {
  await client.query(`CREATE SCHEMA IF NOT EXISTS "${schema}"`);
  const current = (await client.query<{ s: string | null }>('SELECT current_schema() AS s')).rows[0]!.s;
  if (current !== schema) {
    throw new TollgateError(
      'TG_ERR_PG_SEARCH_PATH',
      `Postgres connections do not work inside schema "${schema}" (TOLLGATE_PG_SCHEMA): the current schema is ${current === null ? 'none' : `"${current}"`}. Something between tollgate and Postgres drops the search_path that DATABASE_URL's connections set at start-up (a pooler that ignores the "options" startup parameter?)`,
      { schema, currentSchema: current },
    );
  }
  await client.query(
    `CREATE TABLE IF NOT EXISTS "${schema}"."${OWNER_TABLE}" (
       id integer PRIMARY KEY DEFAULT 1 CHECK (id = 1),
       prefix text NOT NULL,
       claimed_at timestamp with time zone NOT NULL DEFAULT now()
     )`,
  );
  await client.query(`INSERT INTO "${schema}"."${OWNER_TABLE}" (prefix) VALUES ($1) ON CONFLICT (id) DO NOTHING`, [prefix]);
  const owner = (await client.query<{ prefix: string }>(`SELECT prefix FROM "${schema}"."${OWNER_TABLE}" WHERE id = 1`)).rows[0]!.prefix;
  if (owner !== prefix) {
    throw new TollgateError(
      'TG_ERR_PG_SCHEMA_OWNED',
      `Postgres schema "${schema}" (TOLLGATE_PG_SCHEMA) belongs to the deployment with TOLLGATE_PREFIX "${owner}", not "${prefix}": set TOLLGATE_PG_SCHEMA to a schema of this deployment's own`,
      { schema, owner, prefix },
    );
  }
}
