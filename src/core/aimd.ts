/**
 * Adaptive capacity by AIMD (additive increase, multiplicative decrease), as TCP does with its window:
 * while completions are fast and clean and the capacity is actually used, raise it by a step each
 * interval, up to the configured ceiling; when the p90 admission-to-completion latency exceeds the
 * target, or too many jobs fail, cut it by a factor, down to the floor. Pure: the observer feeds it
 * the outcomes of each interval.
 */
export interface AimdConfig {
  floor: number;
  ceiling: number;
  targetLatencyMs: number;
  maxFailureRate: number;
  decreaseFactor: number;
  increaseStep: number;
  /** Fewer outcomes than this in an interval: no decision. */
  minSamples: number;
}

export interface Outcome {
  latencyMs: number;
  failed: boolean;
}

export type AimdDecision = { capacity: number; reason: 'latency' | 'failures' | 'increase' | 'hold' | 'too-few-samples'; p90?: number; failureRate?: number };

export function p90(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil(0.9 * sorted.length) - 1)]!;
}

/** `inUse`: cost units in flight now; capacity is raised only when demand presses against it. */
export function nextCapacity(current: number, outcomes: readonly Outcome[], inUse: number, cfg: AimdConfig): AimdDecision {
  const clamp = (v: number) => Math.min(cfg.ceiling, Math.max(cfg.floor, v));
  if (outcomes.length < cfg.minSamples) return { capacity: clamp(current), reason: 'too-few-samples' };
  const latency = p90(outcomes.map((o) => o.latencyMs));
  const failureRate = outcomes.filter((o) => o.failed).length / outcomes.length;
  if (failureRate > cfg.maxFailureRate) return { capacity: clamp(Math.floor(current * cfg.decreaseFactor)), reason: 'failures', p90: latency, failureRate };
  if (latency > cfg.targetLatencyMs) return { capacity: clamp(Math.floor(current * cfg.decreaseFactor)), reason: 'latency', p90: latency, failureRate };
  if (inUse >= current * 0.8) return { capacity: clamp(current + cfg.increaseStep), reason: 'increase', p90: latency, failureRate };
  return { capacity: clamp(current), reason: 'hold', p90: latency, failureRate };
}
