/**
 * Adding a refused job to the dead-letter queue: the envelope (why, and the original job as the
 * producer sent it) and the idempotent add (the job id derives from the ingress id; dead-letter jobs
 * stay until ops remove them, so the id alone makes a repeated add a no-op; a later job reusing the
 * ingress id has a job key of its own, so it gets a dead-letter job of its own).
 */
import { ERRORS, type RejectionCode } from '../errors';
import { execJobId } from '../redis/keys';
import type { Topology } from './topology';

/** Envelope of a dead-lettered job: why, and the original job as the producer sent it. */
export interface DeadLetterData {
  reason: string;
  code: string;
  message: string;
  ingressJobId: string;
  tenantId?: string;
  downstream?: string;
  rejectedAt: string;
  job: { name: string; data: unknown; opts: Record<string, unknown> };
}

export interface Refusal {
  /** The job key governance gave the job (src/redis/keys.ts): its dead-letter job id derives from it. */
  key: string;
  ingressJobId: string;
  code: RejectionCode;
  message: string;
  tenantId?: string;
  downstream?: string;
  job: DeadLetterData['job'];
}

export async function addDeadLetter(topology: Topology, r: Refusal): Promise<void> {
  const data: DeadLetterData = {
    reason: ERRORS[r.code].reason,
    code: r.code,
    message: r.message,
    ingressJobId: r.ingressJobId,
    ...(r.tenantId !== undefined ? { tenantId: r.tenantId } : {}),
    ...(r.downstream !== undefined ? { downstream: r.downstream } : {}),
    rejectedAt: new Date().toISOString(),
    job: r.job,
  };
  await topology.deadLetter.add(r.job.name, data, { jobId: execJobId(r.key) });
}
