/**
 * ioredis clients. Two profiles:
 * - `worker`: commands wait for Redis to come back (maxRetriesPerRequest null), as BullMQ requires;
 *   used by the gate and observer, whose work must not be dropped during an outage.
 * - `api`: fails fast (no offline queue, 1 s command timeout) so HTTP answers 503 instead of hanging:
 *   within about a second, inside an orchestrator's default probe timeout (Kubernetes: 1 s).
 */
import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis';
import type { Logger } from 'pino';

export type RedisProfile = 'worker' | 'api';

/** Where Redis is: one server (REDIS_URL) or a cluster's seed nodes (REDIS_CLUSTER_NODES). */
export interface RedisTarget {
  redisUrl: string;
  redisClusterNodes?: ReadonlyArray<{ host: string; port: number }>;
}

export function isCluster(target: RedisTarget): boolean {
  return (target.redisClusterNodes?.length ?? 0) > 0;
}

/** Whether a client (typed `Redis`, see createRedis) is an ioredis Cluster. */
export function isClusterClient(redis: Redis): boolean {
  return (redis as unknown as { isCluster?: boolean }).isCluster === true;
}

/**
 * A client of the target. On a cluster it is an ioredis `Cluster`, typed as `Redis`: tollgate uses
 * only what both share (commands, pipelines and MULTI within one slot, scripts defined with
 * defineCommand, pub/sub), and BullMQ takes either as its connection.
 */
export function createRedis(t: RedisTarget, profile: RedisProfile, log: Logger, name: string): Redis {
  const common: RedisOptions = {
    connectionName: `tollgate:${name}`,
    // Reconnect forever with capped backoff; the outage is logged once per state change below.
    retryStrategy: (times) => Math.min(100 * 2 ** Math.min(times, 6), 5000),
    lazyConnect: false,
  };
  const opts: RedisOptions =
    profile === 'worker'
      ? { ...common, maxRetriesPerRequest: null, enableAutoPipelining: true }
      : { ...common, maxRetriesPerRequest: 1, enableOfflineQueue: false, commandTimeout: 1000, connectTimeout: 1000 };
  const where = isCluster(t) ? 'REDIS_CLUSTER_NODES' : 'REDIS_URL';
  let client: Redis;
  if (isCluster(t)) {
    const { retryStrategy, enableAutoPipelining, ...nodeOpts } = opts;
    const clusterOpts: ClusterOptions = {
      redisOptions: nodeOpts,
      clusterRetryStrategy: retryStrategy as ClusterOptions['clusterRetryStrategy'],
      // Writes and reads go to masters only: a replica can lag behind what a script just wrote.
      scaleReads: 'master',
      ...(enableAutoPipelining ? { enableAutoPipelining } : {}),
      enableOfflineQueue: profile === 'worker',
      // A failover moves slots for a few seconds: commands wait for the new master instead of failing.
      retryDelayOnClusterDown: 200,
      retryDelayOnFailover: 200,
      retryDelayOnTryAgain: 100,
      maxRedirections: 32,
      slotsRefreshTimeout: 2000,
    };
    client = new Cluster(t.redisClusterNodes!.map((n) => ({ host: n.host, port: n.port })), clusterOpts) as unknown as Redis;
  } else {
    client = new Redis(t.redisUrl, opts);
  }
  let down = false;
  client.on('error', (err: Error) => {
    if (!down) log.warn({ err: err.message, client: name }, `Redis unreachable at ${where}; retrying with backoff`);
    down = true;
  });
  client.on('ready', () => {
    if (down) log.info({ client: name }, 'Redis reachable again');
    down = false;
  });
  return client;
}

/** A pipeline's replies in order; the first command error is thrown (ioredis returns them per command). */
export async function pipelineReplies(pipe: ReturnType<Redis['pipeline']>): Promise<unknown[]> {
  return ((await pipe.exec()) ?? []).map(([err, v]) => {
    if (err) throw err;
    return v;
  });
}
