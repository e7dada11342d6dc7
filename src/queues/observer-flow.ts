/**
 * What the observer reports about the flow without changing it: samples of each downstream's counters
 * and levels for the dashboard's charts, and warnings about tenants with waiting work that is not
 * being served (starvation).
 */
import { isStarving } from '../core/starvation';
import { windowStats } from '../core/breaker';
import type { ObserverDeps } from './observer';
import type { StreamInfo } from './observer-events';

/**
 * Samples each downstream's flow for the dashboard's charts (GET /api/v1/flow): the cumulative admitted
 * and dead-lettered counters and the levels now. Every observer samples; the charts take the deltas
 * between samples, so more samples only mean a finer line.
 */
export async function sampleFlow(deps: Pick<ObserverDeps, 'governance' | 'config' | 'breakers'>, now: () => number): Promise<void> {
  const { governance, config } = deps;
  const keep = Math.ceil((15 * 60_000) / config.observer.flowSampleMs) + 1;
  for (const d of config.downstreams) {
    const [stats, waiting, inFlight, capacity] = await Promise.all([
      governance.reads.stats(d.name),
      governance.waiting.total(d.name),
      governance.reads.inFlightCount(d.name),
      governance.mirror.effectiveCapacity(d.name),
    ]);
    const deadLettered = Object.entries(stats).reduce((n, [k, v]) => (k.startsWith('dead:') ? n + v : n), 0);
    const breakers = deps.breakers;
    const b = breakers?.enabled(d.name) ? (await breakers.read(d.name)).state : undefined;
    const w = b ? windowStats(b.window) : undefined;
    await governance.reads.pushFlowSample(
      d.name,
      {
        at: now(),
        admitted: stats.admitted ?? 0,
        deadLettered,
        waiting,
        inFlight,
        capacity: capacity ?? d.capacity,
        ...(b && w ? { breaker: { state: b.state, calls: w.calls, failureRate: Math.round(w.failureRate * 1000) / 1000 } } : {}),
      },
      keep,
    );
  }
}

/** Warns once per episode when a tenant with waiting work has not been served for the bound. */
export class StarvationWatch {
  /** downstream/tenant pairs currently reported as starving. */
  private readonly starving = new Set<string>();

  constructor(
    private readonly deps: Pick<ObserverDeps, 'governance' | 'config' | 'log'>,
    private readonly streams: readonly StreamInfo[],
    private readonly now: () => number,
  ) {}

  async check(): Promise<void> {
    const { governance, config, log } = this.deps;
    const now = this.now();
    for (const s of this.streams) {
      const starving = new Set((await governance.waiting.queuedTenants(s.downstream)).filter((q) => isStarving(q.since, now, config.observer.starvationMs)).map((q) => q.tenantId));
      // One line per tenant up to LOGGED_TENANTS a check, then one line with the count: 20,000 starving
      // tenants would otherwise be 20,000 lines written in one turn of the event loop.
      let logged = 0;
      let more = 0;
      for (const tenant of starving) {
        const key = `${s.downstream}/${tenant}`;
        if (!this.starving.has(key)) {
          this.starving.add(key);
          if (logged++ < LOGGED_TENANTS) log.warn({ downstream: s.downstream, tenant, boundMs: config.observer.starvationMs }, 'tenant starving: waiting work and no admission for longer than the bound');
          else more++;
        }
      }
      if (more > 0) log.warn({ downstream: s.downstream, tenants: more, boundMs: config.observer.starvationMs }, 'more tenants starving (not named one by one)');
      let recovered = 0;
      for (const key of [...this.starving]) {
        if (key.startsWith(`${s.downstream}/`) && !starving.has(key.slice(s.downstream.length + 1))) {
          this.starving.delete(key);
          if (recovered++ < LOGGED_TENANTS) log.info({ downstream: s.downstream, tenant: key.slice(s.downstream.length + 1) }, 'tenant no longer starving');
        }
      }
      if (recovered > LOGGED_TENANTS) log.info({ downstream: s.downstream, tenants: recovered - LOGGED_TENANTS }, 'more tenants no longer starving (not named one by one)');
    }
  }
}

/** Tenants named one by one in a check's starving / recovered lines; the rest are counted in one line. */
const LOGGED_TENANTS = 20;
