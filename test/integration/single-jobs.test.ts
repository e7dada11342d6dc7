/**
 * Single jobs and single calls that must not halt a downstream, lose a job or freeze the API
 * (issue 10): a cost no downstream or quota can ever admit, job ids BullMQ refuses downstream
 * (schedulers whose id holds ':'), an execution add that fails on every attempt, custom job ids
 * reused across tenants and after the first job ended, absurd numbers, and mutations without a
 * body. (The expensive what-if simulation is timed in test/scale/simulation.test.ts, run alone.) Real Redis, real Postgres, plain BullMQ around tollgate.
 */
import type { Job } from 'bullmq';
import { parseApiTokens } from '../../src/config/tokens';
import type { DeadLetterData } from '../../src/queues/dead-letter';
import { execJobId, jobKey, Keys } from '../../src/redis/keys';
import { createHarness, type Harness, recordExecutions } from '../support/harness';
import { waitFor } from '../support/services';

jest.setTimeout(60_000);

const ADMIN = 'admin-secret-0123456789';
const READER = 'reader-secret-0123456789';
const ACME = 'acme-secret-0123456789';
const GLOBEX = 'globex-secret-0123456789';
const TOKENS = `ops:${ADMIN}:admin,dash:${READER}:read,acme:${ACME}:tenant:acme,globex:${GLOBEX}:tenant:globex`;

let h: Harness;
/** Execution jobs received per queue. */
const executed = new Map<string, Job[]>();
const ran = (queue: string, pred: (j: Job) => boolean = () => true) => (executed.get(queue) ?? []).filter(pred);

beforeAll(async () => {
  h = await createHarness('single-jobs', { env: { apiTokens: parseApiTokens(TOKENS) } });
  await h.start();
  recordExecutions(h, executed, 100);
});
afterAll(async () => {
  await h.close();
});

const deadLetter = async (ingressId: string, instance?: string) => {
  const job = await h.queue('dead-letter').getJob(execJobId(instance ?? jobKey(ingressId)));
  return job?.data as DeadLetterData | undefined;
};
const inflight = (downstream: string) => h.redis.zcard(new Keys(h.prefix).inflight(downstream));

describe('a cost no limit can ever admit', () => {
  it('is dead-lettered at once with its reason, and every other tenant still runs', async () => {
    // The scanner's capacity is 50: a job of cost 51 used to sit at the head of the scheduler for good.
    const hog = await h.ingress.add('scan.image', { tenantId: 'hog', cost: 51 });
    const others = await h.ingress.addBulk(Array.from({ length: 50 }, (_, i) => ({ name: 'scan.image', data: { tenantId: `other-${i}`, mark: 'after-hog' } })));
    await waitFor(() => ran('exec.scanner', (j) => j.data.mark === 'after-hog').length === 50 || undefined, '50 other tenants to run', 10_000);
    const dl = await waitFor(() => deadLetter(hog.id!), 'the hog to be dead-lettered', 5_000);
    expect({ reason: dl.reason, code: dl.code }).toEqual({ reason: 'cost-over-capacity', code: 'TG_ERR_COST_OVER_CAPACITY' });
    expect(dl.message).toMatch(/51/);
    expect(dl.message).toMatch(/50/);
    expect(others).toHaveLength(50);
    await waitFor(async () => (await inflight('scanner')) === 0 || undefined, 'every slot back');
  });

  it('that only a lowered policy makes impossible is refused from the waiting place, not left at the head', async () => {
    // Jobs of cost 10 wait behind a full attestor (capacity 20); then the capacity is cut to 5.
    const blockers = await h.ingress.addBulk(Array.from({ length: 2 }, (_, i) => ({ name: 'attest.sbom', data: { tenantId: 'big', cost: 10, sleepMs: 1500, i } })));
    await waitFor(() => ran('exec.attestor', (j) => j.data.tenantId === 'big').length === 2 || undefined, 'the blockers to run');
    const waiting = await h.ingress.addBulk(Array.from({ length: 3 }, (_, i) => ({ name: 'attest.sbom', data: { tenantId: 'big', cost: 10, i: 10 + i } })));
    const small = await h.ingress.addBulk(Array.from({ length: 5 }, (_, i) => ({ name: 'attest.sbom', data: { tenantId: 'small', i } })));
    await waitFor(async () => (await h.ingress.count()) === 0 || undefined, 'intake');
    const put = await h.api('PUT', '/api/v1/policies/attestor', { body: { kind: 'proportional', capacity: 5 }, token: ADMIN, reason: 'attestor degraded' });
    expect(put.status).toBe(200);
    await waitFor(() => ran('exec.attestor', (j) => j.data.tenantId === 'small').length === 5 || undefined, 'the small tenant to run', 10_000);
    for (const j of waiting) {
      const dl = await waitFor(() => deadLetter(j.id!), `waiting job ${j.id} dead-lettered`, 5_000);
      expect(dl.reason).toBe('cost-over-capacity');
    }
    expect(blockers).toHaveLength(2);
    expect(small).toHaveLength(5);
    await h.api('PUT', '/api/v1/policies/attestor', { body: { kind: 'proportional', capacity: 20 }, token: ADMIN, reason: 'restored' });
  });

  it('that fits the configured capacity but not the adaptive capacity in force runs alone instead of waiting for good', async () => {
    // Adaptive capacity cut the policy's 100 units to 3 (what the AIMD controller writes): a job of cost 8
    // fits the downstream, just not beside others; it must run once nothing else is in flight.
    const cap = new Keys(h.prefix).downstream('policy', 'adaptiveCapacity');
    await h.redis.set(cap, 3);
    try {
      const big = await h.ingress.add('policy.eval', { tenantId: 'wide', cost: 8, mark: 'alone' });
      await h.ingress.addBulk(Array.from({ length: 4 }, (_, i) => ({ name: 'policy.eval', data: { tenantId: 'narrow', i, mark: 'beside' } })));
      await waitFor(() => ran('exec.policy', (j) => j.data.mark === 'alone').length === 1 || undefined, 'the big job to run', 10_000);
      await waitFor(() => ran('exec.policy', (j) => j.data.mark === 'beside').length === 4 || undefined, 'the small ones to run');
      expect(await deadLetter(big.id!)).toBeUndefined();
    } finally {
      await h.redis.del(cap);
    }
  });

  it('above its quota (max concurrent, burst, a period total) is refused without blocking the rest of its flow', async () => {
    expect((await h.api('PUT', '/api/v1/quotas/tight', { body: { maxConcurrent: 3 }, token: ADMIN })).status).toBe(201);
    expect((await h.api('PUT', '/api/v1/quotas/tight?jobType=policy.*', { body: { rate: 5, burst: 4, periods: { day: 1000 } }, token: ADMIN })).status).toBe(201);
    expect((await h.api('PUT', '/api/v1/quotas/tight?jobType=attest.*', { body: { periods: { hour: 2 } }, token: ADMIN })).status).toBe(201);
    const overSlots = await h.ingress.add('scan.image', { tenantId: 'tight', cost: 4 });
    const overBurst = await h.ingress.add('policy.eval', { tenantId: 'tight', cost: 5 });
    const overPeriod = await h.ingress.add('attest.sbom', { tenantId: 'tight', cost: 3 });
    // The same flows right behind them: each must run.
    await h.ingress.add('scan.image', { tenantId: 'tight', mark: 'behind' });
    await h.ingress.add('policy.eval', { tenantId: 'tight', mark: 'behind' });
    await h.ingress.add('attest.sbom', { tenantId: 'tight', mark: 'behind' });
    for (const q of ['exec.scanner', 'exec.policy', 'exec.attestor']) {
      await waitFor(() => ran(q, (j) => j.data.tenantId === 'tight' && j.data.mark === 'behind').length === 1 || undefined, `the job behind on ${q}`, 10_000);
    }
    const reasons = await Promise.all([overSlots, overBurst, overPeriod].map((j) => waitFor(() => deadLetter(j.id!), `${j.id} dead-lettered`)));
    expect(reasons.map((d) => [d.reason, d.code])).toEqual([
      ['cost-over-quota', 'TG_ERR_COST_OVER_QUOTA'],
      ['cost-over-quota', 'TG_ERR_COST_OVER_QUOTA'],
      ['cost-over-quota', 'TG_ERR_COST_OVER_QUOTA'],
    ]);
    expect(reasons[0]!.message).toMatch(/maxConcurrent of 3/);
    expect(reasons[1]!.message).toMatch(/burst of 4/);
    expect(reasons[2]!.message).toMatch(/hour total of 2/);
  });
});

describe('job ids BullMQ refuses downstream', () => {
  it("a job scheduler whose id holds ':' runs on schedule through the gate and keeps no slot", async () => {
    await h.ingress.upsertJobScheduler('acme:nightly:scan', { every: 250 }, { name: 'scan.image', data: { tenantId: 'acme', mark: 'scheduled' } });
    try {
      await waitFor(() => ran('exec.scanner', (j) => j.data.mark === 'scheduled').length >= 4 || undefined, 'four scheduled runs', 15_000);
    } finally {
      await h.ingress.removeJobScheduler('acme:nightly:scan');
    }
    const runs = ran('exec.scanner', (j) => j.data.mark === 'scheduled');
    for (const j of runs) expect(j.id).toMatch(/^tg-repeat%3Aacme%3Anightly%3Ascan%3A\d+$/);
    // Each run's slot came back: nothing of the scheduler is left in flight.
    await waitFor(async () => (await inflight('scanner')) === 0 || undefined, 'no slot kept', 10_000);
    // And the job is found by the id BullMQ gave it.
    const ingressId = runs[0]!.id!.slice(3).replace(/%3A/g, ':');
    const loc = await h.api('GET', `/api/v1/jobs/${encodeURIComponent(ingressId)}`, { token: ADMIN });
    expect(loc.body).toMatchObject({ place: 'exec', jobId: runs[0]!.id });
  });

  it('custom ids with any characters BullMQ accepts on ingress reach their worker', async () => {
    const ids = ['a:b:c', '100%', 'x~y', 'weird %3A id', 'ünïcode-✓'];
    for (const id of ids) await h.ingress.add('policy.eval', { tenantId: 'acme', mark: `custom-${id}` }, { jobId: id });
    await waitFor(() => ran('exec.policy', (j) => String(j.data.mark).startsWith('custom-')).length === ids.length || undefined, 'every custom id run');
    const got = ran('exec.policy', (j) => String(j.data.mark).startsWith('custom-')).map((j) => [j.data.mark, j.id]);
    expect(Object.fromEntries(got)).toEqual(Object.fromEntries(ids.map((id) => [`custom-${id}`, execJobId(jobKey(id))])));
    // Distinct ingress ids give distinct execution ids (the encoding is one-to-one).
    expect(new Set(got.map(([, id]) => id)).size).toBe(ids.length);
  });

  it('an execution add that fails on every attempt is dead-lettered with its reason and gives its slot back', async () => {
    // A job whose stored options make BullMQ refuse the execution add (a size limit below its data):
    // written the way a producer on another client or version could leave it in ingress.
    const poison = await h.ingress.add('scan.image', { tenantId: 'poisoner', blob: 'x'.repeat(200) }, { delay: 60_000 });
    const key = `${h.prefix}:${h.config.queues.ingress}:${poison.id}`;
    const opts = JSON.parse((await h.redis.hget(key, 'opts'))!);
    await h.redis.hset(key, 'opts', JSON.stringify({ ...opts, sizeLimit: 10 }));
    await poison.promote();
    await h.ingress.add('scan.image', { tenantId: 'bystander', mark: 'after-poison' });
    await waitFor(() => ran('exec.scanner', (j) => j.data.mark === 'after-poison').length === 1 || undefined, 'the bystander to run');
    const dl = await waitFor(() => deadLetter(poison.id!), 'the poison job dead-lettered', 10_000);
    expect({ reason: dl.reason, code: dl.code }).toEqual({ reason: 'exec-refused', code: 'TG_ERR_EXEC_REFUSED' });
    expect(dl.message).toMatch(/exceeds the limit 10 bytes/);
    await waitFor(async () => (await inflight('scanner')) === 0 || undefined, 'its slot back');
    const usage = await h.api('GET', '/api/v1/quotas/poisoner/usage', { token: ADMIN });
    expect(usage.body.quotas[0].inFlight).toBe(0);
  });
});

describe('custom job ids reused', () => {
  const lookup = (id: string, token: string) => h.api('GET', `/api/v1/jobs/${encodeURIComponent(id)}`, { token });

  it("by another tenant: both jobs run, and each tenant's token sees its own", async () => {
    const id = 'invoice-2026-11-27';
    await h.ingress.add('policy.eval', { tenantId: 'acme', mark: 'invoice-acme' }, { jobId: id });
    await waitFor(() => ran('exec.policy', (j) => j.data.mark === 'invoice-acme').length === 1 || undefined, "acme's job to run");
    await h.ingress.add('policy.eval', { tenantId: 'globex', mark: 'invoice-globex' }, { jobId: id });
    await waitFor(() => ran('exec.policy', (j) => j.data.mark === 'invoice-globex').length === 1 || undefined, "globex's job to run");
    expect((await lookup(id, GLOBEX)).body).toMatchObject({ tenantId: 'globex', place: 'exec' });
    expect((await lookup(id, ACME)).body).toMatchObject({ tenantId: 'acme', place: 'exec' });
  });

  it('after the first was dead-lettered: the new job runs, the dead-letter entry stays', async () => {
    const id = 'reused-after-dead';
    await h.ingress.add('policy.eval', { tenantId: 'acme', cost: 'lots' }, { jobId: id });
    await waitFor(() => deadLetter(id), 'the first to be dead-lettered');
    await h.ingress.add('policy.eval', { tenantId: 'globex', mark: 'after-dead' }, { jobId: id });
    await waitFor(() => ran('exec.policy', (j) => j.data.mark === 'after-dead').length === 1 || undefined, "globex's job to run");
    // (Ingress itself refuses the id while globex's job is still in it: wait until it left.)
    await waitFor(async () => (await h.ingress.getJobState(id)) === 'unknown' || undefined, "globex's job out of ingress");
    await h.ingress.add('policy.eval', { tenantId: 'acme', mark: 'after-dead' }, { jobId: id });
    await waitFor(() => ran('exec.policy', (j) => j.data.mark === 'after-dead').length === 2 || undefined, "acme's new job to run");
    expect((await deadLetter(id))!.reason).toBe('invalid-cost');
    expect((await lookup(id, GLOBEX)).body).toMatchObject({ tenantId: 'globex', place: 'exec' });
  });

  it('by the same tenant: runs again once the first finished; a duplicate of one still waiting is refused, not doubled', async () => {
    const id = 'nightly-report';
    await h.ingress.add('policy.eval', { tenantId: 'acme', mark: 'report-1' }, { jobId: id });
    await waitFor(() => ran('exec.policy', (j) => j.data.mark === 'report-1').length === 1 || undefined, 'the first run');
    await waitFor(async () => (await h.ingress.getJobState(id)) === 'unknown' || undefined, 'the first out of ingress');
    await h.ingress.add('policy.eval', { tenantId: 'acme', mark: 'report-2' }, { jobId: id });
    await waitFor(() => ran('exec.policy', (j) => j.data.mark === 'report-2').length === 1 || undefined, 'the second run');

    // A paused quota keeps the third waiting; a re-add of it meanwhile is a duplicate.
    expect((await h.api('PUT', '/api/v1/quotas/dupe', { body: { paused: true }, token: ADMIN })).status).toBe(201);
    const waitingId = 'held-report';
    await h.ingress.add('policy.eval', { tenantId: 'dupe', mark: 'held-1' }, { jobId: waitingId });
    await waitFor(async () => (await lookup(waitingId, ADMIN)).body?.place === 'waiting' || undefined, 'the first to wait');
    await h.ingress.add('policy.eval', { tenantId: 'dupe', mark: 'held-2' }, { jobId: waitingId });
    await waitFor(async () => (await h.ingress.getJobState(waitingId)) === 'unknown' || undefined, 'the duplicate out of ingress');
    expect((await h.api('PATCH', '/api/v1/quotas/dupe', { body: { paused: false }, token: ADMIN })).status).toBe(200);
    await waitFor(() => ran('exec.policy', (j) => j.data.tenantId === 'dupe').length === 1 || undefined, 'the held job to run');
    await new Promise((r) => setTimeout(r, 500)); // room for a wrong second run to show up
    expect(ran('exec.policy', (j) => j.data.tenantId === 'dupe').map((j) => j.data.mark)).toEqual(['held-1']);
    const dlq = await h.queue('dead-letter').getJobs(['waiting']);
    const dup = dlq.find((j) => (j.data as DeadLetterData).ingressJobId === waitingId);
    expect(dup?.data).toMatchObject({ reason: 'duplicate-job-id', code: 'TG_ERR_DUPLICATE_JOB_ID', tenantId: 'dupe', job: { data: { mark: 'held-2' } } });
  });
});

describe('absurd numbers', () => {
  it('are refused by the API with the field named', async () => {
    const cases: Array<[string, string, unknown, string]> = [
      ['PUT', '/api/v1/quotas/tiny', { rate: 1e-300 }, 'body.rate'],
      ['PUT', '/api/v1/quotas/tiny', { rate: 5e-324 }, 'body.rate'],
      ['POST', '/api/v1/throttles', { tenantId: 'tiny', action: 'slow', rate: 1e-300 }, 'body.rate'],
      ['PUT', '/api/v1/policies/scanner', { kind: 'proportional', defaultWeight: 1e-300 }, 'body.defaultWeight'],
      ['PUT', '/api/v1/policies/scanner', { kind: 'proportional', tenants: { a: { weight: 1e-300 } } }, 'body.tenants.a.weight'],
      ['PUT', '/api/v1/policies/scanner', { kind: 'priority', agingMs: 1e300 }, 'body.agingMs'],
    ];
    for (const [method, path, body, field] of cases) {
      const res = await h.api(method, path, { body, token: ADMIN });
      expect({ path, body, status: res.status, error: res.body.error, fields: res.body.details?.map((d: { field: string }) => d.field) }).toEqual({
        path,
        body,
        status: 400,
        error: 'TG_ERR_VALIDATION',
        fields: expect.arrayContaining([field]),
      });
    }
  });

  it('in a job (a deadline past year 9999) dead-letter it with its reason', async () => {
    const j = await h.ingress.add('policy.eval', { tenantId: 'acme', deadline: 1e300 });
    expect((await waitFor(() => deadLetter(j.id!), 'dead-lettered')).reason).toBe('invalid-deadline');
  });

  it('already stored in Redis (written before these checks) never make a script fail part-way or a lookup answer 500', async () => {
    // Definitions as an older version could have mirrored them: a rate of 5e-324 and 1e-300, a weight of 1e-300.
    const k = new Keys(h.prefix);
    await h.redis.hset(k.quotaDefs('ancient'), 'q900', JSON.stringify({ id: 'q900', sp: 0, r: 5e-324, rej: 0, p: 0 }));
    await h.redis.hset(k.quotaDefs('ancient2'), 'q901', JSON.stringify({ id: 'q901', sp: 0, r: 1e-300, rej: 0, p: 0 }));
    await h.redis.sadd(k.quotaTenants(), 'ancient', 'ancient2');
    await h.redis.hset(k.downstream('scanner', 'policyTenants'), 'ancient', JSON.stringify({ w: 1e-300 }));
    const jobs = [];
    for (const t of ['ancient', 'ancient2']) {
      for (let i = 0; i < 3; i++) jobs.push(await h.ingress.add('scan.image', { tenantId: t, i }));
    }
    await h.ingress.add('scan.image', { tenantId: 'bystander', mark: 'after-ancient' });
    await waitFor(() => ran('exec.scanner', (j) => j.data.mark === 'after-ancient').length === 1 || undefined, 'the bystander to run');
    await waitFor(async () => (await h.ingress.count()) === 0 || undefined, 'intake');
    for (const j of jobs) {
      const loc = await h.api('GET', `/api/v1/jobs/${j.id}`, { token: ADMIN });
      expect(loc.status).toBe(200);
      // Admitted (the first token), or waiting for a finite instant.
      if (loc.body.place === 'waiting' && loc.body.waiting.until) expect(Number.isFinite(Date.parse(loc.body.waiting.until))).toBe(true);
      else expect(['exec', 'waiting']).toContain(loc.body.place);
    }
    const bp = await h.api('GET', '/api/v1/backpressure?tenantId=ancient&jobName=scan.image', { token: ADMIN });
    expect(bp.status).toBe(200);
    expect(JSON.stringify(bp.body)).not.toMatch(/e\+|Infinity|null/);
    await h.redis.del(k.quotaDefs('ancient'), k.quotaDefs('ancient2'));
    await h.redis.srem(k.quotaTenants(), 'ancient', 'ancient2');
    await h.redis.hdel(k.downstream('scanner', 'policyTenants'), 'ancient');
  });
});

describe('mutations without a body', () => {
  it('answer 400 and change nothing', async () => {
    expect((await h.api('PUT', '/api/v1/quotas/keeper', { body: { rate: 7, maxConcurrent: 4 }, token: ADMIN })).status).toBe(201);
    const send = async (method: string, path: string, raw?: string) => {
      const res = await fetch(`${h.tollgate!.url}${path}`, {
        method,
        headers: { authorization: `Bearer ${ADMIN}`, 'x-operator-reason': 'test', ...(raw !== undefined ? { 'content-type': 'application/json' } : {}) },
        ...(raw !== undefined ? { body: raw } : {}),
      });
      return { status: res.status, body: (await res.json()) as { error: string; message: string } };
    };
    for (const [method, path] of [
      ['PUT', '/api/v1/quotas/keeper'],
      ['PATCH', '/api/v1/quotas/keeper'],
      ['POST', '/api/v1/throttles'],
      ['PUT', '/api/v1/policies/scanner'],
      ['POST', '/api/v1/breakers/scanner/held/drain'],
    ] as const) {
      for (const raw of [undefined, 'null']) {
        const res = await send(method, path, raw);
        expect({ method, path, raw, status: res.status, error: res.body.error }).toEqual({ method, path, raw, status: 400, error: 'TG_ERR_VALIDATION' });
        expect(res.body.message).toMatch(/body/);
      }
    }
    const q = await h.api('GET', '/api/v1/quotas/keeper', { token: ADMIN });
    expect(q.body.quotas[0]).toMatchObject({ rate: 7, maxConcurrent: 4 });
  });
});
