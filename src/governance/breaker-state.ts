/**
 * Applying the breaker state machine to a breaker's state in Redis (stored by Governance.breakers,
 * src/redis/breaker-store.ts): reading it, the compare-and-set loop that applies a step of the machine
 * (retried while others change it, so any number of observers and API processes agree), what a write
 * stores besides the state (the fields the gates' scripts read), and the announcement of the
 * transitions a write made (metrics, log, a wake for the schedulers).
 */
import type { BreakerSettings } from '../contracts/breakers';
import { INITIAL_BREAKER, type BreakerState, type Step, type Transition } from '../core/breaker';
import type { BreakerDeps } from './breakers';

/** What the breaker's compare-and-set stores: the state as JSON, and the fields the gates' scripts read. */
export function storedFields(s: BreakerState, settings: BreakerSettings) {
  return {
    json: JSON.stringify(s),
    st: s.state,
    gen: s.gen,
    observeOnly: settings.observeOnly,
    // Permits given back by probes whose outcome did not count go to other jobs (the gates' scripts count
    // admissions of this generation against this number).
    probes: settings.halfOpenProbes + (s.state === 'half-open' ? (s.probeReleased ?? 0) : 0),
    ...(s.closedAt !== undefined ? { closedAt: s.closedAt } : {}),
    rampMs: settings.replayRampMs,
    ...(s.openUntil !== undefined && s.state === 'open' ? { openUntil: s.openUntil } : {}),
  };
}

/** Applies steps of the state machine to a breaker's stored state (BreakerService creates one). */
export class BreakerStateApplier {
  constructor(private readonly deps: Pick<BreakerDeps, 'governance' | 'log' | 'metrics'>) {}

  async read(downstream: string): Promise<{ state: BreakerState; rev: number }> {
    const { json, rev } = await this.deps.governance.breakers.read(downstream);
    return { state: json ? (JSON.parse(json) as BreakerState) : INITIAL_BREAKER, rev };
  }

  /** The compare-and-set loop: the state the step was applied to, the state written, and its transitions. */
  async applyStep(downstream: string, settings: BreakerSettings, step: (s: BreakerState) => Step): Promise<{ before: BreakerState; after: BreakerState; transitions: Transition[] }> {
    for (let attempt = 0; attempt < 20; attempt++) {
      const { state, rev } = await this.read(downstream);
      const next = step(state);
      if (next.state === state && next.transitions.length === 0) return { before: state, after: state, transitions: [] };
      const s = next.state;
      const ok = await this.deps.governance.breakers.cas(
        downstream,
        rev,
        storedFields(s, settings),
        next.transitions.map((t) => ({ json: JSON.stringify({ downstream, ...t }), from: t.from, to: t.to })),
      );
      if (!ok) continue;
      if (next.transitions.length > 0) await this.announce(downstream, next.transitions);
      return { before: state, after: s, transitions: next.transitions };
    }
    throw new Error(`breaker of ${downstream}: state kept changing under 20 attempts to update it`);
  }

  private async announce(downstream: string, transitions: readonly Transition[]): Promise<void> {
    for (const t of transitions) {
      this.deps.metrics?.breakerTransitions.inc({ downstream, from: t.from, to: t.to });
      this.deps.log[t.to === 'open' ? 'warn' : 'info'](
        { downstream, from: t.from, to: t.to, reason: t.reason, gen: t.gen, ...(t.openUntil ? { openUntil: new Date(t.openUntil).toISOString() } : {}) },
        `breaker ${t.to}`,
      );
    }
    // Half-open lets probes through, closed lets held jobs replay: the schedulers must look again.
    if (transitions.some((t) => t.to !== 'open')) await this.deps.governance.publishWake([downstream]);
  }
}
