/**
 * The quota and throttle contracts (zod): the config file's default quota, the API's request bodies
 * and responses. One definition, so config, API, OpenAPI and storage agree.
 */
import { z } from 'zod';
import { MAX_RATE, MIN_RATE } from '../core/limits';
import { PERIODS } from '../core/periods';

/** Jobs (cost units) per second: from one per 11.6 days to a million (src/core/limits.ts). */
const rate = z.number().min(MIN_RATE).max(MAX_RATE);

const jobTypeGlob = z
  .string()
  .min(1)
  .max(200)
  .describe('Job-name glob: `*` any run of characters, `?` one character');

export const QuotaLimitsSchema = z
  .strictObject({
    rate: rate.optional().describe(`Average jobs per second, ${MIN_RATE} to ${MAX_RATE}`),
    burst: z.number().int().min(1).max(1_000_000).optional().describe('Jobs admissible at once at `rate` (default: ceil(rate), at least 1)'),
    maxConcurrent: z.number().int().min(1).max(1_000_000).optional().describe('Jobs admitted and not finished, at most'),
    periods: z
      .strictObject(Object.fromEntries(PERIODS.map((p) => [p, z.number().int().min(0).max(1e12).optional()])) as Record<(typeof PERIODS)[number], z.ZodOptional<z.ZodNumber>>)
      .optional()
      .describe('Jobs per UTC calendar hour, day and month'),
    onPeriodExceeded: z.enum(['wait', 'reject']).default('wait').describe('Past a period total: wait for the next window, or dead-letter the job (`quota-exceeded`)'),
    paused: z.boolean().default(false).describe('A paused quota admits nothing; its jobs wait'),
  })
  .superRefine((q, ctx) => {
    if (q.burst !== undefined && q.rate === undefined) ctx.addIssue({ code: 'custom', path: ['burst'], message: 'burst needs a rate' });
  });

export type QuotaLimitsInput = z.input<typeof QuotaLimitsSchema>;
export type QuotaLimitsParsed = z.output<typeof QuotaLimitsSchema>;

/** Narrowing of a tenant's quota: a job type, a downstream, both or neither (tenant-wide). */
export const QuotaSelectorSchema = z.strictObject({
  jobType: jobTypeGlob.optional(),
  downstream: z.string().min(1).max(63).optional(),
});

/** The limits of a quota as the API returns them (absent = not limited). */
export const QuotaLimitsView = z.object({
  rate: z.number().optional(),
  burst: z.number().optional(),
  maxConcurrent: z.number().optional(),
  periods: z.object({ hour: z.number().optional(), day: z.number().optional(), month: z.number().optional() }).optional(),
  onPeriodExceeded: z.enum(['wait', 'reject']),
  paused: z.boolean(),
});

export const QuotaSchema = QuotaLimitsView.extend({
  id: z.string().describe('`q<n>`'),
  tenantId: z.string(),
  jobType: z.string().optional(),
  downstream: z.string().optional(),
  createdAt: z.string(),
  updatedAt: z.string(),
}).meta({ id: 'Quota' });

export const ThrottleInputSchema = z
  .strictObject({
    tenantId: z.string().regex(/^[A-Za-z0-9._:@-]{1,128}$/).optional(),
    jobType: jobTypeGlob.optional(),
    action: z.enum(['pause', 'slow']).describe('pause: matching jobs wait; slow: matching jobs are limited to `rate` per second, all together'),
    rate: rate.optional().describe(`Jobs per second across everything the throttle matches, ${MIN_RATE} to ${MAX_RATE}`),
    burst: z.number().int().min(1).max(1_000_000).optional(),
    until: z.iso.datetime({ offset: true }).optional().describe('ISO time the throttle ends; absent: until removed'),
  })
  .superRefine((t, ctx) => {
    if (t.tenantId === undefined && t.jobType === undefined) {
      ctx.addIssue({ code: 'custom', path: ['tenantId'], message: 'a throttle needs tenantId, jobType or both' });
    }
    if (t.action === 'slow' && t.rate === undefined) ctx.addIssue({ code: 'custom', path: ['rate'], message: 'a slow throttle needs a rate' });
    if (t.action === 'pause' && (t.rate !== undefined || t.burst !== undefined)) {
      ctx.addIssue({ code: 'custom', path: ['rate'], message: 'a pause throttle takes no rate or burst' });
    }
  });

export const ThrottleSchema = z
  .object({
    id: z.string().describe('`t<n>`'),
    tenantId: z.string().optional(),
    jobType: z.string().optional(),
    action: z.enum(['pause', 'slow']),
    rate: z.number().optional(),
    burst: z.number().optional(),
    until: z.string().optional(),
    active: z.boolean().describe('false once `until` has passed'),
    createdAt: z.string(),
    createdBy: z.string(),
  })
  .meta({ id: 'Throttle' });
