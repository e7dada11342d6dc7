/** Deletes every key under `<prefix>:` (SCAN + UNLINK, never KEYS). For demos, benchmarks and tests. */
import type { Redis } from 'ioredis';
import { isClusterClient } from './connection';

/**
 * The clients a SCAN must walk: the client itself on a single Redis; every master on a cluster (SCAN
 * has no key, so a cluster client sends it to any one node, which holds only its own slots' keys).
 */
export function scanTargets(redis: Redis): Redis[] {
  return isClusterClient(redis) ? (redis as unknown as { nodes(role: 'master'): Redis[] }).nodes('master') : [redis];
}

export async function deleteKeysWithPrefix(redis: Redis, prefix: string): Promise<number> {
  // On Redis Cluster, keys of different slots are deleted one by one (a multi-key UNLINK must stay
  // within one slot).
  const cluster = isClusterClient(redis);
  let deleted = 0;
  for (const node of scanTargets(redis)) {
    let cursor = '0';
    do {
      const [next, keys] = await node.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 5000);
      cursor = next;
      if (keys.length === 0) continue;
      if (cluster) deleted += (await Promise.all(keys.map((k) => redis.unlink(k)))).reduce((a, b) => a + b, 0);
      else deleted += await redis.unlink(...keys);
    } while (cursor !== '0');
  }
  return deleted;
}
