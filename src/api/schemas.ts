/** Zod schemas of API responses: they document the API (OpenAPI) and are checked in tests. */
import { z } from 'zod';

export const JobLocationSchema = z
  .object({
    id: z.string().describe('Ingress job id'),
    place: z.enum(['ingress', 'waiting', 'exec', 'dead-letter']).describe('Where the job is now'),
    state: z
      .string()
      .describe('BullMQ state in that place (waiting, active, completed, failed, ...), `removed`; in ingress also `claimed` (a gate is deciding it); in the waiting place: eligible, timer or parked'),
    queue: z.string(),
    jobId: z.string().describe('Job id in that queue (execution and dead-letter ids are `tg-<ingress id>`)'),
    tenantId: z.string().optional(),
    downstream: z.string().optional(),
    decision: z
      .object({
        outcome: z.enum(['admitted', 'dead-lettered']),
        at: z.string().describe('ISO time of the decision'),
        reason: z.string().optional().describe('Dead-letter reason (docs/errors.md)'),
        code: z.string().optional(),
        message: z.string().optional(),
      })
      .optional(),
    finished: z
      .object({ outcome: z.enum(['completed', 'failed', 'vanished']), at: z.string() })
      .optional()
      .describe('Set once the observer saw the execution job end'),
    waiting: z
      .object({
        since: z.string(),
        reason: z.enum(['capacity', 'rate', 'concurrency', 'period', 'paused', 'throttled', 'share', 'borrow', 'breaker-open', 'breaker-half-open']).or(z.string()),
        until: z.string().optional().describe('When it will be looked at again, for time-based reasons'),
        position: z.number().int().optional().describe("1-based position in its tenant's waiting order on the downstream"),
        estimatedAdmissionAt: z.string().optional().describe("Estimate from the hold's end and the tenant's recent admission rate"),
      })
      .optional()
      .describe('Set in the waiting place: what holds the job'),
  })
  .meta({ id: 'JobLocation' });

const Counts = z.record(z.string(), z.number().int()).describe('Job counts by BullMQ state');

export const QueuesOverviewSchema = z
  .object({
    ingress: z.object({ queue: z.string(), counts: Counts }),
    exec: z.array(
      z.object({
        downstream: z.string(),
        queue: z.string(),
        capacity: z.number().int(),
        inFlight: z.number().int().describe('Admitted jobs not yet finished'),
        waiting: z.number().int().describe('Jobs in the waiting place of this downstream'),
        counts: Counts,
      }),
    ),
    deadLetter: z.object({ queue: z.string(), counts: Counts }),
  })
  .meta({ id: 'QueuesOverview' });

export const HealthSchema = z.object({ status: z.literal('ok') });

export const ReadinessSchema = z
  .object({
    status: z.enum(['ready', 'not-ready']),
    checks: z.record(z.string(), z.object({ ok: z.boolean(), detail: z.string().optional() })),
  })
  .meta({ id: 'Readiness' });
