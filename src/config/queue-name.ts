/**
 * Queue names: characters from [A-Za-z0-9._-], with at most one hash tag (`{exec.scanner}`), which on
 * Redis Cluster puts every key of the queue in one slot as BullMQ needs (README, Scaling out).
 */
import { z } from 'zod';

export const QUEUE_NAME = /^(?=.{1,100}$)[A-Za-z0-9._-]*(\{[A-Za-z0-9._-]+\})?[A-Za-z0-9._-]*$/;

export const queueName = z.string().regex(QUEUE_NAME, 'must be 1-100 characters from [A-Za-z0-9._-], with at most one hash tag such as {exec.scanner}');

/** The hash tag of a queue name (what Redis Cluster hashes), or undefined when it has none. */
export function hashTagOf(queue: string): string | undefined {
  return /\{([^{}]+)\}/.exec(queue)?.[1];
}
