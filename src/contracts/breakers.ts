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

/** Count windows keep one entry per call in the breaker's state: bounded so the state stays small. */
export const MAX_COUNT_WINDOW = 10_000;

export const BreakerConfigSchema = z
  .strictObject({
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
  /**
   * Longest time in half-open without a verdict: probes whose outcome never comes (an event lost, a job
   * still running) reopen the breaker then, and it probes afresh after the open time.
   */
  halfOpenMaxMs: ms(100).default(60_000),
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
  })
  // Settings that would silently switch a rule off, or contradict each other, are refused with the values named.
  .superRefine((b, ctx) => {
    const issue = (path: Array<string | number>, message: string) => ctx.addIssue({ code: 'custom', path, message });
    if (b.window.type === 'count' && b.window.size > MAX_COUNT_WINDOW) {
      issue(['window', 'size'], `a count window holds at most ${MAX_COUNT_WINDOW} calls (it is kept in the breaker's state), got ${b.window.size}`);
    }
    if (b.window.type === 'count' && b.window.size < b.minimumCalls) {
      issue(['window', 'size'], `a count window of ${b.window.size} calls never holds minimumCalls (${b.minimumCalls}): the failure-rate rule could never trip; make the window at least ${b.minimumCalls} or lower minimumCalls`);
    }
    if ((b.slowCallMs === undefined) !== (b.slowCallRateThreshold === undefined)) {
      issue([b.slowCallMs === undefined ? 'slowCallMs' : 'slowCallRateThreshold'], 'the slow-call rule needs both slowCallMs and slowCallRateThreshold; with one alone it would be off');
    }
    if (b.maxOpenMs < b.openMs) issue(['maxOpenMs'], `maxOpenMs (${b.maxOpenMs}) is below openMs (${b.openMs}): the first open period would already be cut`);
  });

export type BreakerSettings = z.output<typeof BreakerConfigSchema>;
