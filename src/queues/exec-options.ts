/**
 * Options of the execution job the gate adds for an ingress job: the producer's retry and retention
 * options pass through; the id and deduplication key derive from the job key so that adding the
 * same job twice (after a gate died mid-promotion) is a no-op, even after the first copy finished
 * and was removed (BullMQ keeps a deduplication key with a TTL past the job's removal). The observer
 * shortens that key's TTL once it released the job, to the window in which a late repeated add may
 * still come (Observer.forgetDeduplication): after it, the record's outcome makes a repeated delivery a
 * no-op, and the key would only take memory.
 */
import type { JobsOptions } from 'bullmq';
import { execJobId } from '../redis/keys';

const PASS_THROUGH = [
  'attempts',
  'backoff',
  'priority',
  'lifo',
  'removeOnComplete',
  'removeOnFail',
  'keepLogs',
  'stackTraceLimit',
  'sizeLimit',
  // The producer's trace context (BullMQ telemetry: `metadata`, `omitContext`): the worker's span
  // continues the producer's trace.
  'telemetry',
  // A flow's child: the execution job becomes the parent's dependency in place of the ingress job
  // (the gate sets \`parent\` from the ingress job's), with BullMQ's rules for a child's failure.
  'parent',
  'failParentOnFailure',
  'continueParentOnFailure',
  'ignoreDependencyOnFailure',
  'removeDependencyOnFailure',
] as const satisfies ReadonlyArray<keyof JobsOptions>;

/** `key`: the job key governance gave the ingress job (src/redis/keys.ts). */
export function execOptions(key: string, producerOpts: JobsOptions, dedupTtlMs: number): JobsOptions {
  const id = execJobId(key);
  const opts: JobsOptions = { jobId: id };
  const src = producerOpts as Record<string, unknown>;
  const dst = opts as Record<string, unknown>;
  for (const k of PASS_THROUGH) if (src[k] !== undefined) dst[k] = src[k];
  // BullMQ refuses a deduplication key beside a parent: a flow child's repeated add is checked against
  // its parent instead (Topology.childEnded).
  if (!opts.parent) opts.deduplication = { id, ttl: dedupTtlMs };
  return opts;
}
