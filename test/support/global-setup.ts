/**
 * Finds Redis and Postgres for the test run, once: REDIS_URL / DATABASE_URL if set, else the local
 * defaults, else containers started by testcontainers when Docker runs here, else a clear error
 * saying how to provide them. Test files then isolate themselves (own BullMQ prefix, own database).
 */
import { execFileSync } from 'node:child_process';
import { postgresAnswers, redisAnswers } from './probe';

const DEFAULT_REDIS = 'redis://127.0.0.1:6379';
const DEFAULT_PG = 'postgres://postgres@127.0.0.1:5432/postgres';

function dockerRuns(): boolean {
  try {
    execFileSync('docker', ['info'], { stdio: 'ignore', timeout: 5000 });
    return true;
  } catch {
    return false;
  }
}

export default async function globalSetup(): Promise<void> {
  // TOLLGATE_TEST_CLUSTER=1: the run's Redis is a private three-master cluster (one replica each) on
  // loopback, started here and stopped by global-teardown; Postgres as below.
  if (process.env.TOLLGATE_TEST_CLUSTER === '1' && !process.env.TOLLGATE_TEST_CLUSTER_NODES) {
    const { startPrivateCluster } = await import('./private-cluster');
    const cluster = await startPrivateCluster({ masters: 3, replicas: 1 });
    process.env.TOLLGATE_TEST_CLUSTER_NODES = cluster.nodesEnv;
    (globalThis as Record<string, unknown>).__TOLLGATE_CLUSTER__ = cluster;
  }
  const redisUrl = process.env.REDIS_URL || DEFAULT_REDIS;
  const pgUrl = process.env.DATABASE_URL || DEFAULT_PG;
  const [redisOk, pgOk] = await Promise.all([redisAnswers(redisUrl), postgresAnswers(pgUrl)]);
  if (redisOk && pgOk) {
    process.env.REDIS_URL = redisUrl;
    process.env.DATABASE_URL = pgUrl;
    return;
  }
  if (dockerRuns()) {
    // Loaded only here: most runs never need it.
    const { GenericContainer } = await import('testcontainers');
    const started: Array<{ stop(): Promise<unknown> }> = [];
    if (!redisOk) {
      const c = await new GenericContainer('redis:7').withExposedPorts(6379).start();
      started.push(c);
      process.env.REDIS_URL = `redis://${c.getHost()}:${c.getMappedPort(6379)}`;
    } else process.env.REDIS_URL = redisUrl;
    if (!pgOk) {
      const c = await new GenericContainer('postgres:16')
        .withEnvironment({ POSTGRES_HOST_AUTH_METHOD: 'trust' })
        .withExposedPorts(5432)
        .start();
      started.push(c);
      process.env.DATABASE_URL = `postgres://postgres@${c.getHost()}:${c.getMappedPort(5432)}/postgres`;
      for (let i = 0; i < 60 && !(await postgresAnswers(process.env.DATABASE_URL)); i++) await new Promise((r) => setTimeout(r, 500));
    } else process.env.DATABASE_URL = pgUrl;
    (globalThis as Record<string, unknown>).__TOLLGATE_CONTAINERS__ = started;
    return;
  }
  const missing = [
    !redisOk && `Redis does not answer at ${redisUrl} (set REDIS_URL, or start one: redis-server --port 6379)`,
    !pgOk && `Postgres does not answer at ${pgUrl} (set DATABASE_URL to a server where the user may CREATE DATABASE)`,
  ].filter(Boolean);
  throw new Error(`tollgate tests need real Redis and Postgres, and Docker is not available to start them:\n  ${missing.join('\n  ')}`);
}
