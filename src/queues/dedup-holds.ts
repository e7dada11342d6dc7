/**
 * Ending the holds of simple-mode deduplication ids (finishIngress-6.lua makes them, releaseDedup-1.lua
 * ends them) for jobs that are no longer in flight, by their decision records: used right after a
 * finish (a job can end before its ingress job does) and by the observer's sweep (holds a crash left).
 */
import type { Governance } from '../redis/governance';
import type { Topology } from './topology';

/** Record states of a job still in flight: its deduplication id holds. */
export const IN_FLIGHT_STATES: ReadonlySet<string> = new Set(['admitted', 'waiting', 'shed']);

/** Ends the holds of those of `keys` (job keys) whose record says they ended, or is gone; returns how many. */
export async function endHoldsOfEnded(topology: Topology, governance: Governance, keys: readonly string[]): Promise<number> {
  if (keys.length === 0) return 0;
  const states = await governance.reads.recordStates(keys);
  return topology.releaseHeldDedup(keys.filter((_, i) => !IN_FLIGHT_STATES.has(states[i] ?? '')));
}
