/**
 * Alerts with real processes: two gates, two observers (each detecting, relaying and delivering) and
 * an API, on a private Redis and Postgres, with a real webhook receiver on loopback that verifies
 * every signature with the standardwebhooks library.
 *
 * - a tenant driven past 80, 95 and 100 % of its daily total: exactly 3 alerts, 3 webhook events;
 * - usage moving around 80 % for 30 s (the daily total changed back and forth): 1 alert;
 * - a breaker trip reaches the webhook and the notifications queue within 2 s of the transition;
 * - the receiver down for 30 s: everything sent meanwhile arrives afterwards, nothing dead, repeats
 *   only under the same webhook-id;
 * - the delivering observer killed -9 while its request is in flight: the other observer sends it
 *   again, with the same webhook-id, once the lease ends.
 */
import { Queue } from 'bullmq';
import { Client } from 'pg';
import { chaosConfigInput, startCluster, type Cluster } from './support/cluster';
import { apiClient, waitReady, type ApiClient } from './support/ops';
import type { Child } from '../support/processes';
import { waitFor } from '../support/services';
import { startReceiver, TEST_SECRET, type Receiver } from '../support/webhook-receiver';

jest.setTimeout(240_000);

let c: Cluster;
let rx: Receiver;
let api: ApiClient;
let pg: Client;
let observers: Child[] = [];
let notifications: Queue;

beforeAll(async () => {
  rx = await startReceiver();
  c = await startCluster(
    'alerts',
    chaosConfigInput({
      alerts: { evaluateIntervalMs: 200 },
      notifier: {
        webhooks: [{ name: 'ops', url: rx.url, secret: TEST_SECRET, timeoutMs: 2500 }],
        retry: { maxAttempts: 40, baseDelayMs: 200, maxDelayMs: 3000 },
        pollMs: 100,
        leaseMs: 3000,
      },
      downstreams: [
        { name: 'scanner', capacity: 20, breaker: { consecutiveFailures: 3, minimumCalls: 1000, openMs: 60_000 } },
        { name: 'attestor', capacity: 20 },
        { name: 'policy', capacity: 100 },
      ],
    }),
  );
  api = await apiClient();
  c.spawn('api', api.env);
  c.spawn('gate');
  c.spawn('gate');
  observers = [c.spawn('observer'), c.spawn('observer')];
  c.startExec({
    work: async (job) => {
      if ((job.data as { fail?: boolean }).fail) throw new Error('scanner unavailable: connect ECONNREFUSED');
    },
  });
  await waitReady(api.port);
  pg = new Client({ connectionString: c.dbUrl });
  await pg.connect();
  notifications = new Queue('notifications', { connection: c.conn, prefix: c.prefix });
});
afterAll(async () => {
  await notifications?.close();
  await pg?.end();
  await c?.close();
  await rx?.close();
});
afterEach(() => {
  rx.answer = () => 204;
});

const jobsOf = (tenant: string, n: number, name = 'policy.eval', data: Record<string, unknown> = {}) =>
  Array.from({ length: n }, (_, i) => ({ name, data: { tenantId: tenant, i, ...data }, opts: { removeOnComplete: true } }));
const alertsOf = async (tenant: string) => (await api.get(`/api/v1/alerts?tenantId=${tenant}`)).body.items as any[];
const hooksOf = (tenant: string) => rx.received.filter((r) => r.body?.data?.alert?.tenantId === tenant);
const admitted = async (tenant: string) => Number((await api.get(`/api/v1/quotas/${tenant}/usage`)).body.quotas[0].periods.day.used);

it('two gates and two observers: 80, 95 and 100 % of a daily total make exactly 3 alerts, each delivered once and signed', async () => {
  expect((await api.send('PUT', '/api/v1/quotas/daily', { periods: { day: 20 } })).status).toBe(201);
  await c.produce(jobsOf('daily', 25));
  await waitFor(async () => (await admitted('daily')) === 20, '20 admitted', 30_000);
  await waitFor(async () => (await alertsOf('daily')).length === 3 && hooksOf('daily').length >= 3, 'three alerts delivered', 15_000);
  // Both observers go on evaluating: nothing more may come.
  await new Promise((r) => setTimeout(r, 2000));
  const alerts = await alertsOf('daily');
  expect(alerts.map((a) => a.threshold).sort((a, b) => a - b)).toEqual([80, 95, 100]);
  const hooks = hooksOf('daily');
  expect(hooks.every((h) => h.verified)).toBe(true);
  expect(hooks.map((h) => h.body.type)).toEqual(['alert.opened', 'alert.opened', 'alert.opened']);
  expect(new Set(hooks.map((h) => h.id)).size).toBe(3);
  const queued = (await notifications.getJobs(['waiting'])).filter((j) => j.data.data.alert.tenantId === 'daily');
  expect(queued.map((j) => j.id).sort()).toEqual(hooks.map((h) => h.id).sort());
  const rows = await pg.query("SELECT count(*)::int AS n FROM alerts WHERE tenant_id = 'daily'");
  expect(rows.rows[0].n).toBe(3);
});

it('usage moving around 80 % for 30 s makes one alert', async () => {
  expect((await api.send('PUT', '/api/v1/quotas/wobble', { periods: { day: 100 } })).status).toBe(201);
  await c.produce(jobsOf('wobble', 80));
  await waitFor(async () => (await admitted('wobble')) === 80, '80 admitted', 30_000);
  await waitFor(async () => (await alertsOf('wobble')).length === 1, 'the 80 % alert', 10_000);
  // 80 of 97 = 82.5 %, 80 of 103 = 77.7 %: across the threshold, inside the 5-point re-arm margin.
  const until = Date.now() + 30_000;
  let flips = 0;
  while (Date.now() < until) {
    const day = flips++ % 2 === 0 ? 103 : 97;
    expect((await api.send('PATCH', '/api/v1/quotas/wobble', { periods: { day } })).status).toBe(200);
    await new Promise((r) => setTimeout(r, 500));
  }
  expect(flips).toBeGreaterThan(40);
  const alerts = await alertsOf('wobble');
  expect(alerts).toHaveLength(1);
  expect(alerts[0]).toMatchObject({ state: 'open', threshold: 80 });
  expect(hooksOf('wobble').map((h) => h.body.type)).toEqual(['alert.opened']);
});

it('a breaker trip reaches the webhook and the notifications queue within 2 s', async () => {
  const before = rx.received.length;
  await c.produce(jobsOf('brk', 5, 'scan.image', { fail: true }));
  await waitFor(() => rx.received.slice(before).some((r) => r.body?.data?.alert?.kind === 'breaker'), 'breaker webhook', 20_000);
  const hook = rx.received.slice(before).find((r) => r.body.data.alert.kind === 'breaker')!;
  expect(hook.verified).toBe(true);
  expect(hook.body).toMatchObject({ type: 'alert.opened', data: { alert: { downstream: 'scanner', detail: { from: 'closed', to: 'open' } } } });
  const breaker = (await api.get('/api/v1/breakers/scanner')).body;
  const trip = (breaker.transitions as any[]).find((t) => t.to === 'open');
  const trippedAt = Date.parse(trip.at);
  const job = await notifications.getJob(hook.id);
  expect(job?.data).toEqual(hook.body);
  process.stdout.write(`[chaos] alerts: breaker trip → webhook ${hook.at - trippedAt} ms, → notifications queue ${job!.timestamp - trippedAt} ms\n`);
  expect(hook.at - trippedAt).toBeLessThanOrEqual(2000);
  expect(job!.timestamp - trippedAt).toBeLessThanOrEqual(2000);
  expect((await api.send('POST', '/api/v1/breakers/scanner/reset')).status).toBe(200);
});

it('a receiver down for 30 s gets everything afterwards, none dead, repeats only under the same webhook-id', async () => {
  await rx.stop();
  const downAt = Date.now();
  expect((await api.send('PUT', '/api/v1/quotas/outage', { periods: { day: 10 } })).status).toBe(201);
  await c.produce(jobsOf('outage', 10));
  await waitFor(async () => (await alertsOf('outage')).length === 3, 'three alerts while the receiver is down', 20_000);
  await new Promise((r) => setTimeout(r, Math.max(0, downAt + 30_000 - Date.now())));
  const pendingDuring = await pg.query("SELECT count(*)::int AS n, max(attempts)::int AS attempts FROM notifications WHERE state = 'pending' AND target = 'webhook:ops'");
  expect(pendingDuring.rows[0].n).toBeGreaterThanOrEqual(3);
  expect(pendingDuring.rows[0].attempts).toBeGreaterThan(2);
  await rx.restart();
  await waitFor(async () => (await pg.query("SELECT count(*)::int AS n FROM notifications WHERE state <> 'delivered'")).rows[0].n === 0, 'everything delivered', 30_000);
  const all = await pg.query<{ event_id: string }>("SELECT event_id FROM notifications WHERE target = 'webhook:ops'");
  const delivered = rx.delivered();
  for (const r of all.rows) expect(delivered.has(r.event_id)).toBe(true);
  // Every request carried an event id Postgres knows, and was signed.
  const known = new Set(all.rows.map((r) => r.event_id));
  expect(rx.received.every((r) => known.has(r.id) && r.verified)).toBe(true);
  expect(hooksOf('outage').filter((h) => h.status === 204)).toHaveLength(3);
});

it('kill -9 of the delivering observer mid-request loses nothing: the other sends it again under the same webhook-id', async () => {
  let hung = false;
  rx.answer = (r) => {
    if (r.body?.data?.alert?.tenantId === 'killed' && !hung) {
      hung = true;
      return 'hang';
    }
    return 204;
  };
  expect((await api.send('PUT', '/api/v1/quotas/killed', { periods: { day: 10 } })).status).toBe(201);
  expect((await api.send('PUT', '/api/v1/alert-rules/killed', { periodThresholds: [50] })).status).toBe(200);
  await c.produce(jobsOf('killed', 5));
  await waitFor(() => hung, 'the request in flight', 20_000);
  const row = (await pg.query("SELECT id, locked_by, event_id FROM notifications WHERE target = 'webhook:ops' AND body->'data'->'alert'->>'tenantId' = 'killed'")).rows[0];
  const pid = Number(String(row.locked_by).split(':')[1]);
  const victim = observers.find((o) => o.proc.pid === pid);
  expect(victim).toBeDefined();
  victim!.kill('SIGKILL');
  await victim!.exited;
  await waitFor(() => hooksOf('killed').some((h) => h.status === 204), 'sent again by the other observer', 20_000);
  const tries = hooksOf('killed');
  expect(tries.map((t) => t.status)).toEqual(['hang', 204]);
  expect(new Set(tries.map((t) => t.id))).toEqual(new Set([row.event_id]));
  await waitFor(async () => (await pg.query(`SELECT state FROM notifications WHERE id = ${row.id}`)).rows[0].state === 'delivered', 'marked delivered');
  observers = observers.filter((o) => o !== victim);
});
