/**
 * Installs from before per-deployment schemas kept their tables in `public` and drizzle's journal in
 * `drizzle.__drizzle_migrations`. The first deployment to migrate a fresh schema on such a database
 * moves those tables into its schema (ALTER TABLE ... SET SCHEMA: rows, indexes, constraints and
 * sequences go along, nothing is copied) and copies the journal, in one transaction. docs/operations.md
 * ("Several deployments on one Postgres") says who gets the data and why.
 *
 * Only tollgate's own tables (those its applied migrations created), and only when the old journal is
 * tollgate's: its hashes must be the first ones of drizzle/. The old journal stays where it is, so a process of the old version that
 * restarts meanwhile finds its migrations applied and creates nothing anew in `public`.
 */
import { readMigrationFiles, type MigrationMeta } from 'drizzle-orm/migrator';
import type { PoolClient } from 'pg';
import type { Logger } from 'pino';

/** The one migration lock of the versions before schemas; held while moving their tables away. */
export const LEGACY_MIGRATION_LOCK_ID = 7_461_290_113n;

/** The tables these migrations create (an unrelated `public.alerts` of another app is never taken). */
export function tablesCreatedBy(migrations: readonly MigrationMeta[]): string[] {
  const names = migrations.flatMap((m) => [...m.sql.join('\n').matchAll(/CREATE TABLE (?:IF NOT EXISTS )?"([^"]+)"/g)].map((x) => x[1]!));
  return [...new Set(names)];
}

/** Moves the pre-schema tables from `public` into `schema` if they are there; returns their names. */
export async function adoptLegacyTables(client: PoolClient, schema: string, migrationsFolder: string, log: Logger): Promise<string[]> {
  const ownJournal = `"${schema}"."__drizzle_migrations"`;
  const has = await client.query<{ own: string | null; legacy: string | null }>(
    `SELECT to_regclass($1) AS own, to_regclass('drizzle.__drizzle_migrations') AS legacy`,
    [ownJournal],
  );
  if (!has.rows[0]!.legacy) return [];
  // A schema that has applied migrations of its own is past this step.
  if (has.rows[0]!.own && (await client.query(`SELECT 1 FROM ${ownJournal} LIMIT 1`)).rowCount) return [];

  await client.query('BEGIN');
  try {
    // Serializes with every other deployment adopting, and with old-version processes migrating.
    await client.query('SELECT pg_advisory_xact_lock($1)', [LEGACY_MIGRATION_LOCK_ID.toString()]);
    const journal = (await client.query<{ hash: string }>('SELECT hash FROM drizzle.__drizzle_migrations ORDER BY id')).rows;
    const ours = readMigrationFiles({ migrationsFolder });
    if (journal.length === 0 || journal.length > ours.length || journal.some((r, i) => r.hash !== ours[i]!.hash)) {
      await client.query('ROLLBACK');
      log.warn({ schema }, 'drizzle.__drizzle_migrations is not the journal of a tollgate install: the tables in public are left alone');
      return [];
    }
    const present = (
      await client.query<{ tablename: string }>(`SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename = ANY($1) ORDER BY tablename`, [
        tablesCreatedBy(ours.slice(0, journal.length)),
      ])
    ).rows.map((r) => r.tablename);
    // None left: another deployment took them (or they were moved by hand).
    if (present.length === 0) {
      await client.query('ROLLBACK');
      return [];
    }
    for (const table of present) await client.query(`ALTER TABLE public."${table}" SET SCHEMA "${schema}"`);
    // drizzle's own DDL for its journal (drizzle-orm pg-core dialect.migrate), then the old rows.
    await client.query(`CREATE TABLE IF NOT EXISTS ${ownJournal} (id SERIAL PRIMARY KEY, hash text NOT NULL, created_at bigint)`);
    await client.query(`INSERT INTO ${ownJournal} (hash, created_at) SELECT hash, created_at FROM drizzle.__drizzle_migrations ORDER BY id`);
    await client.query('COMMIT');
    log.warn(
      { schema, tables: present, migrations: journal.length },
      'moved the tables of an install from before per-deployment schemas from public into this deployment schema',
    );
    return present;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}
