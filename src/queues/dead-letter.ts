/**
 * Adding a refused job to the dead-letter queue: the envelope (why, and the original job as the
 * producer sent it) and the idempotent add (the job id derives from the ingress id, so a repeated add
 * is a no-op; a later job reusing the ingress id has a job key of its own, so it gets a dead-letter
 * job of its own).
 *
 * Sizes are bounded (`limits`): data over `maxPayloadBytes` is kept as an excerpt of its first
 * `deadLetterExcerptBytes` bytes with its size and SHA-256, a name over `maxJobNameLength` as its
 * first characters with its length and SHA-256 (such a job cannot be re-driven: its original is
 * gone), and the queue keeps the newest `deadLetterMaxJobs` jobs: each add past that removes the oldest.
 */
import { createHash } from 'node:crypto';
import type { Queue } from 'bullmq';
import type { Config } from '../config/file';
import { ERRORS, type RejectionCode } from '../errors';
import { execJobId } from '../redis/keys';
import type { Topology } from './topology';

/** What remains of data too large to keep: its first bytes (of its JSON), its size and hash. */
export interface DataExcerpt {
  /** The first `limits.deadLetterExcerptBytes` bytes (UTF-8) of the data's JSON, cut at a character boundary. */
  excerpt: string;
  /** Size of the data's JSON in bytes (UTF-8). */
  bytes: number;
  /** SHA-256 (hex) of the data's JSON (`JSON.stringify(data)`, UTF-8). */
  sha256: string;
}

/** What remains of a name too long to keep: `job.name` is its first characters. */
export interface NameTruncation {
  /** Its length in characters (UTF-16 code units, JavaScript's `length`). */
  length: number;
  /** SHA-256 (hex) of the whole name (UTF-8). */
  sha256: string;
}

/** The original job as the producer sent it, within the size limits. */
export interface DeadLetterJob {
  name: string;
  /** The original data; null when it was over `limits.maxPayloadBytes` (see `dataExcerpt`). */
  data: unknown;
  opts: Record<string, unknown>;
  dataExcerpt?: DataExcerpt;
  nameTruncated?: NameTruncation;
}

/** Envelope of a dead-lettered job: why, and the original job as the producer sent it. */
export interface DeadLetterData {
  reason: string;
  code: string;
  message: string;
  ingressJobId: string;
  tenantId?: string;
  downstream?: string;
  rejectedAt: string;
  job: DeadLetterJob;
}

export interface Refusal {
  /** The job key governance gave the job (src/redis/keys.ts): its dead-letter job id derives from it. */
  key: string;
  ingressJobId: string;
  code: RejectionCode;
  message: string;
  tenantId?: string;
  downstream?: string;
  /** The original job, whole: its name and data are bounded here. */
  job: { name: string; data: unknown; opts: Record<string, unknown> };
}

type SizeLimits = Pick<Config['limits'], 'maxPayloadBytes' | 'maxJobNameLength' | 'deadLetterExcerptBytes'>;

const sha256 = (s: string) => createHash('sha256').update(s, 'utf8').digest('hex');

/** The first `n` UTF-16 code units of `s`, without splitting a surrogate pair. */
function firstChars(s: string, n: number): string {
  if (s.length <= n) return s;
  const code = s.charCodeAt(n - 1);
  return s.slice(0, code >= 0xd800 && code <= 0xdbff ? n - 1 : n);
}

/** The first `maxBytes` bytes of `s` in UTF-8, cut at a character boundary. */
export function utf8Excerpt(s: string, maxBytes: number): string {
  // Every code unit is at least one byte, so the first maxBytes of them hold at least maxBytes bytes.
  const head = Buffer.from(firstChars(s, maxBytes), 'utf8');
  if (head.length <= maxBytes) return head.toString('utf8');
  let end = maxBytes;
  while (end > 0 && (head[end]! & 0xc0) === 0x80) end--; // back to the first byte of the cut character
  return head.subarray(0, end).toString('utf8');
}

/** The job as the dead-letter queue keeps it: whole when within the limits, else bounded (and marked). */
export function keptJob(job: Refusal['job'], limits: SizeLimits): DeadLetterJob {
  const out: DeadLetterJob = { name: job.name, data: job.data, opts: job.opts };
  if (job.name.length > limits.maxJobNameLength) {
    out.name = firstChars(job.name, limits.maxJobNameLength);
    out.nameTruncated = { length: job.name.length, sha256: sha256(job.name) };
  }
  const json = JSON.stringify(job.data) ?? 'null';
  // A string of n code units is n to 3n bytes: most data is told within the limit without counting.
  const bytes = json.length * 3 <= limits.maxPayloadBytes ? json.length : Buffer.byteLength(json, 'utf8');
  if (bytes > limits.maxPayloadBytes) {
    out.data = null;
    out.dataExcerpt = { excerpt: utf8Excerpt(json, limits.deadLetterExcerptBytes), bytes, sha256: sha256(json) };
  }
  return out;
}

/** Whether a dead-letter job holds its original job whole (so that a re-drive replays that job). */
export function isWhole(job: DeadLetterJob): boolean {
  return job.dataExcerpt === undefined && job.nameTruncated === undefined;
}

export async function addDeadLetter(topology: Topology, r: Refusal): Promise<void> {
  const limits = topology.config.limits;
  const job = keptJob(r.job, limits);
  const data: DeadLetterData = {
    reason: ERRORS[r.code].reason,
    code: r.code,
    message: r.message,
    ingressJobId: r.ingressJobId,
    ...(r.tenantId !== undefined ? { tenantId: r.tenantId } : {}),
    ...(r.downstream !== undefined ? { downstream: r.downstream } : {}),
    rejectedAt: new Date().toISOString(),
    job,
  };
  await topology.deadLetter.add(job.name, data, { jobId: execJobId(r.key) });
  await trimOldest(topology.deadLetter, limits.deadLetterMaxJobs);
}

/**
 * Removes the oldest dead-letter jobs past `max` (the queue's wait list holds them newest first).
 * Concurrent adders may pick the same oldest jobs; the queue then stays a few over `max` until the
 * next add, never more than the adds in flight.
 */
async function trimOldest(queue: Queue, max: number): Promise<void> {
  const excess = (await queue.getWaitingCount()) - max;
  if (excess <= 0) return;
  const oldest = await queue.getRanges(['wait'], 0, excess - 1, true);
  await Promise.all(oldest.map((id) => queue.remove(id)));
}
