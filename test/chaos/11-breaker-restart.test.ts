/**
 * RELIABILITY.md scenario 11: a breaker across a restart of everything.
 *
 * The scanner's breaker trips (its execution worker fails), the attestor is forced open and the policy
 * engine forced closed through the REST API. Once Postgres has the snapshots, every tollgate process is
 * killed -9 and Redis is killed and started again empty. Jobs are produced into the empty Redis at
 * once, before any tollgate process is back. After the restart:
 * - each breaker is back exactly as it was (state, openUntil, trips, generation, forced), from
 *   Postgres, and matches its last recorded transition;
 * - nothing reached the scanner before its open period was over, nothing ever reached the
 *   force-opened attestor, the force-closed policy engine ran its jobs;
 * - when the scanner's breaker closes, its held jobs are replayed exactly once, within the replay ramp
 *   (capacity from the probe count to full over replayRampMs) at every instant;
 * - at every sampled instant, Postgres is never ahead of Redis (snapshot and transition generations),
 *   and at the end every transition is in Postgres once (generations 2..n: a new breaker is at 1);
 * - conservation of every job produced after the flush.
 */
import { Client } from 'pg';
import { chaosConfigInput, expectConserved, startCluster, type Downstream } from './support/cluster';
import { errorLines } from './support/lifecycle';
import { apiClient, waitReady } from './support/ops';
import { waitFor } from '../support/services';

jest.setTimeout(60_000);

const CAPACITY = 20;
const PROBES = 2;
const RAMP_MS = 2500;
const OPEN_MS = 10_000;
const WORK_MS = 100;
const breaker = { consecutiveFailures: 3, minimumCalls: 1000, jitter: 0, halfOpenProbes: PROBES, replayRampMs: RAMP_MS };
const DS: Downstream[] = ['scanner', 'attestor', 'policy'];

/** JSON with keys sorted (Postgres jsonb keeps its own key order). */
function canonical(v: unknown): string {
  return JSON.stringify(v, (_k, x: unknown) =>
    x && typeof x === 'object' && !Array.isArray(x) ? Object.fromEntries(Object.entries(x as Record<string, unknown>).sort(([a], [b]) => a.localeCompare(b))) : x,
  );
}

interface Run {
  id: string;
  start: number;
  end?: number;
  ok: boolean;
}

it('a tripped and two forced breakers survive kill -9 of everything plus an empty Redis; held jobs replay once, ramped', async () => {
  const c = await startCluster(
    'brkrestart',
    chaosConfigInput({
      downstreams: [
        { name: 'scanner', capacity: CAPACITY, breaker: { ...breaker, openMs: OPEN_MS } },
        { name: 'attestor', capacity: CAPACITY, breaker: { ...breaker, openMs: 60_000 } },
        { name: 'policy', capacity: 100, breaker: { ...breaker, openMs: 60_000 } },
      ],
    }),
  );
  const pg = new Client({ connectionString: c.dbUrl });
  let sampling = false;
  let sampler: Promise<void> = Promise.resolve();
  try {
    const api = await apiClient();
    const port = api.port;
    const startAll = () => [c.spawn('all', api.env), c.spawn('gate')];
    let procs = startAll();
    const state = { scannerFailing: true };
    const runs: Record<Downstream, Run[]> = { scanner: [], attestor: [], policy: [] };
    const exec = c.startExec({
      concurrency: 50,
      work: async (job, d) => {
        const run: Run = { id: job.id!, start: Date.now(), ok: !(d === 'scanner' && state.scannerFailing) };
        runs[d].push(run);
        if (!run.ok) throw new Error('scanner unavailable: connect ECONNREFUSED');
        if (d === 'scanner') await new Promise((r) => setTimeout(r, WORK_MS));
        run.end = Date.now();
      },
    });
    await waitReady(port);
    await pg.connect();

    // Postgres is never ahead of Redis: read Postgres first, then Redis (which only moves forward
    // while it has the breaker), at every sample.
    const aheadViolations: unknown[] = [];
    let samples = 0;
    sampling = true;
    sampler = (async () => {
      while (sampling) {
        try {
          const snaps = (await pg.query(`SELECT downstream, gen::int AS gen FROM breaker_snapshots`)).rows as Array<{ downstream: string; gen: number }>;
          const trans = (await pg.query(`SELECT downstream, max(gen)::int AS gen FROM breaker_transitions GROUP BY downstream`)).rows as Array<{ downstream: string; gen: number }>;
          const pipe = c.conn.pipeline();
          for (const d of DS) pipe.hget(c.keys.downstream(d, 'breaker'), 'gen');
          const gens = ((await pipe.exec()) ?? []).map(([err, v]) => (err ? undefined : (v as string | null)));
          for (const [i, d] of DS.entries()) {
            const redisGen = gens[i];
            if (redisGen === undefined || redisGen === null) continue; // Redis lost it; not restored yet
            const snap = snaps.find((r) => r.downstream === d)?.gen ?? 0;
            const tr = trans.find((r) => r.downstream === d)?.gen ?? 0;
            if (snap > Number(redisGen) || tr > Number(redisGen)) aheadViolations.push({ d, redisGen, snap, tr, at: Date.now() });
          }
          samples++;
        } catch {
          // Redis down for a moment in this scenario: nothing to compare.
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    })();

    // Forced states through the API, then the scanner trips on three failures.
    expect((await api.send('POST', '/api/v1/breakers/attestor/open', undefined, 'attestor maintenance')).body).toMatchObject({ state: 'open', forced: 'open' });
    expect((await api.send('POST', '/api/v1/breakers/policy/close', undefined, 'policy engine is known good')).body).toMatchObject({ state: 'closed', forced: 'closed' });
    // Own ids: BullMQ's id counter lives in Redis and starts again at 1 after the flush, and the
    // execution tracker must not mistake a post-flush job for one of these.
    await c.produce(Array.from({ length: 3 }, (_, i) => ({ name: 'scan.image', data: { tenantId: 'trip', i }, opts: { jobId: `trip-${i}` } })));
    const before: Record<string, any> = {};
    before.scanner = await waitFor(async () => {
      const b = (await api.get('/api/v1/breakers/scanner')).body;
      return b.state === 'open' ? b : undefined;
    }, 'the scanner breaker to open', 10_000, 50);
    before.attestor = (await api.get('/api/v1/breakers/attestor')).body;
    before.policy = (await api.get('/api/v1/breakers/policy')).body;
    expect(before.scanner).toMatchObject({ state: 'open', forced: null, trips: 1, reason: '3 consecutive failures' });

    // Postgres has caught up with Redis (snapshots and transitions) before the crash.
    const redisStateBefore: Record<string, string> = {};
    await waitFor(
      async () => {
        for (const d of DS) {
          const [json, gen] = await c.conn.hmget(c.keys.downstream(d, 'breaker'), 'json', 'gen');
          const snap = (await pg.query(`SELECT state, gen::int AS gen FROM breaker_snapshots WHERE downstream = $1`, [d])).rows[0];
          const tr = (await pg.query(`SELECT max(gen)::int AS gen FROM breaker_transitions WHERE downstream = $1`, [d])).rows[0];
          if (!json || !snap || snap.gen !== Number(gen) || tr.gen !== Number(gen) || canonical(snap.state) !== canonical(JSON.parse(json))) return false;
          redisStateBefore[d] = json;
        }
        return true;
      },
      'snapshots and transitions in Postgres',
      10_000,
      100,
    );

    // kill -9 of every tollgate process; Redis killed and started again, empty.
    for (const p of procs) p.kill('SIGKILL');
    await Promise.all(procs.map((p) => p.exited));
    await c.redis.stop();
    await c.redis.restart();
    expect(await c.conn.dbsize()).toBe(0);
    state.scannerFailing = false; // the downstream recovered while everything was down
    const restartedAt = Date.now();

    // Jobs arrive before any tollgate process is back.
    const scannerIds = await c.produce(
      Array.from({ length: 100 }, (_, i) => ({ name: 'scan.image', data: { tenantId: `t${i % 4}`, i }, opts: { removeOnComplete: true } })),
    );
    const attestorIds = await c.produce(Array.from({ length: 20 }, (_, i) => ({ name: 'attest.sbom', data: { tenantId: `t${i % 4}`, i } })));
    const policyIds = await c.produce(
      Array.from({ length: 30 }, (_, i) => ({ name: 'policy.eval', data: { tenantId: `t${i % 4}`, i }, opts: { removeOnComplete: true } })),
    );
    const ids = [...scannerIds, ...attestorIds, ...policyIds];
    procs = startAll();

    // The first breaker state Redis holds again is the one it lost, byte for byte (from Postgres).
    const restored: Record<string, string> = {};
    await waitFor(
      async () => {
        for (const d of DS) {
          if (restored[d]) continue;
          const json = await c.conn.hget(c.keys.downstream(d, 'breaker'), 'json');
          if (json) restored[d] = json;
        }
        return DS.every((d) => restored[d]);
      },
      'the breakers back in Redis',
      20_000,
      10,
    );
    for (const d of DS) expect({ d, state: JSON.parse(restored[d]!) }).toEqual({ d, state: JSON.parse(redisStateBefore[d]!) });
    await waitReady(port);
    const after: Record<string, any> = {};
    for (const d of DS) after[d] = (await api.get(`/api/v1/breakers/${d}`)).body;
    process.stdout.write(
      `[chaos] breaker restart: restarted ${Date.now() - restartedAt} ms; scanner before ${JSON.stringify({ state: before.scanner.state, nextProbeAt: before.scanner.nextProbeAt, trips: before.scanner.trips, gen: before.scanner.generation })} after ${JSON.stringify({ state: after.scanner.state, nextProbeAt: after.scanner.nextProbeAt, trips: after.scanner.trips, gen: after.scanner.generation })}\n`,
    );
    const pick = (b: any) => ({ state: b.state, forced: b.forced, nextProbeAt: b.nextProbeAt, trips: b.trips, generation: b.generation });
    for (const d of DS) expect({ d, ...pick(after[d]) }).toEqual({ d, ...pick(before[d]) });
    expect(after.scanner.state).toBe('open');
    expect(after.attestor).toMatchObject({ state: 'open', forced: 'open' });
    expect(after.policy).toMatchObject({ state: 'closed', forced: 'closed' });

    // A restored breaker matches its last transition in Postgres.
    for (const d of DS) {
      const s = JSON.parse(restored[d]!) as { state: string; gen: number; openUntil?: number };
      const last = (
        await pg.query(`SELECT to_state, gen::int AS gen, open_until FROM breaker_transitions WHERE downstream = $1 ORDER BY gen DESC LIMIT 1`, [d])
      ).rows[0];
      expect({ d, to: last.to_state, gen: last.gen, openUntil: last.open_until ? new Date(last.open_until).getTime() : undefined }).toEqual({
        d,
        to: s.state,
        gen: s.gen,
        openUntil: s.state === 'open' ? s.openUntil : undefined,
      });
    }

    // Held while open (scanner) and forced open (attestor); the force-closed policy engine runs.
    await waitFor(async () => (await api.get('/api/v1/breakers/scanner')).body.held === scannerIds.length, 'the scanner jobs held', 10_000, 100);
    await waitFor(async () => (await api.get('/api/v1/breakers/attestor')).body.held === attestorIds.length, 'the attestor jobs held', 10_000, 100);
    await waitFor(() => runs.policy.length >= policyIds.length, 'the policy jobs executed', 10_000, 50);

    // The scanner's open period ends (time-driven), the probes pass, it closes and replays.
    const openUntil = Date.parse(before.scanner.nextProbeAt);
    await waitFor(
      () => runs.scanner.filter((r) => r.ok && r.end !== undefined).length === scannerIds.length,
      'every held scanner job replayed',
      openUntil - Date.now() + 15_000,
      50,
    );
    await new Promise((r) => setTimeout(r, 700)); // a late duplicate or a stray attestor run has the time to show; Postgres catches up
    sampling = false;
    await sampler;

    const transitions = (
      await pg.query(`SELECT downstream, from_state, to_state, gen::int AS gen, at, open_until FROM breaker_transitions ORDER BY downstream, gen`)
    ).rows as Array<{ downstream: string; from_state: string; to_state: string; gen: number; at: Date; open_until: Date | null }>;
    const of = (d: string) => transitions.filter((t) => t.downstream === d);
    expect(of('scanner').map((t) => `${t.gen}:${t.from_state}>${t.to_state}`)).toEqual(['2:closed>open', '3:open>half-open', '4:half-open>closed']);
    expect(of('attestor').map((t) => `${t.gen}:${t.from_state}>${t.to_state}`)).toEqual(['2:closed>open']);
    expect(of('policy').map((t) => `${t.gen}:${t.from_state}>${t.to_state}`)).toEqual(['2:closed>closed']);
    const halfOpenAt = of('scanner')[1]!.at.getTime();
    const closedAtPg = of('scanner')[2]!.at.getTime();
    const closedAt = Number(await c.conn.hget(c.keys.downstream('scanner', 'breaker'), 'closedAt'));
    expect(closedAt).toBe(closedAtPg);
    // Time-driven: not before openUntil, and soon after it (the observers tick every 200 ms).
    expect(halfOpenAt).toBeGreaterThanOrEqual(openUntil);
    expect(halfOpenAt - openUntil).toBeLessThan(2000);

    // Postgres never ahead of Redis; now caught up with it.
    expect(samples).toBeGreaterThan(20);
    expect(aheadViolations.slice(0, 5)).toEqual([]);
    for (const d of DS) {
      const gen = Number(await c.conn.hget(c.keys.downstream(d, 'breaker'), 'gen'));
      const snap = (await pg.query(`SELECT gen::int AS gen FROM breaker_snapshots WHERE downstream = $1`, [d])).rows[0];
      expect({ d, snap: snap.gen, transitions: of(d).map((t) => t.gen) }).toEqual({ d, snap: gen, transitions: Array.from({ length: gen - 1 }, (_, i) => i + 2) });
    }

    // Nothing reached the scanner before the half-open move; the probes alone while half-open.
    const post = runs.scanner.filter((r) => r.start >= restartedAt);
    const early = post.filter((r) => r.start < halfOpenAt);
    const probes = post.filter((r) => r.start >= halfOpenAt && r.start < closedAt);
    expect(early).toEqual([]);
    expect(probes.length).toBeGreaterThanOrEqual(1);
    expect(probes.length).toBeLessThanOrEqual(PROBES);
    expect(runs.attestor).toEqual([]);

    // Replayed once each, and within the ramp at every start: running(t) <= max(probes, floor(cap * (t - closedAt) / ramp)).
    const replay = post.filter((r) => r.start >= closedAt);
    const allowed = (t: number) => (t - closedAt >= RAMP_MS ? CAPACITY : Math.max(PROBES, Math.floor((CAPACITY * (t - closedAt)) / RAMP_MS)));
    const overRamp: unknown[] = [];
    let peakRunning = 0;
    for (const r of replay) {
      const running = post.filter((o) => o.start <= r.start && (o.end === undefined || o.end > r.start)).length;
      peakRunning = Math.max(peakRunning, running);
      if (running > allowed(r.start)) overRamp.push({ at: r.start - closedAt, running, allowed: allowed(r.start) });
    }
    const buckets = Array.from({ length: Math.ceil(RAMP_MS / 500) + 2 }, (_, i) => replay.filter((r) => Math.floor((r.start - closedAt) / 500) === i).length);
    process.stdout.write(
      `[chaos] replay: ${probes.length} probes, then ${replay.length} jobs; starts per 500 ms after close ${JSON.stringify(buckets)}; peak running ${peakRunning}; done ${Math.max(...replay.map((r) => r.end!)) - closedAt} ms after close; ${samples} Postgres/Redis samples\n`,
    );
    expect(overRamp.slice(0, 5)).toEqual([]);
    expect(peakRunning).toBeLessThanOrEqual(CAPACITY);
    expect(probes.length + replay.length).toBe(scannerIds.length);
    const ranIds = post.map((r) => r.id);
    expect(new Set(ranIds).size).toBe(scannerIds.length);

    const result = await c.conservation(ids, exec);
    expectConserved('breaker restart (jobs after the flush)', result, { exec: scannerIds.length + policyIds.length, waiting: attestorIds.length, ingress: 0, 'dead-letter': 0 });
    for (const p of procs) {
      expect({ exitCode: p.proc.exitCode, signal: p.proc.signalCode }).toEqual({ exitCode: null, signal: null });
      expect(errorLines(p)).toEqual([]);
    }
  } finally {
    sampling = false;
    await sampler.catch(() => undefined);
    await pg.end().catch(() => undefined);
    await c.close();
  }
});
