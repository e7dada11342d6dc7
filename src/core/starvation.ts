/**
 * The starvation rule, one for the observer's warning and the starvation alert: a tenant queued for
 * service (waiting work, eligible) is starving once it has gone `boundMs` (`observer.starvationMs`)
 * without an admission since it was last served or became eligible.
 */
export function isStarving(since: number, now: number, boundMs: number): boolean {
  return now - since >= boundMs;
}
