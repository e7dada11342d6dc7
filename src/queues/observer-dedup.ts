/**
 * The observer's part in deduplication: the deduplication keys of execution jobs it released are
 * shortened to the window in which a repeated add can still be in flight, and their simple-mode ingress
 * deduplication holds ended, in the release's round trip; a sweep ends the holds that were missed.
 */
import type { Redis } from 'ioredis';
import { isClusterClient } from '../redis/connection';
import { execJobId } from '../redis/keys';
import { endHoldsOfEnded } from './dedup-holds';
import type { ObserverDeps } from './observer';

/**
 * Shortens the deduplication keys of execution jobs just released to the window in which a repeated
 * add can still be in flight: a gate that met the record as `admitted` just before the release (its
 * claim taken back after another gate died) adds again a moment later, and only the key makes that add
 * a no-op once the execution job is removed. After the window the record's outcome says so for good,
 * and the key would only take memory for its full TTL (`retention.decisionSeconds`). Deleting it at
 * once let such a late add run the job twice (seen in the kill -9 suite).
 *
 * The pipeline's connection must have the scripts loaded (scriptsFor): it runs releaseDedup-1.lua.
 * On Redis Cluster the ingress holds are in ingress's slot, not the execution queue's, and a pipeline
 * stays in one slot: the release of the holds is then returned as a call of its own, to run after the
 * pipeline (undefined on a single Redis, where it rides in the pipeline).
 */
export function forgetDeduplication(
  deps: Pick<ObserverDeps, 'topology' | 'config' | 'redis'>,
  pipe: ReturnType<Redis['pipeline']>,
  downstream: string,
  keys: readonly string[],
): (() => Promise<unknown>) | undefined {
  const queue = deps.topology.execQueue(downstream);
  const { gate, scheduler } = deps.config;
  const window = 2 * Math.max(gate.lockDurationMs, scheduler.leaseMs) + 1000;
  for (const key of keys) pipe.pexpire(queue.toKey(`de:${execJobId(key)}`), window, 'LT');
  // Their simple-mode ingress deduplication ids stop holding, in the same round trip (releaseDedup-1.lua;
  // a hold missed here is ended by the sweep).
  if (keys.length === 0) return undefined;
  const args = [deps.topology.heldDedupKey, deps.topology.ingress.toKey(''), ...keys];
  if (isClusterClient(deps.redis)) {
    const onClient = deps.redis as unknown as Record<string, (...a: Array<string | number>) => Promise<unknown>>;
    return () => onClient.tg_releaseDedup!(...args);
  }
  const withScripts = pipe as unknown as Record<string, (...a: Array<string | number>) => unknown>;
  withScripts.tg_releaseDedup!(...args);
  return undefined;
}

/**
 * Ends holds of simple-mode deduplication ids whose jobs are no longer in flight (their record says
 * they ended, or is gone) but whose hold was not ended with them (a call that failed, an observer
 * that died in between): without this, such an id would refuse every later job for good.
 */
export async function sweepHeldDedup(deps: Pick<ObserverDeps, 'redis' | 'topology' | 'governance'>): Promise<number> {
  const { redis } = deps;
  const held = deps.topology.heldDedupKey;
  let cursor = '0';
  let ended = 0;
  do {
    const [next, flat] = await redis.hscan(held, cursor, 'COUNT', 500);
    cursor = next;
    const jobKeys = flat.filter((_, i) => i % 2 === 0);
    if (jobKeys.length === 0) continue;
    ended += await endHoldsOfEnded(deps.topology, deps.governance, jobKeys);
  } while (cursor !== '0');
  return ended;
}
