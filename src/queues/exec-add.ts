/**
 * Adding an admitted job to its execution queue, and telling why an add failed: BullMQ refusing the
 * job itself (its options: it would refuse every attempt), a failure of this job's own (a script error
 * on its arguments: counted, given up after a few), or an outage (Redis unreachable, out of memory,
 * read-only, loading: retried for as long as it lasts, never counted against the job).
 */
import { Job, type JobsOptions, type Queue } from 'bullmq';
import type { Topology } from './topology';

/** How many failed adds of a job's own a job gets before it is dead-lettered (`exec-refused`). */
export const EXEC_ADD_ATTEMPTS = 3;

/** BullMQ's own check of a job's options (Job.validateOptions), run before anything is sent. */
class OptionsCheck extends Job {
  check(): void {
    this.validateOptions(this.asJSON());
  }
}

/** The message BullMQ would refuse this add with, or undefined if it accepts it. No I/O. */
export function bullmqRefusal(queue: Queue, name: string, data: unknown, opts: JobsOptions): string | undefined {
  try {
    new OptionsCheck(queue, name, data, opts, opts.jobId).check();
    return undefined;
  } catch (err) {
    return err instanceof Error ? err.message : String(err);
  }
}

/** Redis answers that say the server cannot take writes now, not that this job is wrong. */
const OUTAGE_REPLY = /^(OOM|READONLY|LOADING|BUSY|MASTERDOWN|CLUSTERDOWN|TRYAGAIN|NOSCRIPT|MOVED|ASK|NOREPLICAS|EXECABORT|NOAUTH)\b/;

/**
 * True for a failure of the job's own: an error Redis answered for this call (other than an outage),
 * a type or range error raised while encoding it, or BullMQ finding a flow child's parent gone. Everything else (a closed connection, a timeout,
 * too many retries) is an outage.
 */
export function isJobFailure(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  // BullMQ's answer for a flow's child whose parent was removed meanwhile: it would answer so every time.
  if (/^Missing key for parent job /.test(err.message)) return true;
  if (err.name === 'ReplyError') return !OUTAGE_REPLY.test(err.message);
  return err instanceof TypeError || err instanceof RangeError;
}

/**
 * Adds an execution job (idempotent: derived id, and a deduplication key or, for a flow's child, its
 * parent's record of it), then, for a flow's child, hands the parent's dependency over from the ingress
 * job to it (detachChild-1.lua). `afterAdd` runs between the two (a failpoint).
 */
export async function addExecJob(
  topology: Topology,
  queue: Queue,
  name: string,
  data: unknown,
  opts: JobsOptions,
  ingressJobId: string,
  afterAdd?: () => Promise<void> | void,
): Promise<void> {
  if (!opts.parent || !(await topology.childEnded(opts.parent, queue, opts.jobId!))) await queue.add(name, data, opts);
  await afterAdd?.();
  if (opts.parent) await topology.detachIngressChild(opts.parent, ingressJobId);
}
