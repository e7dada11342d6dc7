/**
 * The demo's story, as a workload against a running tollgate (used by `npm run demo` and by the
 * dashboard's screenshot test): plain BullMQ producers and execution workers, and an operator's quota
 * change over the API. On its timeline:
 *
 *   0 s      globex, initech and umbrella send a steady trickle to every downstream;
 *   2 s      acme floods the scanner (a burst, then a steady stream well above its share);
 *   4 s      an operator gives initech a tight quota (2 jobs/s): its jobs wait, each with an ETA;
 *   outage   the attestor fails every job for `outageMs`: its breaker opens, its jobs are held, probes
 *            go through once it is back, it closes, and the held jobs replay.
 *
 * Every `reportMs` it logs, in words, what happens and why: each tenant's time from add to start on the
 * flooded scanner, what waits where, the breakers, an initech job's place in line and its ETA.
 */
import { Queue, Worker, type Job } from 'bullmq';
import { Redis } from 'ioredis';

export interface DemoOptions {
  redisUrl: string;
  prefix: string;
  ingressQueue: string;
  /** Execution queue per downstream. */
  execQueues: Record<string, string>;
  apiUrl: string;
  /** An admin token (the quota change needs one). */
  adminToken: string;
  log: (line: string) => void;
  durationMs?: number;
  outageAtMs?: number;
  outageMs?: number;
  reportMs?: number;
}

export interface DemoRun {
  /** Resolves when the timeline is over and the workers have caught up (or `settleMs` passed). */
  done: Promise<DemoSummary>;
  /** Moments of the story, for screenshots: resolves when that moment comes. */
  moment(name: 'flood' | 'quota' | 'breaker-open' | 'breaker-closed'): Promise<void>;
  /** The id of an initech job that waited under its quota (once there is one). */
  waitingJob(): string | undefined;
  stop(): Promise<void>;
}

export interface DemoSummary {
  executed: Record<string, number>;
  /** add → start on the scanner, p95 per tenant over the whole run (ms). */
  p95ByTenant: Record<string, number>;
  breakerTransitions: string[];
}

const QUIET = ['globex', 'initech', 'umbrella'];
const KINDS = [
  { name: 'scan.image', downstream: 'scanner' },
  { name: 'attest.sbom', downstream: 'attestor' },
  { name: 'policy.evaluate', downstream: 'policy' },
];

const p95 = (xs: number[]) => {
  if (xs.length === 0) return 0;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(0.95 * s.length) - 1)]!;
};

export function runDemo(o: DemoOptions): DemoRun {
  const durationMs = o.durationMs ?? 60_000;
  const outageAt = o.outageAtMs ?? 15_000;
  const outageMs = o.outageMs ?? 20_000;
  const reportMs = o.reportMs ?? 3000;
  const started = Date.now();
  const since = () => ((Date.now() - started) / 1000).toFixed(0).padStart(3);
  const log = (what: string) => o.log(`[${since()} s] ${what}`);
  const conns: Redis[] = [];
  const conn = () => {
    const c = new Redis(o.redisUrl, { maxRetriesPerRequest: null });
    conns.push(c);
    return c;
  };
  const moments = new Map<string, { promise: Promise<void>; resolve: () => void; reached: boolean }>();
  const momentOf = (name: string) => {
    let m = moments.get(name);
    if (!m) {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => (resolve = r));
      m = { promise, resolve, reached: false };
      moments.set(name, m);
    }
    return m;
  };
  const reach = (name: string) => {
    const m = momentOf(name);
    if (!m.reached) {
      m.reached = true;
      m.resolve();
    }
  };
  const api = async (method: string, path: string, body?: unknown, reason?: string) => {
    const res = await fetch(`${o.apiUrl}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${o.adminToken}`,
        ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
        ...(reason ? { 'x-operator-reason': reason } : {}),
      },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    return { status: res.status, body: (await res.json().catch(() => ({}))) as any };
  };

  // Execution workers, as a platform team writes them: the attestor fails while its outage lasts.
  const executed: Record<string, number> = {};
  const latencies = new Map<string, number[]>();
  const recent = new Map<string, number[]>();
  const outage = () => {
    const t = Date.now() - started;
    return t >= outageAt && t < outageAt + outageMs;
  };
  const workers = Object.entries(o.execQueues).map(
    ([downstream, queue]) =>
      new Worker(
        queue,
        async (job: Job) => {
          if (downstream === 'attestor' && outage()) throw new Error('attestor unavailable: connect ECONNREFUSED 10.0.4.12:8443');
          const tenant = String(job.data.tenantId);
          const wait = Date.now() - Number(job.data.sentAt ?? job.timestamp);
          // Measured on the scanner, the downstream acme floods: what a flood does to the others.
          if (downstream === 'scanner') {
            (latencies.get(tenant) ?? latencies.set(tenant, []).get(tenant)!).push(wait);
            (recent.get(tenant) ?? recent.set(tenant, []).get(tenant)!).push(wait);
          }
          // The scanner is the slow one: 20 slots of 30–50 ms take about 500 jobs a second.
          await new Promise((r) => setTimeout(r, downstream === 'scanner' ? 30 + Math.random() * 20 : 10 + Math.random() * 20));
          executed[`${downstream}/${tenant}`] = (executed[`${downstream}/${tenant}`] ?? 0) + 1;
          return { ok: true };
        },
        { connection: conn(), prefix: o.prefix, concurrency: 20 },
      ),
  );
  for (const w of workers) w.on('error', () => undefined);

  const ingress = new Queue(o.ingressQueue, { connection: conn(), prefix: o.prefix });
  const job = (tenant: string, kind: (typeof KINDS)[number], seq: number) => ({
    name: kind.name,
    data: { tenantId: tenant, artifact: `sha256:${tenant}-${seq.toString(16)}`, sentAt: Date.now() },
    opts: { attempts: 1, removeOnComplete: 1000, removeOnFail: 1000 },
  });
  let seq = 0;
  const timers: NodeJS.Timeout[] = [];
  const every = (ms: number, f: () => Promise<unknown> | void) => timers.push(setInterval(() => void Promise.resolve(f()).catch(() => undefined), ms));
  const at = (ms: number, f: () => Promise<unknown> | void) => timers.push(setTimeout(() => void Promise.resolve(f()).catch((err) => log(`(${(err as Error).message})`)), ms));

  // A breaker left open by an earlier run (restored from Postgres) would tell another story.
  void api('POST', '/api/v1/breakers/attestor/reset', undefined, 'demo: start from a closed breaker');
  log(`three quiet tenants (${QUIET.join(', ')}) start sending a few jobs a second to each downstream`);
  every(250, () => ingress.addBulk(QUIET.flatMap((t) => KINDS.map((k) => job(t, k, seq++)))));
  let waitingJob: string | undefined;
  at(2000, async () => {
    log('acme floods the scanner: 3,000 jobs at once, then 400 a second; the scanner runs 20 at a time (about 500 a second), shared fairly');
    await ingress.addBulk(Array.from({ length: 3000 }, () => job('acme', KINDS[0]!, seq++)));
    every(100, () => ingress.addBulk(Array.from({ length: 40 }, () => job('acme', KINDS[0]!, seq++))));
    reach('flood');
  });
  at(4000, async () => {
    const r = await api('PUT', '/api/v1/quotas/initech', { rate: 2, burst: 2 }, 'demo: initech is on a trial plan');
    log(`an operator gives initech a quota of 2 jobs/s (HTTP ${r.status}); it sends 12/s, so the rest waits for its tokens`);
    // Sampled from initech's next jobs: one that waits, with the rule that holds it and its ETA.
    for (let i = 0; i < 20 && !waitingJob; i++) {
      await new Promise((r2) => setTimeout(r2, 250));
      const added = await ingress.add(KINDS[2]!.name, job('initech', KINDS[2]!, seq++).data);
      // Once the gate has decided it (a few ms): waiting, or already running.
      for (let k = 0; k < 20; k++) {
        const where = await api('GET', `/api/v1/jobs/${added.id}`);
        if (where.body.place === 'waiting') waitingJob = added.id!;
        if (where.body.place !== 'ingress') break;
        await new Promise((r2) => setTimeout(r2, 50));
      }
    }
    reach('quota');
  });
  at(outageAt, () => log(`the attestor goes down for ${outageMs / 1000} s: every attestation fails until it is back`));
  at(outageAt + outageMs, () => log('the attestor is back: its next probes succeed'));

  const transitions: string[] = [];
  const seen = new Set<string>();
  every(250, async () => {
    const b = await api('GET', '/api/v1/breakers/attestor');
    for (const t of [...(b.body.transitions ?? [])].reverse() as Array<{ from: string; to: string; reason: string; at: string; gen: number }>) {
      const id = `${t.gen}`;
      // Only this run's (the history of an earlier run is kept in Postgres).
      if (seen.has(id) || Date.parse(t.at) < started) continue;
      seen.add(id);
      const line = `attestor breaker ${t.from} → ${t.to}: ${t.reason}`;
      transitions.push(line);
      log(
        `${line}${t.to === 'open' ? `; its jobs are held (${b.body.held} now), nothing is sent to it until ${b.body.nextProbeAt ? new Date(b.body.nextProbeAt).toLocaleTimeString() : 'its next probe'}` : t.to === 'half-open' ? `; ${b.body.probes?.allowed ?? ''} probe jobs go through` : '; the held jobs replay, ramping up'}`,
      );
      if (t.to === 'open') reach('breaker-open');
      if (t.to === 'closed' && moments.get('breaker-open')?.reached) reach('breaker-closed');
    }
  });

  every(reportMs, async () => {
    const tenants = (await api('GET', '/api/v1/tenants?sort=busiest&limit=10')).body.items as Array<{ tenantId: string; waiting: { total: number } }> | undefined;
    const parts = ['acme', ...QUIET].map((t) => {
      const xs = recent.get(t) ?? [];
      recent.set(t, []);
      const w = tenants?.find((x) => x.tenantId === t)?.waiting.total ?? 0;
      return `${t} ${xs.length} scans, p95 ${p95(xs)} ms, ${w} waiting`;
    });
    log(`on the scanner (add → start): ${parts.join(' | ')}`);
    if (waitingJob) {
      const where = await api('GET', `/api/v1/jobs/${waitingJob}`);
      const w = where.body.waiting;
      if (w) log(`initech job ${waitingJob} waits: ${w.reason}${w.position ? `, position ${w.position}` : ''}${w.estimatedAdmissionAt ? `, expected to start at ${new Date(w.estimatedAdmissionAt).toLocaleTimeString()}` : ''}`);
    }
  });

  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    for (const t of timers) clearInterval(t);
    await Promise.all(workers.map((w) => w.close()));
    await ingress.close();
    for (const c of conns) c.disconnect();
  };
  const done = (async (): Promise<DemoSummary> => {
    await new Promise((r) => setTimeout(r, durationMs));
    const summary: DemoSummary = {
      executed: { ...executed },
      p95ByTenant: Object.fromEntries([...latencies].map(([t, xs]) => [t, p95(xs)])),
      breakerTransitions: [...transitions],
    };
    await stop();
    return summary;
  })();
  return { done, moment: (name) => momentOf(name).promise, waitingJob: () => waitingJob, stop };
}
