/**
 * RELIABILITY.md scenario 7: three processes migrating an empty database at once. One applies, the
 * others wait on the advisory lock, then find nothing left to do; each migration is applied exactly
 * once and nobody logs an error or retries.
 *
 * To make "at once" certain rather than likely, the test takes tollgate's migration lock (that of the deployment's schema) itself
 * before the three processes (a gate, an observer, an API: every role migrates) start, waits until
 * all three are queued on it in pg_locks, and lets go: from that instant the three race.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Client } from 'pg';
import { migrationLockId } from '../../src/db/migrate';
import { schemaForPrefix } from '../../src/db/pg-schema';
import { chaosConfigInput, expectConserved, startCluster } from './support/cluster';
import { errorLines, levelOf, waitForLog } from './support/lifecycle';
import { waitReady } from './support/ops';
import { freePort } from '../support/net';
import { waitFor } from '../support/services';

jest.setTimeout(60_000);

/** pg_locks shows a bigint advisory key as (classid, objid): the unsigned high and low halves. */
function lockParts(id: bigint): { classid: number; objid: number } {
  const unsigned = BigInt.asUintN(64, id);
  return { classid: Number(unsigned >> 32n), objid: Number(unsigned & 0xffffffffn) };
}

interface Journal {
  entries: Array<{ idx: number; tag: string; when: number }>;
}

it('three processes migrating an empty database at once: one applies, the others wait, each migration once', async () => {
  const c = await startCluster('migrate', chaosConfigInput());
  // The migration lock of the deployment's schema (src/db/migrate.ts).
  const schema = schemaForPrefix(c.prefix);
  const LOCK_ID = migrationLockId(schema);
  const { classid: LOCK_CLASSID, objid: LOCK_OBJID } = lockParts(LOCK_ID);
  const holder = new Client({ connectionString: c.dbUrl });
  const probe = new Client({ connectionString: c.dbUrl });
  const schemaCount = async (name: string) =>
    (await probe.query(`SELECT count(*)::int AS n FROM information_schema.schemata WHERE schema_name = $1`, [name])).rows[0].n as number;
  await holder.connect();
  await probe.connect();
  try {
    // Empty database: no deployment schema (nor drizzle's shared journal schema) yet.
    expect(await schemaCount(schema)).toBe(0);
    expect(await schemaCount('drizzle')).toBe(0);

    await holder.query('SELECT pg_advisory_lock($1)', [LOCK_ID.toString()]);
    const port = await freePort();
    const children = [
      c.spawn('gate', { LOG_LEVEL: 'info' }),
      c.spawn('observer', { LOG_LEVEL: 'info' }),
      c.spawn('api', { LOG_LEVEL: 'info', PORT: String(port) }),
    ];
    const waiters = async () =>
      (
        await probe.query(
          `SELECT count(*)::int AS n FROM pg_locks l JOIN pg_database d ON d.oid = l.database
            WHERE l.locktype = 'advisory' AND NOT l.granted AND d.datname = current_database()
              AND l.classid = $1 AND l.objid = $2 AND l.objsubid = 1`,
          [LOCK_CLASSID, LOCK_OBJID],
        )
      ).rows[0].n as number;
    await waitFor(async () => (await waiters()) === 3, 'all three processes queued on the migration lock', 30_000, 50);
    // Hold a little longer: nobody gets past the lock, nothing is migrated meanwhile.
    await new Promise((r) => setTimeout(r, 300));
    expect(await waiters()).toBe(3);
    expect(await schemaCount(schema)).toBe(0);
    // Jobs arrive meanwhile: with an empty Redis and no migrated Postgres the gate cannot know the
    // quotas, so they wait in ingress (none admitted blind, none lost) ...
    const exec = c.startExec();
    const ids = await c.produce(c.goodJobs(300));
    await new Promise((r) => setTimeout(r, 500));
    expect(exec.runs.size).toBe(0);
    const releasedAt = Date.now();
    await holder.query('SELECT pg_advisory_unlock($1)', [LOCK_ID.toString()]);

    const applied = await Promise.all(children.map((ch) => waitForLog(ch, 'database migrations applied', 20_000)));
    await waitReady(port);
    const waited = applied.map((l) => Number(l.waitedForLockMs));
    const appliedAt = applied.map((l) => Date.parse(String(l.time)));
    process.stdout.write(
      `[chaos] migration race: waitedForLockMs ${JSON.stringify(waited)}, applied ${JSON.stringify(appliedAt.map((t) => t - releasedAt))} ms after the release\n`,
    );
    // Every process waited on the lock (it was held when each asked for it) ...
    for (const w of waited) expect(w).toBeGreaterThanOrEqual(300);
    // ... and none got past it before the release.
    for (const t of appliedAt) expect(t).toBeGreaterThanOrEqual(releasedAt - 50);

    const journal = JSON.parse(readFileSync(join(__dirname, '..', '..', 'drizzle', 'meta', '_journal.json'), 'utf8')) as Journal;
    // The journal lives in the deployment's schema; nothing went to a shared `drizzle` or `public`.
    const rows = (await probe.query(`SELECT hash, created_at FROM "${schema}".__drizzle_migrations ORDER BY id`)).rows as Array<{ hash: string; created_at: string }>;
    expect(await schemaCount('drizzle')).toBe(0);
    expect((await probe.query(`SELECT count(*)::int AS n FROM information_schema.tables WHERE table_schema = 'public'`)).rows[0].n).toBe(0);
    // Each migration of the journal applied exactly once, in order.
    expect(rows).toHaveLength(journal.entries.length);
    expect(new Set(rows.map((r) => r.hash)).size).toBe(journal.entries.length);
    expect(rows.map((r) => Number(r.created_at))).toEqual(journal.entries.map((e) => e.when));
    const tables = await probe.query(
      `SELECT table_name FROM information_schema.tables WHERE table_schema = $1
        AND table_name IN ('downstream_counters', 'breaker_snapshots', 'breaker_transitions', 'audit_log') ORDER BY table_name`,
      [schema],
    );
    expect(tables.rows.map((r) => r.table_name)).toEqual(['audit_log', 'breaker_snapshots', 'breaker_transitions', 'downstream_counters']);

    // Give a failed-and-retried migration (the symptom of a race) the time to show in the logs.
    await new Promise((r) => setTimeout(r, 500));
    for (const ch of children) {
      expect(errorLines(ch)).toEqual([]);
      // (The gate's "intake waits" warning while the definitions cannot be read yet is expected here.)
      expect(ch.logs.filter((l) => levelOf(l) >= 40 && /Postgres|migrat/i.test(String(l.msg)) && !/intake waits/.test(String(l.msg)))).toEqual([]);
      expect(ch.logs.filter((l) => l.msg === 'database migrations applied')).toHaveLength(1);
      expect({ exitCode: ch.proc.exitCode, signal: ch.proc.signalCode }).toEqual({ exitCode: null, signal: null });
    }
    // No one still waits or holds the lock.
    expect(await waiters()).toBe(0);
    // ... and once migrated, every one of them runs, exactly once.
    await c.settleIngress(ids, 20_000);
    await waitFor(() => exec.runs.size >= ids.length || undefined, 'every job executed after the migrations', 20_000, 50);
    expectConserved('migration race', await c.conservation(ids, exec), { exec: ids.length, ingress: 0, waiting: 0, 'dead-letter': 0 });
  } finally {
    await holder.end().catch(() => undefined);
    await probe.end().catch(() => undefined);
    await c.close();
  }
});
