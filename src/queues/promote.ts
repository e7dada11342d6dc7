/**
 * Adds jobs leased out of the waiting place where they go, then ends their leases: admitted jobs to
 * their execution queue (idempotent: derived id and deduplication key), refused ones to the
 * dead-letter queue. Shared by the scheduler and the API's replay and drain of held jobs.
 *
 * Each job stands alone: one whose add BullMQ refuses (or that fails for a reason of its own on
 * every attempt) gives its admission back and is dead-lettered (`exec-refused`) while the others are
 * added and confirmed; after an outage the unconfirmed ones keep their leases and are added again
 * when the leases expire.
 */
import { readPath } from '../core/paths';
import type { RejectionCode } from '../errors';
import type { Metrics } from '../observability/metrics';
import { decodePayload } from '../redis/codec';
import type { Governance } from '../redis/governance';
import { parseJobKey } from '../redis/keys';
import { addDeadLetter } from './dead-letter';
import { addExecJob, addExecJobs, bullmqRefusal, EXEC_ADD_ATTEMPTS, isJobFailure } from './exec-add';
import { execOptions } from './exec-options';
import { type Tracing, withTraceContext } from '../observability/tracing';
import type { Topology } from './topology';

export interface PromoteOptions {
  retentionMs: number;
  leaseMs: number;
  tenantIdPath: string;
  metrics?: Metrics;
  beforeConfirm?: () => Promise<void> | void;
  /** Spans for the admissions (`tollgate.admit`), continuing each job's trace, when tracing is on. */
  tracing?: Tracing;
}

export async function promoteLeased(
  topology: Topology,
  governance: Governance,
  downstream: string,
  admitted: ReadonlyArray<{ id: string; payload: string }>,
  opts: PromoteOptions,
): Promise<void> {
  if (admitted.length === 0) return;
  const queue = topology.execQueue(downstream);
  const added: string[] = [];
  const failed: Array<{ id: string; payload: string; message: string; attempts: number }> = [];
  let outage: unknown;
  const jobs = admitted.map(({ id, payload }) => {
    const p = decodePayload(payload);
    return { id, payload, p, execOpts: execOptions(id, p.opts, opts.retentionMs) };
  });
  const failedAdd = (j: (typeof jobs)[number], err: unknown) => {
    const refusal = bullmqRefusal(queue, j.p.name, j.p.data, j.execOpts);
    if (refusal !== undefined) failed.push({ id: j.id, payload: j.payload, message: refusal, attempts: 1 });
    else if (isJobFailure(err)) failed.push({ id: j.id, payload: j.payload, message: (err as Error).message, attempts: EXEC_ADD_ATTEMPTS });
    else outage = err;
  };
  const addedNow = (j: (typeof jobs)[number]) => {
    added.push(j.id);
    opts.metrics?.ingressToExecSeconds.observe({ downstream }, Math.max(0, Date.now() - j.p.addedAt) / 1000);
  };
  const tracing = opts.tracing;
  if (tracing?.enabled) {
    // Each add in a span of its own, continuing the job's trace.
    await Promise.all(
      jobs.map(async (j) => {
        const ingressJobId = parseJobKey(j.id).ingressJobId;
        try {
          await tracing.span('tollgate.admit', j.p.opts, { 'messaging.message.id': ingressJobId, 'tollgate.downstream': downstream }, (metadata) => {
            j.execOpts = withTraceContext(j.execOpts, metadata);
            return addExecJob(topology, queue, j.p.name, j.p.data, j.execOpts, ingressJobId);
          });
          addedNow(j);
        } catch (err) {
          failedAdd(j, err);
        }
      }),
    );
  } else {
    // One script call for the batch (a flow's child, or a job BullMQ refuses, is added alone).
    const errors = await addExecJobs(
      topology,
      queue,
      jobs.map((j) => ({ name: j.p.name, data: j.p.data, opts: j.execOpts, ingressJobId: parseJobKey(j.id).ingressJobId })),
    );
    jobs.forEach((j, i) => (errors[i] === undefined ? addedNow(j) : failedAdd(j, errors[i])));
  }
  await opts.beforeConfirm?.();
  await governance.confirm(downstream, added, 'exec');
  for (const attempts of new Set(failed.map((f) => f.attempts))) {
    const batch = failed.filter((f) => f.attempts === attempts);
    const outcomes = await governance.abandon(
      downstream,
      batch.map((f) => ({ key: f.id, code: 'TG_ERR_EXEC_REFUSED' as const, message: `${queue.name} refused the job: ${f.message}` })),
      { attempts, leaseMs: opts.leaseMs },
    );
    // Given up: dead-lettered now. Otherwise the lease stays, and its expiry brings the job back.
    const givenUp = batch.filter((_, i) => outcomes[i] === 'given-up');
    await deadLetterLeased(
      topology,
      governance,
      downstream,
      opts.tenantIdPath,
      givenUp.map((f) => ({ id: f.id, payload: f.payload, code: 'TG_ERR_EXEC_REFUSED' as const, message: `${queue.name} refused the job: ${f.message}` })),
    );
  }
  if (outage !== undefined) throw outage;
}

export async function deadLetterLeased(
  topology: Topology,
  governance: Governance,
  downstream: string,
  tenantIdPath: string,
  refused: ReadonlyArray<{ id: string; payload: string; message: string; code: RejectionCode }>,
): Promise<void> {
  if (refused.length === 0) return;
  await Promise.all(
    refused.map(async ({ id, payload, message, code }) => {
      const p = decodePayload(payload);
      const tenantId = readPath({ data: p.data }, tenantIdPath);
      await addDeadLetter(topology, {
        key: id,
        ingressJobId: parseJobKey(id).ingressJobId,
        code,
        message,
        downstream,
        ...(typeof tenantId === 'string' ? { tenantId } : {}),
        job: { name: p.name, data: p.data, opts: p.opts as Record<string, unknown> },
      });
    }),
  );
  await governance.confirm(
    downstream,
    refused.map((r) => r.id),
    'dead-letter',
  );
  // Ended: their simple-mode deduplication ids stop holding (a missed one is ended by the observer's sweep).
  await topology.releaseHeldDedup(refused.map((r) => r.id));
}
