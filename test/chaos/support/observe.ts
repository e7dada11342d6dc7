/**
 * Read-only probes for the observer and racing-gate scenarios (02, 03, 09): tollgate's own counters
 * in Redis and Postgres, a breaker's window, a child's /metrics, and a per-tenant in-flight sampler.
 * Everything here reads the private services directly; nothing is mocked.
 */
import { Client } from 'pg';
import { windowStats, type BreakerState } from '../../../src/core/breaker';
import { freePort } from '../../support/net';
import { waitFor } from '../../support/services';
import { chaosConfigInput, DOWNSTREAMS, type Cluster, type ExecTracker } from './cluster';

export { freePort };

/** The decision and outcome counters of a downstream in Redis (`ds:<d>:stats`). */
export async function redisStats(c: Cluster, downstream: string): Promise<Record<string, number>> {
  const raw = await c.conn.hgetall(c.keys.stats(downstream));
  return Object.fromEntries(Object.entries(raw).map(([k, v]) => [k, Number(v)]));
}

/** The counters snapshot the observer's sync wrote to Postgres (table downstream_counters). */
export async function pgCounters(c: Cluster): Promise<Record<string, Record<string, number>>> {
  const pg = new Client({ connectionString: c.dbUrl });
  await pg.connect();
  try {
    const { rows } = await pg.query<{ downstream: string; counters: Record<string, number> }>('SELECT downstream, counters FROM downstream_counters');
    return Object.fromEntries(rows.map((r) => [r.downstream, r.counters]));
  } finally {
    await pg.end();
  }
}

/** The breaker snapshot in Postgres (table breaker_snapshots), if any. */
export async function pgBreaker(c: Cluster, downstream: string): Promise<BreakerState | undefined> {
  const pg = new Client({ connectionString: c.dbUrl });
  await pg.connect();
  try {
    const { rows } = await pg.query<{ state: BreakerState }>('SELECT state FROM breaker_snapshots WHERE downstream = $1', [downstream]);
    return rows[0]?.state;
  } finally {
    await pg.end();
  }
}

/** The breaker state of a downstream as stored in Redis, with its window's sums. */
export async function redisBreaker(c: Cluster, downstream: string): Promise<{ state?: BreakerState; calls: number; failures: number }> {
  const json = await c.conn.hget(c.keys.downstream(downstream, 'breaker'), 'json');
  if (!json) return { calls: 0, failures: 0 };
  const state = JSON.parse(json) as BreakerState;
  const w = windowStats(state.window);
  return { state, calls: w.calls, failures: w.failures };
}

/** Admitted-and-unfinished per downstream (in-flight zset) and per tenant (`tin` hash), summed. */
export async function inflightTotals(c: Cluster): Promise<{ byDownstream: Record<string, number>; byTenant: Record<string, number> }> {
  const byDownstream: Record<string, number> = {};
  const byTenant: Record<string, number> = {};
  for (const d of DOWNSTREAMS) {
    byDownstream[d] = await c.conn.zcard(c.keys.inflight(d));
    for (const [t, n] of Object.entries(await c.conn.hgetall(c.keys.downstream(d, 'tenantInflight')))) {
      if (Number(n) !== 0) byTenant[`${d}/${t}`] = Number(n);
    }
  }
  return { byDownstream, byTenant };
}

/** Waits until nothing is admitted-and-unfinished any more, per downstream and per tenant. */
export async function waitInflightDrained(c: Cluster, timeoutMs = 10_000): Promise<void> {
  await waitFor(
    async () => {
      const t = await inflightTotals(c);
      return Object.values(t.byDownstream).every((n) => n === 0) && Object.keys(t.byTenant).length === 0;
    },
    'in-flight back to 0',
    timeoutMs,
    100,
  );
}

/** The chaos config's capacity per downstream (scanner 50, attestor 20, policy 100). */
export const DEFAULT_CAPACITY: Readonly<Record<string, number>> = Object.fromEntries(
  (chaosConfigInput().downstreams ?? []).map((d) => [d.name, d.capacity as number]),
);

/**
 * Never over-admitted: per downstream, neither the in-flight peak sampled in Redis nor the most jobs
 * the execution workers ran at once exceeds its capacity.
 */
export function expectWithinCapacity(exec: ExecTracker, sampled: Map<string, number>, capacity: Readonly<Record<string, number>> = DEFAULT_CAPACITY): void {
  for (const d of DOWNSTREAMS) {
    const peaks = { sampled: sampled.get(d) ?? 0, running: exec.peakByDownstream.get(d) ?? 0 };
    const cap = capacity[d]!;
    expect({ d, ...peaks, withinCapacity: peaks.sampled <= cap && peaks.running <= cap }).toEqual({ d, ...peaks, withinCapacity: true });
  }
}

/** Prometheus text of a child serving METRICS_PORT. */
export async function scrape(port: number): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(3000) });
  if (!res.ok) throw new Error(`/metrics on ${port} answered ${res.status}`);
  return res.text();
}

/** Sum of a metric's samples whose labels include every given label (0 when none). */
export function metricSum(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    const m = /^([^{\s]+)(?:\{([^}]*)\})?\s+(\S+)/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) sum += Number(m[3]);
  }
  return sum;
}
