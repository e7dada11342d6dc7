/**
 * Adds jobs leased out of the waiting place where they go, then ends their leases: admitted jobs to
 * their execution queue (idempotent: derived id and deduplication key), refused ones to the
 * dead-letter queue. Shared by the scheduler and the API's replay and drain of held jobs.
 */
import { readPath } from '../core/paths';
import type { RejectionCode } from '../errors';
import type { Metrics } from '../observability/metrics';
import { decodePayload } from '../redis/codec';
import type { Governance } from '../redis/governance';
import { addDeadLetter } from './dead-letter';
import { execOptions } from './exec-options';
import type { Topology } from './topology';

export async function promoteLeased(
  topology: Topology,
  governance: Governance,
  downstream: string,
  admitted: ReadonlyArray<{ id: string; payload: string }>,
  opts: { retentionMs: number; metrics?: Metrics; beforeConfirm?: () => Promise<void> | void },
): Promise<void> {
  if (admitted.length === 0) return;
  const queue = topology.execQueue(downstream);
  await Promise.all(
    admitted.map(async ({ id, payload }) => {
      const p = decodePayload(payload);
      await queue.add(p.name, p.data, execOptions(id, p.opts, opts.retentionMs));
      opts.metrics?.ingressToExecSeconds.observe({ downstream }, Math.max(0, Date.now() - p.addedAt) / 1000);
    }),
  );
  await opts.beforeConfirm?.();
  await governance.confirm(
    downstream,
    admitted.map((a) => a.id),
    'exec',
  );
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
        ingressJobId: id,
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
}
