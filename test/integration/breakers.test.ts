/**
 * Circuit breakers on real Redis and Postgres with a real execution worker whose downstream we make
 * fail and recover: trip timing, zero promotions while open (but probes), held jobs replayed on close
 * exactly once, drain and replay by hand, forced states, and a breaker surviving kill -9 plus a
 * flushed Redis (restored from Postgres).
 */
import { Queue, Worker } from 'bullmq';
import { createServer } from 'node:http';
import { Client } from 'pg';
import { parseApiTokens } from '../../src/config/tokens';
import type { DeadLetterData } from '../../src/queues/dead-letter';
import { startTollgate } from '../../src/runtime';
import { createHarness, type Harness } from '../support/harness';
import { freePort } from '../support/net';
import { startPrivateRedis } from '../support/private-redis';
import { spawnWorker, writeConfigFile } from '../support/processes';
import { schemaForPrefix } from '../../src/db/pg-schema';
import { createTestDatabase, testConfigInput, testRedis, uniquePrefix, urlInSchema, waitFor } from '../support/services';

jest.setTimeout(90_000);

const ADMIN = 'admin-secret-0123456789';
const breaker = { consecutiveFailures: 3, minimumCalls: 1000, openMs: 1500, jitter: 0, halfOpenProbes: 2, replayRampMs: 500 };
let h: Harness;

beforeEach(async () => {
  h = await createHarness('breakers', {
    env: { apiTokens: parseApiTokens(`ops:${ADMIN}:admin`) },
    config: {
      downstreams: [
        { name: 'scanner', capacity: 10, breaker },
        { name: 'attestor', capacity: 10, breaker: { ...breaker, openMs: 60_000 } },
        { name: 'policy', capacity: 10, breaker: { ...breaker, observeOnly: true } },
      ],
    },
  });
  await h.start();
});
afterEach(async () => {
  await h.close();
});

interface Run {
  id: string;
  tenant: string;
  startedAt: number;
  ok: boolean;
}

function downstreamWorker(queue: string) {
  const state = { failing: true, runs: [] as Run[] };
  h.worker(
    queue,
    async (job) => {
      const run = { id: job.id!, tenant: job.data.tenantId, startedAt: Date.now(), ok: !state.failing };
      state.runs.push(run);
      if (!run.ok) throw new Error('scanner unavailable: connect ECONNREFUSED');
      return 'ok';
    },
    { concurrency: 20 },
  );
  return state;
}

const breakerOf = async (ds: string) => (await h.api('GET', `/api/v1/breakers/${ds}`, { token: ADMIN })).body;
const dead = async () => (await h.queue('dead-letter').getJobs(['waiting'])).map((j) => j.data as DeadLetterData);

it('opens within 1 s of the tripping failure, promotes nothing but probes while open, and replays held jobs once on close', async () => {
  const ds = downstreamWorker('exec.scanner');
  await h.ingress.addBulk(Array.from({ length: 3 }, (_, i) => ({ name: 'scan.image', data: { tenantId: 'first', i } })));
  const opened = await waitFor(async () => {
    const b = await breakerOf('scanner');
    return b.state === 'open' ? b : undefined;
  }, 'the breaker to open', 10_000, 20);
  const trip = opened.transitions.find((t: { to: string }) => t.to === 'open');
  const thirdFailure = (await h.queue('exec.scanner').getJobs(['failed'])).map((j) => j.finishedOn!).sort((a, b) => a - b)[2]!;
  const openedAfter = Date.parse(trip.at) - thirdFailure;
  process.stdout.write(`breaker opened ${openedAfter} ms after the tripping failure (${trip.reason})\n`);
  expect(openedAfter).toBeLessThan(1000);
  expect(trip.reason).toBe('3 consecutive failures');

  // While open: 30 jobs of 3 tenants are held, none reaches the downstream.
  const held = await h.ingress.addBulk(Array.from({ length: 30 }, (_, i) => ({ name: 'scan.image', data: { tenantId: `t${i % 3}`, i } })));
  await waitFor(async () => (await breakerOf('scanner')).held === 30, '30 held');
  const heldList = (await h.api('GET', '/api/v1/breakers/scanner/held?limit=5', { token: ADMIN })).body;
  expect(heldList).toMatchObject({ state: 'open', total: 30, byTenant: { t0: 10, t1: 10, t2: 10 } });
  expect(heldList.items).toHaveLength(5);
  expect(heldList.tenantCount).toBe(3);
  // Bounded to the tenants holding the most (ties by id); one tenant's own count when asked for it.
  const top = (await h.api('GET', '/api/v1/breakers/scanner/held?tenants=2', { token: ADMIN })).body;
  expect(top).toMatchObject({ total: 30, tenantCount: 3, byTenant: { t0: 10, t1: 10 } });
  expect(Object.keys(top.byTenant)).toEqual(['t0', 't1']);
  expect((await h.api('GET', '/api/v1/breakers/scanner/held?tenantId=t2', { token: ADMIN })).body).toMatchObject({ total: 10, tenantCount: 1, byTenant: { t2: 10 } });
  expect((await h.api('GET', '/api/v1/breakers/scanner/held?tenants=0', { token: ADMIN })).status).toBe(400);
  const loc = (await h.api('GET', `/api/v1/jobs/${held[0]!.id}`, { token: ADMIN })).body;
  expect(loc).toMatchObject({ place: 'waiting', waiting: { reason: 'breaker-open' } });

  // The downstream recovers; the breaker probes on its own (time-driven, no new job needed).
  ds.failing = false;
  const closed = await waitFor(async () => {
    const b = await breakerOf('scanner');
    return b.state === 'closed' ? b : undefined;
  }, 'the breaker to close', 15_000, 50);
  const ts = (to: string) => Date.parse(closed.transitions.find((t: { to: string }) => t.to === to).at);
  const [openAt, halfOpenAt, closedAt] = [ts('open'), ts('half-open'), ts('closed')];
  await waitFor(() => ds.runs.filter((r) => r.ok).length === 30, 'every held job replayed', 20_000);

  const startedWhileOpen = ds.runs.filter((r) => r.startedAt > openAt && r.startedAt < halfOpenAt);
  const startedWhileHalfOpen = ds.runs.filter((r) => r.startedAt >= halfOpenAt && r.startedAt < closedAt);
  process.stdout.write(`while open: ${startedWhileOpen.length} promotions; while half-open: ${startedWhileHalfOpen.length} (probes)\n`);
  expect(startedWhileOpen).toEqual([]);
  expect(startedWhileHalfOpen.length).toBeLessThanOrEqual(2);
  // None lost, none duplicated.
  const okIds = ds.runs.filter((r) => r.ok).map((r) => r.id);
  expect(new Set(okIds).size).toBe(30);
  expect(okIds.length).toBe(30);
  expect(closed.transitions.map((t: { from: string; to: string }) => `${t.from}>${t.to}`).slice(0, 3)).toEqual(['half-open>closed', 'open>half-open', 'closed>open']);
});

it('drains and replays held jobs by hand, with counts, audited; forced states are sticky', async () => {
  const ds = downstreamWorker('exec.attestor');
  ds.failing = false;
  const forced = await h.api('POST', '/api/v1/breakers/attestor/open', { token: ADMIN, reason: 'attestor maintenance' });
  expect(forced.body).toMatchObject({ state: 'open', forced: 'open' });
  await h.ingress.addBulk(Array.from({ length: 12 }, (_, i) => ({ name: 'attest.sbom', data: { tenantId: i < 8 ? 'acme' : 'globex', i } })));
  await waitFor(async () => (await breakerOf('attestor')).held === 12, '12 held');

  const drained = await h.api('POST', '/api/v1/breakers/attestor/held/drain', { body: { limit: 5, tenantId: 'acme' }, token: ADMIN, reason: 'stale scans' });
  expect(drained.body).toEqual({ drained: 5 });
  const dl = await waitFor(async () => {
    const d = (await dead()).filter((x) => x.reason === 'drained');
    return d.length === 5 ? d : undefined;
  }, 'five drained in dead-letter');
  expect(new Set(dl.map((d) => d.tenantId))).toEqual(new Set(['acme']));
  expect((await breakerOf('attestor')).held).toBe(7);

  const replayed = await h.api('POST', '/api/v1/breakers/attestor/held/replay', { body: { limit: 2 }, token: ADMIN, reason: 'customer escalation' });
  expect(replayed.body).toEqual({ replayed: 2, skipped: 0 });
  await waitFor(() => ds.runs.length === 2, 'the two replayed jobs run despite the forced-open breaker');
  await new Promise((r) => setTimeout(r, 500));
  expect(ds.runs).toHaveLength(2);
  expect((await breakerOf('attestor')).state).toBe('open'); // forced: no time-driven probe

  await h.api('POST', '/api/v1/breakers/attestor/release', { token: ADMIN, reason: 'maintenance over' });
  await waitFor(() => ds.runs.length === 7, 'the rest after release', 15_000);
  expect(new Set(ds.runs.map((r) => r.id)).size).toBe(7);

  const pg = new Client({ connectionString: h.db.url });
  await pg.connect();
  try {
    const { rows } = await pg.query(`SELECT action, reason, before, after FROM audit_log WHERE resource_type = 'breaker' ORDER BY id`);
    expect(rows.map((r) => r.action)).toEqual(['breaker.open', 'breaker.held.drain', 'breaker.held.replay', 'breaker.release']);
    expect(rows[0]).toMatchObject({ reason: 'attestor maintenance', before: { state: 'closed', forced: null }, after: { state: 'open', forced: 'open' } });
    expect(rows[3]).toMatchObject({ before: { state: 'open', forced: 'open' }, after: { state: 'half-open', forced: null } });
    await waitFor(async () => (await pg.query(`SELECT count(*)::int AS n FROM breaker_transitions WHERE downstream = 'attestor'`)).rows[0].n >= 3, 'transitions in Postgres');
    // The operator's reason travels with the transition itself (written from Redis's outbox).
    const forcedRow = (await pg.query(`SELECT reason, actor FROM breaker_transitions WHERE downstream = 'attestor' AND to_state = 'open' ORDER BY id LIMIT 1`)).rows[0];
    expect(forcedRow.reason).toBe(`forced open by ${forcedRow.actor}: attestor maintenance`);

    // Two operators at the same moment: each audit row records the change its own compare-and-set made,
    // so one's "after" is the other's "before" (not two rows starting from the same state).
    const before = await pg.query(`SELECT max(id)::int AS id FROM audit_log`);
    const both = await Promise.all([
      h.api('POST', '/api/v1/breakers/attestor/open', { token: ADMIN, reason: 'operator one' }),
      h.api('POST', '/api/v1/breakers/attestor/close', { token: ADMIN, reason: 'operator two' }),
    ]);
    expect(both.map((r) => r.status)).toEqual([200, 200]);
    const race = (await pg.query(`SELECT action, before, after FROM audit_log WHERE id > $1 ORDER BY id`, [before.rows[0].id])).rows;
    expect(race).toHaveLength(2);
    const [x, y] = race;
    expect(JSON.stringify(x.after) === JSON.stringify(y.before) || JSON.stringify(y.after) === JSON.stringify(x.before)).toBe(true);
    await h.api('POST', '/api/v1/breakers/attestor/reset', { token: ADMIN, reason: 'test over' });
  } finally {
    await pg.end();
  }
});

it('in observe-only mode records transitions but holds nothing', async () => {
  const ds = downstreamWorker('exec.policy');
  await h.ingress.addBulk(Array.from({ length: 10 }, (_, i) => ({ name: 'policy.eval', data: { tenantId: 'watched', i } })));
  await waitFor(async () => (await breakerOf('policy')).state === 'open', 'the (observing) breaker to open');
  await h.ingress.addBulk(Array.from({ length: 5 }, (_, i) => ({ name: 'policy.eval', data: { tenantId: 'watched', i: 100 + i } })));
  await waitFor(() => ds.runs.length === 15, 'every job still runs');
  expect((await breakerOf('policy')).held).toBe(0);
});

it('survives kill -9 of every process and a flushed Redis while open: same openUntil and trips, from Postgres', async () => {
  const redis = await startPrivateRedis();
  const db = await createTestDatabase('brkrestart');
  const prefix = uniquePrefix('brkrestart');
  const port = await freePort();
  // A Redis of its own (flushed below), so plain queue names even on a cluster run.
  const config = writeConfigFile({
    ...testConfigInput(),
    queues: { ingress: 'ingress', deadLetter: 'dead-letter' },
    downstreams: [
      { name: 'scanner', capacity: 10, breaker: { ...breaker, openMs: 60_000 } },
      { name: 'attestor', capacity: 10 },
      { name: 'policy', capacity: 10 },
    ],
  });
  const env = { REDIS_URL: redis.url, DATABASE_URL: db.url, TOLLGATE_PREFIX: prefix, TOLLGATE_CONFIG: config, PORT: String(port), TOLLGATE_API_TOKENS: `ops:${ADMIN}:admin` };
  const conn = testRedis(redis.url);
  const workerConn = testRedis(redis.url);
  const worker = new Worker('exec.scanner', async () => { throw new Error('scanner down'); }, { connection: workerConn, prefix, concurrency: 5 });
  worker.on('error', () => undefined);
  const ingress = new Queue('ingress', { connection: conn, prefix });
  const get = async () => (await (await fetch(`http://127.0.0.1:${port}/api/v1/breakers/scanner`, { headers: { authorization: `Bearer ${ADMIN}` } })).json()) as Record<string, any>;
  let child = spawnWorker('all', env);
  try {
    await waitFor(async () => (await fetch(`http://127.0.0.1:${port}/readyz`)).status === 200, 'tollgate ready', 20_000);
    await ingress.addBulk(Array.from({ length: 3 }, (_, i) => ({ name: 'scan.image', data: { tenantId: 'acme', i } })));
    const before = await waitFor(async () => {
      const b = await get();
      return b.state === 'open' ? b : undefined;
    }, 'open', 10_000);
    // The transition and snapshot reach Postgres.
    const pg = new Client({ connectionString: urlInSchema(db.url, schemaForPrefix(prefix)) });
    await pg.connect();
    await waitFor(async () => (await pg.query(`SELECT count(*)::int AS n FROM breaker_snapshots WHERE downstream = 'scanner' AND state->>'state' = 'open'`)).rows[0].n === 1, 'snapshot in Postgres');
    await pg.end();

    child.kill('SIGKILL');
    await child.exited;
    await conn.flushall();
    child = spawnWorker('all', env);
    const after = await waitFor(async () => {
      try {
        return (await get()).state === 'open' ? await get() : undefined;
      } catch {
        return undefined;
      }
    }, 'the breaker back, open', 20_000, 200);
    process.stdout.write(`restored: ${JSON.stringify({ state: after.state, nextProbeAt: after.nextProbeAt, trips: after.trips, generation: after.generation })}\n`);
    expect({ state: after.state, nextProbeAt: after.nextProbeAt, trips: after.trips }).toEqual({ state: before.state, nextProbeAt: before.nextProbeAt, trips: before.trips });
    // And it holds: a new job waits.
    await ingress.add('scan.image', { tenantId: 'acme', late: true });
    await waitFor(async () => (await get()).held === 1, 'the new job held');
  } finally {
    child.kill('SIGKILL');
    await child.exited;
    await worker.close();
    await ingress.close();
    conn.disconnect();
    workerConn.disconnect();
    await redis.stop();
    await db.drop();
  }
});

it('after a gap in the event stream, feeds the breaker the outcomes it missed', async () => {
  await h.stop();
  await h.start(['gate', 'api']);
  const observer1 = await startTollgate({ roles: ['observer'], env: h.env, config: h.config });
  await observer1.started;
  await observer1.close(); // the consumer group exists; no observer runs now
  downstreamWorker('exec.scanner');
  await h.ingress.addBulk(Array.from({ length: 3 }, (_, i) => ({ name: 'scan.image', data: { tenantId: 'gap', i } })));
  await waitFor(async () => (await h.queue('exec.scanner').getJobCounts('failed')).failed === 3, 'three failures, unobserved');
  await h.redis.xtrim(`${h.prefix}:exec.scanner:events`, 'MAXLEN', 0);
  const observer2 = await startTollgate({ roles: ['observer'], env: h.env, config: h.config });
  await observer2.started;
  try {
    await waitFor(async () => (await breakerOf('scanner')).state === 'open', 'the breaker opened from the rescanned outcomes', 10_000);
  } finally {
    await observer2.close();
  }
});

it('with a health check, moves to half-open only once the downstream answers healthy', async () => {
  let healthy = false;
  const server = createServer((_req, res) => {
    res.writeHead(healthy ? 200 : 503).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as { port: number }).port}/health`;
  const own = await createHarness('brkhealth', {
    env: { apiTokens: parseApiTokens(`ops:${ADMIN}:admin`) },
    config: {
      downstreams: [
        { name: 'scanner', capacity: 10, breaker: { ...breaker, openMs: 300, healthUrl: url, healthIntervalMs: 100 } },
        { name: 'attestor', capacity: 10 },
        { name: 'policy', capacity: 10 },
      ],
    },
  });
  await own.start();
  try {
    own.worker('exec.scanner', async () => {
      throw new Error('down');
    });
    await own.ingress.addBulk(Array.from({ length: 3 }, (_, i) => ({ name: 'scan.image', data: { tenantId: 'hc', i } })));
    const get = async () => (await own.api('GET', '/api/v1/breakers/scanner', { token: ADMIN })).body;
    await waitFor(async () => (await get()).state === 'open', 'open');
    await new Promise((r) => setTimeout(r, 1200)); // well past openUntil: still open while unhealthy
    expect((await get()).state).toBe('open');
    healthy = true;
    const b = await waitFor(async () => {
      const x = await get();
      return x.state !== 'open' ? x : undefined;
    }, 'half-open once healthy', 5000, 50);
    expect(b.transitions[0].reason).toBe('open period over and the health check passed');
    const metrics = await (await fetch(`${own.tollgate!.url}/metrics`, { headers: { authorization: `Bearer ${ADMIN}` } })).text();
    expect(metrics).toMatch(/tollgate_breaker_transitions_total\{downstream="scanner",from="closed",to="open"\} 1/);
    expect(metrics).toMatch(/tollgate_breaker_state\{downstream="scanner",state="half-open"\} 1/);
  } finally {
    await own.close();
    await new Promise((r) => server.close(r));
  }
});

it('admits exactly the half-open probes across two gate processes', async () => {
  await h.stop();
  await h.start(['observer', 'api']);
  const file = writeConfigFile(
    testConfigInput({
      downstreams: [
        // The same breaker settings as this file's in-process observer (one deployment, one config).
        { name: 'scanner', capacity: 10, breaker },
        { name: 'attestor', capacity: 10 },
        { name: 'policy', capacity: 10 },
      ],
    }),
  );
  const env = { REDIS_URL: h.env.redisUrl, DATABASE_URL: h.db.url, TOLLGATE_PREFIX: h.prefix, TOLLGATE_CONFIG: file };
  const gates = [spawnWorker('gate', env), spawnWorker('gate', env)];
  try {
    let failing = true;
    const started: number[] = [];
    h.worker(
      'exec.scanner',
      async () => {
        started.push(Date.now());
        if (failing) throw new Error('down');
        await new Promise((r) => setTimeout(r, 1500)); // probes stay in flight: nothing else may start
      },
      { concurrency: 20 },
    );
    await h.ingress.addBulk(Array.from({ length: 3 }, (_, i) => ({ name: 'scan.image', data: { tenantId: 'p', i } })));
    await waitFor(async () => (await breakerOf('scanner')).state === 'open', 'open');
    failing = false;
    await h.ingress.addBulk(Array.from({ length: 40 }, (_, i) => ({ name: 'scan.image', data: { tenantId: `p${i % 4}`, i } })));
    await waitFor(async () => (await breakerOf('scanner')).state === 'half-open', 'half-open', 10_000, 20);
    const halfOpenAt = Date.now();
    await new Promise((r) => setTimeout(r, 1000)); // both gates drain repeatedly meanwhile
    const probes = started.filter((t) => t >= halfOpenAt - 300);
    process.stdout.write(`half-open with two gates: ${probes.length} probes started\n`);
    expect(probes).toHaveLength(breaker.halfOpenProbes);
  } finally {
    gates.forEach((g) => g.kill('SIGKILL'));
    await Promise.all(gates.map((g) => g.exited));
  }
});
