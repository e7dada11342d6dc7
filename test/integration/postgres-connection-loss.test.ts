/**
 * A Postgres connection lost in the middle of a transaction (the server terminated the backend while
 * the transaction waited on other work, as the relay and the outbox flush do) fails that transaction;
 * it does not crash the process with an unhandled 'error' from the checked-out client, and the pool
 * serves the next query. Seen as a flaky 06-postgres-outage: the `all` process died when backends
 * were terminated, and its ingress stood still.
 */
import { Client } from 'pg';
import pino from 'pino';
import { sql } from 'drizzle-orm';
import { createDatabase } from '../../src/db/client';
import { createTestDatabase, type TestDatabase } from '../support/services';

let tdb: TestDatabase;
beforeAll(async () => {
  tdb = await createTestDatabase('pgloss');
});
afterAll(async () => {
  await tdb.drop();
});

it('fails the transaction, keeps the process up, and serves the next query', async () => {
  const database = createDatabase(tdb.url, pino({ level: 'silent' }), { schema: 'pgloss' });
  const uncaught: unknown[] = [];
  const onUncaught = (err: unknown) => uncaught.push(err);
  process.on('uncaughtException', onUncaught);
  const admin = new Client({ connectionString: tdb.url });
  await admin.connect();
  try {
    const tx = database.db.transaction(async (t) => {
      const { rows } = await t.execute(sql`SELECT pg_backend_pid() AS pid`);
      const pid = Number((rows[0] as { pid: number }).pid);
      // Idle in the transaction while the server ends the backend (other work in between).
      await admin.query('SELECT pg_terminate_backend($1)', [pid]);
      await new Promise((r) => setTimeout(r, 300));
      await t.execute(sql`SELECT 1`);
    });
    await expect(tx).rejects.toThrow();
    expect(uncaught).toEqual([]);
    const { rows } = await database.pool.query('SELECT 2 AS two');
    expect(rows[0].two).toBe(2);
  } finally {
    process.off('uncaughtException', onUncaught);
    await admin.end();
    await database.close();
  }
});
