/**
 * A redis-server of the test's own on a random loopback port, for tests that read server-wide
 * figures (INFO commandstats) which other test files running in parallel would disturb, and for
 * tests that stop or kill Redis. Needs `redis-server` on the PATH (the CI machine has it).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { freePort } from './net';
import { waitFor } from './services';

export interface PrivateRedis {
  url: string;
  port: number;
  stop(): Promise<void>;
}

export async function startPrivateRedis(): Promise<PrivateRedis> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-redis-'));
  let proc: ChildProcess;
  try {
    proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], {
      stdio: 'ignore',
    });
  } catch (err) {
    throw new Error(`this test starts a private redis-server and none could be started: ${(err as Error).message}`);
  }
  const exited = new Promise<void>((r) => proc.on('exit', () => r()));
  proc.on('error', () => undefined);
  const url = `redis://127.0.0.1:${port}`;
  await waitFor(async () => {
    const r = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    r.on('error', () => undefined);
    try {
      await r.connect();
      return (await r.ping()) === 'PONG';
    } finally {
      r.disconnect();
    }
  }, `a private redis-server on port ${port}`);
  return {
    url,
    port,
    async stop() {
      proc.kill('SIGKILL');
      await exited;
    },
  };
}
