/**
 * A redis-server of the test's own on a random loopback port, for tests that read server-wide
 * figures (INFO commandstats) which other test files running in parallel would disturb, and for
 * tests that stop or kill Redis. Needs `redis-server` on the PATH (the CI machine has it).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './net';
import { redisAnswers } from './probe';
import { waitFor } from './services';

export interface PrivateRedis {
  url: string;
  port: number;
  /** kill -9 the server (its data is gone: it keeps nothing on disk). */
  stop(): Promise<void>;
  /** Starts a new, empty server on the same port (after stop()). */
  restart(): Promise<void>;
}

export async function startPrivateRedis(): Promise<PrivateRedis> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-redis-'));
  const url = `redis://127.0.0.1:${port}`;
  let proc: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  const launch = async () => {
    try {
      proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], {
        stdio: 'ignore',
      });
    } catch (err) {
      throw new Error(`this test starts a private redis-server and none could be started: ${(err as Error).message}`);
    }
    const p = proc;
    exited = new Promise<void>((r) => p.on('exit', () => r()));
    p.on('error', () => undefined);
    await waitFor(() => redisAnswers(url), `a private redis-server on port ${port}`);
  };
  await launch();
  return {
    url,
    port,
    async stop() {
      proc?.kill('SIGKILL');
      await exited;
    },
    restart: launch,
  };
}
