/**
 * The KEYS of each script, in its header's order: one builder per script from the layout in keys.ts
 * (BullMQ's queue-keys.ts and its `*Args` builders are the model). Callers pass what a builder returns;
 * the script derives the rest (records, quota states, flows) from the governance prefix, in the same
 * hash tag. For the ingress scripts, `queue` is the BullMQ queue's name under `Keys.prefix`, and BullMQ's
 * own keys of it (wait, prioritized, meta …) come from BullMQ's QueueKeys, not spelled here.
 */
import { QueueKeys } from 'bullmq';
import type { Keys } from './keys';

/** BullMQ's own keys of a queue, as BullMQ computes them (cached: the claim runs per batch). */
const bullmqKeys = new Map<string, Record<string, string>>();
function bullKeysOf(k: Keys, queue: string): Record<string, string> {
  const id = `${k.prefix}\n${queue}`;
  let keys = bullmqKeys.get(id);
  if (!keys) {
    keys = new QueueKeys(k.prefix).getKeys(queue);
    bullmqKeys.set(id, keys);
  }
  return keys;
}
export const scriptKeys = {
  intake: (k: Keys, downstream: string) => [k.inflight(downstream)] as [inflight: string],
  enqueue: (k: Keys, downstream: string) => [k.inflight(downstream)] as [inflight: string],
  admitWaiting: (k: Keys, downstream: string) => [k.inflight(downstream)] as [inflight: string],
  releaseHeld: (k: Keys, downstream: string) => [k.inflight(downstream)] as [inflight: string],
  release: (k: Keys, downstream: string) => [k.inflight(downstream)] as [inflight: string],
  abandon: (k: Keys, downstream: string) => [k.inflight(downstream)] as [inflight: string],
  confirm: (k: Keys, downstream: string, to: 'exec' | 'dead-letter') => [k.downstream(downstream, to === 'exec' ? 'promoting' : 'deadLetterPending')] as [promoting: string],
  /** Scripts that touch many downstreams or tenants declare the slot with one key of it. */
  wake: (k: Keys) => [k.throttles()] as [slot: string],
  explain: (k: Keys) => [k.throttles()] as [slot: string],
  adopt: (k: Keys) => [k.throttles()] as [slot: string],
  deadLetter: (k: Keys, downstream: string | undefined) => [k.stats(downstream)] as [slot: string],
  restoreStats: (k: Keys, downstream: string | undefined) => [k.stats(downstream), k.statsRestored(downstream)] as [stats: string, restored: string],
  restoreUsage: (k: Keys) => [k.usageRestored()] as [marker: string],
  advanceVersion: (k: Keys) => [k.mirrorVersion()] as [version: string],
  breakerCas: (k: Keys, downstream: string) => [k.downstream(downstream, 'breaker'), k.breakerOutbox(), k.breakerTransitionCounts()] as [breaker: string, outbox: string, transitions: string],
  evaluateAlerts: (k: Keys) => [k.alertsOpen(), k.alertsSince(), k.alertEvents()] as [open: string, since: string, events: string],
  detectGap: (k: Keys, queue: string) => [k.events(queue)] as [stream: string],
  ensureGroup: (k: Keys, queue: string) => [k.events(queue)] as [stream: string],
  claimIngress: (k: Keys, queue: string) => {
    const b = bullKeysOf(k, queue);
    return [b.wait!, b.prioritized!, b.delayed!, b.meta!, b.marker!, b.events!, b.pc!, k.ingressClaims(queue)] as [
      wait: string,
      prioritized: string,
      delayed: string,
      meta: string,
      marker: string,
      events: string,
      pc: string,
      claims: string,
    ];
  },
  addExec: (k: Keys, queue: string) => {
    const b = bullKeysOf(k, queue);
    return [b.wait!, b.paused!, b.meta!, b.id!, b.completed!, b.delayed!, b.active!, b.events!, b.marker!, b.prioritized!, b.pc!] as [
      wait: string,
      paused: string,
      meta: string,
      id: string,
      completed: string,
      delayed: string,
      active: string,
      events: string,
      marker: string,
      prioritized: string,
      pc: string,
    ];
  },
  finishIngress: (k: Keys, queue: string) => {
    const b = bullKeysOf(k, queue);
    return [k.ingressClaims(queue), b.events!, b.meta!, b.wait!, b.prioritized!, k.ingressHeldDedup(queue)] as [
      claims: string,
      events: string,
      meta: string,
      wait: string,
      prioritized: string,
      heldDedup: string,
    ];
  },
  releaseDedup: (k: Keys, ingressQueue: string) => [k.ingressHeldDedup(ingressQueue)] as [held: string],
  /** A flow parent's key is BullMQ's (`<queue key prefix>:<id>`), given as BullMQ names it in the child's options. */
  detachChild: (_k: Keys, parentKey: string) => [`${parentKey}:dependencies`] as [dependencies: string],
} as const;
