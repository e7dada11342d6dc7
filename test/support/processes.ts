/**
 * tollgate workers as real child processes (node --import tsx workers/<role>.ts), for tests that
 * kill -9 them. Each child gets the test's prefix, database and a config file written for it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ConfigInput } from '../../src/config/file';
import { CLUSTER_NODES, REDIS_URL } from './services';

const ROOT = join(__dirname, '..', '..');

export function writeConfigFile(config: ConfigInput): string {
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-test-'));
  const file = join(dir, 'tollgate.config.json');
  writeFileSync(file, JSON.stringify(config, null, 2));
  return file;
}

export interface Child {
  readonly proc: ChildProcess;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Everything the child wrote, one parsed JSON object per pino line (non-JSON lines as {raw}). */
  readonly logs: Array<Record<string, unknown>>;
  kill(signal?: NodeJS.Signals): void;
}

export function spawnWorker(
  role: 'gate' | 'observer' | 'api' | 'all',
  env: Record<string, string | undefined>,
): Child {
  // On a cluster run, a child meant for the run's Redis gets the cluster's nodes.
  const onCluster = CLUSTER_NODES && (env.REDIS_URL === undefined || env.REDIS_URL === REDIS_URL) && env.REDIS_CLUSTER_NODES === undefined;
  const proc = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'workers', `${role}.ts`)], {
    cwd: ROOT,
    env: { ...process.env, LOG_LEVEL: 'warn', ...(onCluster ? { REDIS_CLUSTER_NODES: CLUSTER_NODES!.map((n) => `${n.host}:${n.port}`).join(',') } : {}), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: Array<Record<string, unknown>> = [];
  const collect = (chunk: Buffer) => {
    for (const line of chunk.toString('utf8').split('\n')) {
      if (!line.trim()) continue;
      try {
        logs.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        logs.push({ raw: line });
      }
    }
  };
  proc.stdout!.on('data', collect);
  proc.stderr!.on('data', collect);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    proc.on('exit', (code, signal) => resolve({ code, signal })),
  );
  return {
    proc,
    exited,
    logs,
    kill(signal = 'SIGKILL') {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
    },
  };
}
