/**
 * A PostgreSQL server of the test's own (initdb + postgres) on a random loopback port, for fault
 * tests that stop it, terminate its backends or start it late. Needs initdb and postgres on the PATH
 * (the CI machine has them). initdb refuses to run as root, so as root the server runs as the
 * `postgres` system user.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chownSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from 'pg';
import { freePort } from './net';
import { postgresAnswers } from './probe';
import { waitFor } from './services';

export interface PrivatePostgres {
  /** URL of the `postgres` database. */
  readonly url: string;
  readonly port: number;
  /** URL of a database on this server (created by createDatabase). */
  urlOf(database: string): string;
  createDatabase(name: string): Promise<string>;
  /** Terminates every client backend (as an operator's pg_terminate_backend would). */
  terminateBackends(): Promise<number>;
  /** Fast shutdown (SIGINT); the data stays. */
  stop(): Promise<void>;
  /** Starts the server again on the same port and data. */
  start(): Promise<void>;
  /** Stops it and removes the data directory. */
  destroy(): Promise<void>;
}

function systemUser(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const uid = Number(execFileSync('id', ['-u', 'postgres']).toString().trim());
  const gid = Number(execFileSync('id', ['-g', 'postgres']).toString().trim());
  return { uid, gid };
}

export async function startPrivatePostgres(): Promise<PrivatePostgres> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-pg-'));
  const user = systemUser();
  if (user) chownSync(dir, user.uid, user.gid);
  const data = join(dir, 'data');
  try {
    execFileSync('initdb', ['-D', data, '-U', 'postgres', '-A', 'trust', '--no-sync', '-E', 'UTF8', '--locale', 'C'], {
      stdio: 'pipe',
      ...(user ?? {}),
    });
  } catch (err) {
    const e = err as { message: string; stderr?: Buffer };
    throw new Error(`this test starts a private Postgres and initdb failed: ${e.stderr?.toString() || e.message}`);
  }
  const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
  let proc: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  const start = async () => {
    proc = spawn(
      'postgres',
      ['-D', data, '-p', String(port), '-h', '127.0.0.1', '-k', dir, '-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off'],
      { stdio: 'ignore', ...(user ?? {}) },
    );
    const p = proc;
    exited = new Promise<void>((r) => p.on('exit', () => r()));
    p.on('error', () => undefined);
    await waitFor(() => postgresAnswers(url), `a private Postgres on port ${port}`, 30_000, 100);
  };
  const stop = async () => {
    if (proc && proc.exitCode === null && proc.signalCode === null) proc.kill('SIGINT');
    await exited;
  };
  await start();
  const urlOf = (database: string) => `postgres://postgres@127.0.0.1:${port}/${database}`;
  return {
    url,
    port,
    urlOf,
    async createDatabase(name) {
      const c = new Client({ connectionString: url });
      await c.connect();
      try {
        await c.query(`CREATE DATABASE "${name}"`);
      } finally {
        await c.end();
      }
      return urlOf(name);
    },
    async terminateBackends() {
      const c = new Client({ connectionString: url });
      await c.connect();
      try {
        const { rows } = await c.query(
          `SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND backend_type = 'client backend'`,
        );
        return rows[0].n as number;
      } finally {
        await c.end();
      }
    },
    stop,
    start,
    async destroy() {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
