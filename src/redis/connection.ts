/**
 * ioredis clients. Two profiles:
 * - `worker`: commands wait for Redis to come back (maxRetriesPerRequest null), as BullMQ requires;
 *   used by the gate and observer, whose work must not be dropped during an outage.
 * - `api`: fails fast (no offline queue, 1 s command timeout) so HTTP answers 503 instead of hanging:
 *   within about a second, inside an orchestrator's default probe timeout (Kubernetes: 1 s).
 */
import { Redis, type RedisOptions } from 'ioredis';
import type { Logger } from 'pino';

export type RedisProfile = 'worker' | 'api';

export function createRedis(url: string, profile: RedisProfile, log: Logger, name: string): Redis {
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
  const client = new Redis(url, opts);
  let down = false;
  client.on('error', (err: Error) => {
    if (!down) log.warn({ err: err.message, client: name }, 'Redis unreachable at REDIS_URL; retrying with backoff');
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
