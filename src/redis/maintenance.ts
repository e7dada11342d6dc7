/** Deletes every key under `<prefix>:` (SCAN + UNLINK, never KEYS). For demos, benchmarks and tests. */
import type { Redis } from 'ioredis';

export async function deleteKeysWithPrefix(redis: Redis, prefix: string): Promise<number> {
  // On Redis Cluster, SCAN walks one node: every master is scanned, and keys of different slots are
  // deleted one by one (a multi-key UNLINK must stay within one slot).
  const cluster = (redis as unknown as { isCluster?: boolean; nodes?: (role: 'master') => Redis[] }).isCluster === true;
  const nodes = cluster ? (redis as unknown as { nodes(role: 'master'): Redis[] }).nodes('master') : [redis];
  let deleted = 0;
  for (const node of nodes) {
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
