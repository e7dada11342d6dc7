/**
 * Alerts end to end in one process (gate, observer, API) against real Redis, Postgres and a real
 * webhook receiver on loopback: period crossings, hysteresis, retries, dead notifications, breaker
 * alerts, the notifications queue, rules and acknowledgements over the API.
 */
import type { Job } from 'bullmq';
import { Client } from 'pg';
import { parseApiTokens } from '../../src/config/tokens';
import { createDatabase } from '../../src/db/client';
import { pruneAlerts } from '../../src/db/alerts';
import { Keys } from '../../src/redis/keys';
import { AlertDetector } from '../../src/notify/detector';
import type { Database } from '../../src/db/client';
import { createHarness, type Harness } from '../support/harness';
import { waitFor } from '../support/services';
import { startReceiver, TEST_SECRET, type Receiver } from '../support/webhook-receiver';

const ADMIN = 'admin-secret-0123456789';
const ACME = 'acme-secret-0123456789';
const TOKENS = `ops:${ADMIN}:admin,acme:${ACME}:tenant:acme`;

let h: Harness;
let rx: Receiver;
const ran = new Map<string, number>();

beforeAll(async () => {
  rx = await startReceiver();
  h = await createHarness('alerts', {
    env: { apiTokens: parseApiTokens(TOKENS) },
    config: {
      alerts: { evaluateIntervalMs: 100, saturationForMs: 500, capacityCutPercent: null },
      notifier: {
        webhooks: [{ name: 'ops', url: rx.url, secret: TEST_SECRET, timeoutMs: 1000 }],
        retry: { maxAttempts: 4, baseDelayMs: 50, maxDelayMs: 400 },
        pollMs: 50,
        leaseMs: 2000,
      },
      downstreams: [
        { name: 'scanner', capacity: 50, breaker: { minimumCalls: 3, failureRateThreshold: 0.5, window: { type: 'count', size: 5 }, consecutiveFailures: 3, openMs: 60_000 } },
        { name: 'attestor', capacity: 20 },
        { name: 'policy', capacity: 100 },
      ],
    },
  });
  await h.start();
  for (const q of ['exec.scanner', 'exec.attestor', 'exec.policy']) {
    h.worker(q, async (job: Job) => {
      ran.set(job.data.tenantId, (ran.get(job.data.tenantId) ?? 0) + 1);
      if (job.data.fail) throw new Error('scanner down');
      if (job.data.sleepMs) await new Promise((r) => setTimeout(r, job.data.sleepMs));
    });
  }
});
afterAll(async () => {
  await h.close();
  await rx.close();
});
afterEach(() => {
  rx.answer = () => 204;
});

const put = (tenant: string, body: unknown) => h.api('PUT', `/api/v1/quotas/${tenant}`, { body, token: ADMIN });
const add = (tenant: string, n: number, data: Record<string, unknown> = {}, name = 'policy.eval') =>
  h.ingress.addBulk(Array.from({ length: n }, (_, i) => ({ name, data: { tenantId: tenant, i, ...data } })));
const alertsOf = async (tenant: string, extra = '') => (await h.api('GET', `/api/v1/alerts?tenantId=${tenant}${extra}`, { token: ADMIN })).body.items as any[];
const sql = async (text: string) => {
  const c = new Client({ connectionString: h.db.url });
  await c.connect();
  try {
    return await c.query(text);
  } finally {
    await c.end();
  }
};
const webhooksOf = (tenant: string) => rx.received.filter((r) => r.body?.data?.alert?.tenantId === tenant);

it('opens one alert per threshold crossed (80, 95, 100 % of the day), each delivered signed to the webhook and to the notifications queue', async () => {
  expect((await put('daily', { periods: { day: 20 } })).status).toBe(201);
  await add('daily', 25);
  await waitFor(() => (ran.get('daily') ?? 0) === 20, '20 admitted');
  await waitFor(async () => (await alertsOf('daily')).length === 3 && webhooksOf('daily').length === 3, 'three alerts delivered');
  await waitFor(async () => (await h.queue('notifications').getJobs(['waiting'])).filter((j) => j.data.data.alert.tenantId === 'daily').length === 3, 'three queued');
  // Nothing more comes: the crossings are done.
  await new Promise((r) => setTimeout(r, 600));
  const alerts = await alertsOf('daily');
  expect(alerts.map((a) => a.threshold).sort((a, b) => a - b)).toEqual([80, 95, 100]);
  for (const a of alerts) {
    expect(a).toMatchObject({ kind: 'period_usage', state: 'open', tenantId: 'daily', window: { period: 'day' }, detail: { quotaId: expect.any(String), limit: 20 } });
    expect(a.value).toBeGreaterThanOrEqual(a.threshold);
  }
  const hooks = webhooksOf('daily');
  expect(hooks).toHaveLength(3);
  expect(hooks.every((r) => r.verified)).toBe(true);
  expect(hooks.map((r) => r.body.type)).toEqual(['alert.opened', 'alert.opened', 'alert.opened']);
  expect(new Set(hooks.map((r) => r.id)).size).toBe(3);
  expect(hooks.every((r) => r.body.id === r.id)).toBe(true);
  const queued = (await h.queue('notifications').getJobs(['waiting'])).filter((j) => j.data.data.alert.tenantId === 'daily');
  expect(queued.map((j) => j.id).sort()).toEqual(hooks.map((r) => r.id).sort());
  expect(queued.every((j) => j.name === 'alert.opened')).toBe(true);
});

it('keeps one alert while usage moves around the threshold inside the re-arm margin, and re-arms below it', async () => {
  expect((await put('wobble', { periods: { day: 100 } })).status).toBe(201);
  await add('wobble', 80);
  await waitFor(() => (ran.get('wobble') ?? 0) === 80, '80 admitted');
  await waitFor(async () => (await alertsOf('wobble')).length === 1, 'the 80 % alert');
  // 80 of 99..103: 80.8 %, 77.7 % ... inside the 5-point margin: the alert stays open, no new one.
  for (const day of [103, 99, 102, 98, 101, 99]) {
    await h.api('PATCH', '/api/v1/quotas/wobble', { body: { periods: { day } }, token: ADMIN });
    await new Promise((r) => setTimeout(r, 250));
  }
  let alerts = await alertsOf('wobble');
  expect(alerts).toHaveLength(1);
  expect(alerts[0].state).toBe('open');
  // 80 of 110 = 72.7 %: below 75, resolved; then 80 of 99 again: a new crossing, a second alert.
  await h.api('PATCH', '/api/v1/quotas/wobble', { body: { periods: { day: 110 } }, token: ADMIN });
  await waitFor(async () => (await alertsOf('wobble'))[0]?.state === 'resolved', 'resolved below the margin');
  await h.api('PATCH', '/api/v1/quotas/wobble', { body: { periods: { day: 99 } }, token: ADMIN });
  await waitFor(async () => (await alertsOf('wobble')).length === 2, 're-armed and opened again');
  alerts = await alertsOf('wobble');
  expect(alerts.map((a) => a.state)).toEqual(['open', 'resolved']);
  await waitFor(() => webhooksOf('wobble').length === 3, 'the resolve and the second opening delivered');
  expect(webhooksOf('wobble').map((r) => r.body.type)).toEqual(['alert.opened', 'alert.resolved', 'alert.opened']);
});

it('retries a failing receiver with backoff: it answers 503 three times and gets the same event the 4th time', async () => {
  rx.answer = (r) => (r.body?.data?.alert?.tenantId === 'flaky' && r.attempt <= 3 ? { status: 503, retryAfter: '0' } : 204);
  expect((await put('flaky', { periods: { day: 10 } })).status).toBe(201);
  await h.api('PUT', '/api/v1/alert-rules/flaky', { body: { periodThresholds: [50] }, token: ADMIN });
  await add('flaky', 5);
  await waitFor(() => webhooksOf('flaky').some((r) => r.status === 204), 'delivered on a later attempt', 10_000);
  const tries = webhooksOf('flaky');
  expect(tries.map((r) => r.status)).toEqual([503, 503, 503, 204]);
  expect(new Set(tries.map((r) => r.id)).size).toBe(1);
  expect(tries.every((r) => r.verified)).toBe(true);
  // Backoff: each wait at least half the exponential base (50, 100, 200 ms).
  for (let i = 1; i < tries.length; i++) expect(tries[i]!.at - tries[i - 1]!.at).toBeGreaterThanOrEqual(25 * 2 ** (i - 1) - 5);
  const [alert] = await alertsOf('flaky');
  const notes = (await h.api('GET', `/api/v1/notifications?alertId=${alert.id}`, { token: ADMIN })).body.items;
  expect(notes.find((n: any) => n.target === 'webhook:ops')).toMatchObject({ state: 'delivered', attempts: 4 });
});

it("keeps an alert opened under a tenant's own threshold open when an observer that has not read that rule yet evaluates", async () => {
  const [alert] = await alertsOf('flaky');
  expect(alert).toMatchObject({ state: 'open', threshold: 50 });
  // An observer whose Postgres has not answered since it started: it knows only the config's thresholds.
  const stale = new AlertDetector({
    redis: h.redis,
    keys: new Keys(h.prefix),
    config: h.config,
    database: { db: { select: () => { throw new Error('Postgres away'); } } } as unknown as Database,
    log: h.tollgate!.log,
    now: Date.now,
  });
  for (let i = 0; i < 3; i++) expect(await stale.evaluate()).toBe(0);
  await new Promise((r) => setTimeout(r, 500));
  expect((await h.api('GET', `/api/v1/alerts/${alert.id}`, { token: ADMIN })).body.state).toBe('open');
});

it('marks a notification dead after the last attempt, shows it over the API, and retries it on request', async () => {
  rx.answer = (r) => (r.body?.data?.alert?.tenantId === 'gone' ? 500 : 204);
  await put('gone', { periods: { day: 10 } });
  await h.api('PUT', '/api/v1/alert-rules/gone', { body: { periodThresholds: [50] }, token: ADMIN });
  await add('gone', 5);
  await waitFor(async () => (await h.api('GET', '/api/v1/notifications?state=dead', { token: ADMIN })).body.items.some((n: any) => n.body.data.alert.tenantId === 'gone'), 'dead', 10_000);
  const dead = (await h.api('GET', '/api/v1/notifications?state=dead', { token: ADMIN })).body.items.find((n: any) => n.body.data.alert.tenantId === 'gone');
  expect(dead).toMatchObject({ target: 'webhook:ops', attempts: 4, lastStatus: 500, lastError: 'receiver answered HTTP 500' });
  expect(webhooksOf('gone')).toHaveLength(4);
  const [alert] = await alertsOf('gone');
  expect(alert.delivery).toEqual({ pending: 0, delivered: 1, dead: 1 });
  rx.answer = () => 204;
  const retried = await h.api('POST', `/api/v1/notifications/${dead.id}/retry`, { token: ADMIN, reason: 'receiver fixed' });
  expect(retried.body).toMatchObject({ state: 'pending', attempts: 0 });
  await waitFor(() => webhooksOf('gone').some((r) => r.status === 204), 'delivered after the retry');
  expect(new Set(webhooksOf('gone').map((r) => r.id)).size).toBe(1);
  expect((await h.api('POST', `/api/v1/notifications/${dead.id}/retry`, { token: ADMIN })).status).toBe(409);
});

it('alerts on a breaker trip and resolves on its close, through the webhook and the notifications queue', async () => {
  const before = rx.received.length;
  await add('brk', 5, { fail: true }, 'scan.image');
  await waitFor(async () => (await h.api('GET', '/api/v1/alerts?kind=breaker&state=open', { token: ADMIN })).body.items.length === 1, 'breaker alert', 10_000);
  const [alert] = (await h.api('GET', '/api/v1/alerts?kind=breaker', { token: ADMIN })).body.items;
  expect(alert).toMatchObject({ kind: 'breaker', downstream: 'scanner', state: 'open', detail: { from: 'closed', to: 'open' } });
  await waitFor(() => rx.received.slice(before).some((r) => r.body.data.alert.kind === 'breaker'), 'breaker webhook');
  const hook = rx.received.slice(before).find((r) => r.body.data.alert.kind === 'breaker')!;
  expect(hook.body).toMatchObject({ type: 'alert.opened', data: { alert: { downstream: 'scanner' } } });
  const job = await h.queue('notifications').getJob(hook.id);
  expect(job?.data).toEqual(hook.body);
  // Forced closed: resolved.
  await h.api('POST', '/api/v1/breakers/scanner/close', { token: ADMIN });
  await waitFor(async () => (await h.api('GET', `/api/v1/alerts/${alert.id}`, { token: ADMIN })).body.state === 'resolved', 'resolved on close');
  await waitFor(() => rx.received.slice(before).some((r) => r.body.type === 'alert.resolved' && r.body.data.alert.kind === 'breaker'), 'resolve webhook');
  await h.api('POST', '/api/v1/breakers/scanner/reset', { token: ADMIN });
});

it('opens a saturation alert only after the configured time at maxConcurrent', async () => {
  await put('busy', { maxConcurrent: 2 });
  await add('busy', 4, { sleepMs: 1500 });
  await waitFor(async () => (await alertsOf('busy', '&kind=saturation')).length === 1, 'saturation alert', 5000);
  const [a] = await alertsOf('busy', '&kind=saturation');
  expect(a).toMatchObject({ threshold: 500, detail: { cause: 'concurrency', maxConcurrent: 2 } });
  expect(Date.parse(a.openedAt)).toBeGreaterThan(0);
  await waitFor(async () => (await alertsOf('busy', '&kind=saturation'))[0].state === 'resolved', 'resolved when the jobs end', 10_000);
});

it('sets, reads and removes a tenant alert rule with an audit entry; refuses a bad one; a tenant token sees only its alerts', async () => {
  const bad = await h.api('PUT', '/api/v1/alert-rules/acme', { body: { periodThresholds: [80, 80], backlogPercent: 0 }, token: ADMIN });
  expect(bad.status).toBe(400);
  expect(bad.body.error).toBe('TG_ERR_VALIDATION');
  const set = await h.api('PUT', '/api/v1/alert-rules/acme', { body: { periodThresholds: [50, 90], saturationForMs: null }, token: ADMIN, reason: 'acme asked' });
  expect(set.body).toMatchObject({ tenantId: 'acme', periodThresholds: [50, 90], saturationForMs: null, backlogPercent: 90, overrides: ['periodThresholds', 'saturationForMs'] });
  const audit = await sql("SELECT action, reason FROM audit_log WHERE resource_type = 'alert-rule' AND resource_id = 'acme'");
  expect(audit.rows).toEqual([{ action: 'alert-rule.create', reason: 'acme asked' }]);
  expect((await h.api('GET', '/api/v1/alert-rules/acme', { token: ACME })).body.periodThresholds).toEqual([50, 90]);
  expect((await h.api('GET', '/api/v1/alerts?tenantId=daily', { token: ACME })).status).toBe(403);
  const own = await h.api('GET', '/api/v1/alerts', { token: ACME });
  expect(own.status).toBe(200);
  expect(own.body.items.every((a: any) => a.tenantId === 'acme')).toBe(true);
  expect((await h.api('DELETE', '/api/v1/alert-rules/acme', { token: ADMIN })).body.overrides).toEqual([]);
  expect((await h.api('DELETE', '/api/v1/alert-rules/acme', { token: ADMIN })).status).toBe(404);
});

it('acknowledges an alert once, audited', async () => {
  const [a] = await alertsOf('daily');
  const first = await h.api('POST', `/api/v1/alerts/${a.id}/ack`, { token: ADMIN, reason: 'seen' });
  expect(first.body.acked).toMatchObject({ by: 'ops' });
  const again = await h.api('POST', `/api/v1/alerts/${a.id}/ack`, { token: ADMIN });
  expect(again.body.acked).toEqual(first.body.acked);
  expect((await h.api('POST', '/api/v1/alerts/999999/ack', { token: ADMIN })).status).toBe(404);
  const audit = await sql("SELECT count(*)::int AS n FROM audit_log WHERE action = 'alert.ack'");
  expect(audit.rows[0].n).toBe(1);
});

it('resolves an alert Postgres has open after Redis lost the alert state, once its condition ends', async () => {
  const [open] = await alertsOf('wobble', '&state=open');
  expect(open).toBeDefined();
  const keys = new Keys(h.prefix);
  // As after a flush of Redis: the open set, the pending times and the marker are gone.
  await h.redis.del(keys.alertsOpen(), keys.alertsSince(), keys.alertsSeeded());
  await h.api('PATCH', '/api/v1/quotas/wobble', { body: { periods: { day: 200 } }, token: ADMIN });
  await waitFor(async () => (await h.api('GET', `/api/v1/alerts/${open.id}`, { token: ADMIN })).body.state === 'resolved', 'resolved from the re-seeded state', 10_000);
  expect(await alertsOf('wobble', '&state=open')).toEqual([]);
});

it('deletes resolved alerts and delivered notifications past the retention, keeping open alerts and dead notifications', async () => {
  const database = createDatabase(h.db.url, h.tollgate!.log, { schema: h.env.pgSchema });
  try {
    const [resolved] = await alertsOf('wobble', '&state=resolved');
    await sql(`UPDATE alerts SET resolved_at = now() - interval '40 days' WHERE id = ${resolved.id}`);
    const openBefore = (await alertsOf('daily', '&state=open')).length;
    const deadBefore = (await h.api('GET', '/api/v1/notifications?state=dead', { token: ADMIN })).body.items.length;
    expect(await pruneAlerts(database.db, 30)).toBeGreaterThan(0);
    expect((await h.api('GET', `/api/v1/alerts/${resolved.id}`, { token: ADMIN })).status).toBe(404);
    expect((await sql(`SELECT count(*)::int AS n FROM notifications WHERE alert_id = ${resolved.id}`)).rows[0].n).toBe(0);
    expect((await alertsOf('daily', '&state=open')).length).toBe(openBefore);
    expect((await h.api('GET', '/api/v1/notifications?state=dead', { token: ADMIN })).body.items.length).toBe(deadBefore);
  } finally {
    await database.close();
  }
});
