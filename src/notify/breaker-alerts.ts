/**
 * Breaker transitions as alert events: leaving closed opens the downstream's breaker alert, every
 * later transition (half-open, open again, forced) changes it, closing resolves it. Each transition
 * is recorded once (breaker_transitions is unique on downstream and generation), in the same
 * transaction as its alert event, so a transition alerts exactly once.
 */
import type { Transition } from '../core/breaker';
import { alertKey } from '../core/alerts';
import { recordAlertEvent, type AlertEventInput, type Target } from '../db/alerts';
import type { Tx } from '../db/quotas';

export function breakerAlertEvent(t: Transition & { downstream: string }): AlertEventInput {
  return {
    eventId: `evt_brk_${t.downstream}_${t.gen}`,
    sourceEvent: `breaker:${t.downstream}:${t.gen}`,
    type: t.to === 'closed' ? 'resolved' : t.from === 'closed' ? 'opened' : 'changed',
    key: alertKey('breaker', t.downstream),
    kind: 'breaker',
    downstream: t.downstream,
    value: t.counters.failures,
    detail: {
      from: t.from,
      to: t.to,
      reason: t.reason,
      gen: t.gen,
      actor: t.actor,
      forced: t.forced ?? null,
      ...(t.openUntil !== undefined ? { openUntil: new Date(t.openUntil).toISOString() } : {}),
      counters: t.counters,
    },
    at: t.at,
  };
}

/** Records the alert events of newly written transitions (oldest first); returns what was recorded. */
export async function recordBreakerAlerts(
  tx: Tx,
  transitions: ReadonlyArray<Transition & { downstream: string }>,
  targets: readonly Target[],
): Promise<Array<{ kind: string; type: string; notifications: number }>> {
  const out = [];
  const ordered = [...transitions].sort((a, b) => (a.downstream === b.downstream ? a.gen - b.gen : a.downstream < b.downstream ? -1 : 1));
  for (const t of ordered) {
    const r = await recordAlertEvent(tx, breakerAlertEvent(t), targets);
    if (r) out.push({ kind: r.alert.kind, type: r.type, notifications: r.notifications });
  }
  return out;
}
