/**
 * Adding an admitted job to its execution queue, and telling why an add failed: BullMQ refusing the
 * job itself (its options: it would refuse every attempt), a failure of this job's own (a script error
 * on its arguments: counted, given up after a few), or an outage (Redis unreachable, out of memory,
 * read-only, loading: retried for as long as it lasts, never counted against the job).
 */
import { Backoffs, Job, optsEncodeMap, type JobsOptions, type Queue } from 'bullmq';
import { scriptKeys } from '../redis/script-keys';
import { scriptsFor } from '../redis/scripts';
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

/** One execution job to add: `rawData` is its data as stored in ingress (JSON), passed on unparsed. */
export interface ExecJob {
  name: string;
  data: unknown;
  rawData?: string;
  opts: JobsOptions;
  ingressJobId: string;
  /** Runs once the job is added, before a flow's child is handed its parent (a failpoint). */
  afterAdd?: () => Promise<void> | void;
}

/** The options as BullMQ's Job constructor makes them: `attempts` 0 unless given, the backoff normalized. */
function jobOpts(opts: JobsOptions): Record<string, unknown> {
  const { repeatJobKey: _r, ...rest } = opts as JobsOptions & { repeatJobKey?: string };
  return { attempts: 0, ...rest, backoff: opts.backoff === undefined ? undefined : Backoffs.normalize(opts.backoff) };
}

/**
 * The options as BullMQ stores them in the job hash: the Job constructor's form (jobOpts) in the
 * short form of BullMQ's Redis backend (optsAsJSON: `de`, `kl`, `tm`, `omc` …), JSON-encoded for
 * addExec-11.lua.
 */
export function storedJobOpts(opts: JobsOptions): string {
  const out: Record<string, unknown> = {};
  const encode = optsEncodeMap as Record<string, string>;
  for (const [k, v] of Object.entries(jobOpts(opts))) {
    if (v === undefined) continue;
    if (k in encode) out[encode[k]!] = v;
    else if (k === 'telemetry') {
      const t = v as { metadata?: string; omitContext?: boolean };
      if (t.metadata !== undefined) out.tm = t.metadata;
      if (t.omitContext !== undefined) out.omc = t.omitContext;
    } else out[k] = v;
  }
  return JSON.stringify(out);
}

/** BullMQ's own check of a job's options (Job.validateOptions) without building a Job: true if it accepts them. */
function accepted(name: string, rawData: string, opts: JobsOptions): boolean {
  const validate = (Job.prototype as unknown as { validateOptions(this: object, d: { data: string }): void }).validateOptions;
  try {
    validate.call({ name, opts: jobOpts(opts), parentKey: undefined }, { data: rawData });
    return true;
  } catch {
    return false;
  }
}

/**
 * Adds jobs to one execution queue: the plain ones (no parent) in one script call written with
 * BullMQ's own add functions (addExec-11.lua), a flow's child through Queue.add. Per job: undefined
 * once added, or the error its add met (an outage's error for every job it stopped). A script call
 * that fails for a reason of its jobs' own (one job BullMQ's Lua cannot take) is retried job by job
 * through Queue.add, so one bad job fails alone.
 */
export async function addExecJobs(topology: Topology, queue: Queue, jobs: readonly ExecJob[]): Promise<unknown[]> {
  const errors: unknown[] = new Array(jobs.length).fill(undefined);
  const one = async (j: ExecJob, i: number) => {
    try {
      await addExecJob(topology, queue, j.name, j.data, j.opts, j.ingressJobId, j.afterAdd);
    } catch (err) {
      errors[i] = err;
    }
  };
  // A flow's child, or a job BullMQ would refuse (Queue.add then says why), takes Queue.add alone.
  const raw = jobs.map((j) => j.rawData ?? JSON.stringify(j.data === undefined ? {} : j.data));
  const plain = jobs.flatMap((j, i) => (!j.opts.parent && j.opts.jobId !== undefined && accepted(j.name, raw[i]!, j.opts) ? [i] : []));
  const alone = new Set(jobs.keys());
  for (const i of plain) alone.delete(i);
  const pending: Array<Promise<unknown>> = [...alone].map((i) => one(jobs[i]!, i));
  if (plain.length > 0) {
    const args: Array<string | number> = [queue.keys['']!, Date.now()];
    for (const i of plain) {
      const j = jobs[i]!;
      args.push(j.opts.jobId!, j.name, raw[i]!, storedJobOpts(j.opts));
    }
    let added = false;
    try {
      await scriptsFor(topology.connection).addExec(scriptKeys.addExec(topology.keys, queue.name), args);
      added = true;
    } catch (err) {
      if (isJobFailure(err)) pending.push(...plain.map((i) => one(jobs[i]!, i)));
      else for (const i of plain) errors[i] = err;
    }
    if (added) {
      for (const i of plain) {
        pending.push(
          Promise.resolve()
            .then(() => jobs[i]!.afterAdd?.())
            .catch((err: unknown) => (errors[i] = err)),
        );
      }
    }
  }
  await Promise.all(pending);
  return errors;
}
