/** The circuit breaker contract (zod): per-downstream configuration. */
import { z } from 'zod';
import { MAX_DURATION_MS } from '../core/limits';

/** A duration in ms, at most ten years (src/core/limits.ts: every computed instant stays a valid date). */
const ms = (min: number) => z.number().int().min(min).max(MAX_DURATION_MS);

const regex = z.string().refine((v) => {
  try {
    new RegExp(v);
    return true;
  } catch {
    return false;
  }
}, 'must be a valid regular expression');

export const BreakerConfigSchema = z.strictObject({
  enabled: z.boolean().default(true),
  /** Compute and record transitions without holding jobs. */
  observeOnly: z.boolean().default(false),
  window: z
    .strictObject({ type: z.enum(['count', 'time']).default('time'), size: ms(1).default(60_000) })
    .prefault({}),
  minimumCalls: z.number().int().min(1).max(1_000_000).default(10),
  failureRateThreshold: z.number().gt(0).max(1).default(0.5),
  consecutiveFailures: z.number().int().min(1).max(1_000_000).default(5),
  slowCallMs: ms(1).optional(),
  slowCallRateThreshold: z.number().gt(0).max(1).optional(),
  openMs: ms(10).default(10_000),
  maxOpenMs: ms(10).default(300_000),
  backoffMultiplier: z.number().min(1).max(100).default(2),
  jitter: z.number().min(0).lt(1).default(0.1),
  halfOpenProbes: z.number().int().min(1).max(10_000).default(3),
  /** Only failures whose error matches one of these count (default: all but the ignored). */
  countErrors: z.array(regex).default([]),
  /** Failures whose error ("Name: message") matches one of these never count. */
  ignoreErrors: z.array(regex).default(['^UnrecoverableError\\b', '^ValidationError\\b']),
  /** While open, poll this URL; move to half-open only once it answers 2xx. */
  healthUrl: z.url().optional(),
  healthIntervalMs: ms(50).default(2_000),
  healthTimeoutMs: ms(10).default(1_000),
  /** After closing, capacity ramps from the probe count to full over this long (held jobs replay gently). */
  replayRampMs: ms(0).default(30_000),
});

export type BreakerSettings = z.output<typeof BreakerConfigSchema>;
