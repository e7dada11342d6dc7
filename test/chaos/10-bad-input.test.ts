/**
 * RELIABILITY.md scenarios 10 and 13: a bad input storm mixed with good jobs, through two gates. Every
 * bad job is dead-lettered with the machine-readable reason of its one defect (checked per job, and
 * the per-reason counts exactly), with its original name and data kept; every good job (including the
 * ones exactly at a limit, and custom ids with the characters BullMQ refuses downstream) is executed
 * once with its data unchanged; conservation holds. With it, single hostile jobs and calls: costs no
 * limit can admit, a job scheduler whose id holds ':', jobs whose execution add BullMQ refuses, ids
 * reused by another tenant, absurd numbers and bodies over the API, an expensive simulation: none
 * keeps a slot, none stalls the others.
 */
import { createHash } from 'node:crypto';
import { ERRORS } from '../../src/errors';
import { execJobId, ingressIdOf, jobKey } from '../../src/redis/keys';
import { chaosConfigInput, expectConserved, sampleInflight, startCluster } from './support/cluster';
import { errorLines } from './support/lifecycle';
import { expectWithinCapacity } from './support/observe';
import { apiClient, waitReady } from './support/ops';
import { waitFor } from '../support/services';

jest.setTimeout(60_000);

const MAX_PAYLOAD = 4096;

interface Spec {
  name: string;
  data: unknown;
  opts?: Record<string, unknown>;
  /** Expected dead-letter reason; absent for a good job. */
  reason?: string;
}

/** Pads `base` with a `pad` string field so the serialized data is exactly `bytes` long (ASCII). */
function exactly(bytes: number, base: Record<string, unknown>): Record<string, unknown> {
  const empty = Buffer.byteLength(JSON.stringify({ ...base, pad: '' }), 'utf8');
  const out = { ...base, pad: 'p'.repeat(bytes - empty) };
  expect(Buffer.byteLength(JSON.stringify(out), 'utf8')).toBe(bytes);
  return out;
}

/** One of each defect (each bad job has exactly one), and good jobs at the edges of each rule. */
function variants(i: number): Spec[] {
  const t = `tenant-${i % 5}`;
  return [
    // invalid-payload: data that is not a JSON object
    { name: 'scan.image', data: 'not an object', reason: 'invalid-payload' },
    { name: 'scan.image', data: 42, reason: 'invalid-payload' },
    { name: 'policy.eval', data: [{ tenantId: t }], reason: 'invalid-payload' },
    { name: 'attest.sbom', data: null, reason: 'invalid-payload' },
    { name: 'attest.sbom', data: true, reason: 'invalid-payload' },
    // payload-too-large: one byte over, far over, and over in bytes but not in characters
    { name: 'scan.image', data: exactly(MAX_PAYLOAD + 1, { tenantId: t }), reason: 'payload-too-large' },
    { name: 'policy.eval', data: { tenantId: t, blob: 'x'.repeat(20_000) }, reason: 'payload-too-large' },
    { name: 'attest.sbom', data: { tenantId: t, blob: 'é'.repeat(2100) }, reason: 'payload-too-large' },
    // job-name-too-long: one character over limits.maxJobNameLength (256)
    { name: `scan.${'n'.repeat(252)}`, data: { tenantId: t }, reason: 'job-name-too-long' },
    // missing-tenant
    { name: 'scan.image', data: { image: 'x' }, reason: 'missing-tenant' },
    { name: 'scan.image', data: { tenantId: '' }, reason: 'missing-tenant' },
    { name: 'policy.eval', data: { tenantId: null }, reason: 'missing-tenant' },
    // invalid-tenant
    { name: 'scan.image', data: { tenantId: 'bad tenant!' }, reason: 'invalid-tenant' },
    { name: 'attest.sbom', data: { tenantId: 42 }, reason: 'invalid-tenant' },
    { name: 'policy.eval', data: { tenantId: 'a'.repeat(129) }, reason: 'invalid-tenant' },
    { name: 'scan.image', data: { tenantId: { id: t } }, reason: 'invalid-tenant' },
    // invalid-priority (data.priority, and a negative BullMQ priority, which BullMQ itself accepts)
    { name: 'scan.image', data: { tenantId: t, priority: 'urgent' }, reason: 'invalid-priority' },
    { name: 'attest.sbom', data: { tenantId: t, priority: 1.5 }, reason: 'invalid-priority' },
    { name: 'policy.eval', data: { tenantId: t, priority: -1 }, reason: 'invalid-priority' },
    { name: 'scan.image', data: { tenantId: t, priority: 2_097_152 }, reason: 'invalid-priority' },
    { name: 'policy.eval', data: { tenantId: t }, opts: { priority: -5 }, reason: 'invalid-priority' },
    // invalid-cost
    { name: 'scan.image', data: { tenantId: t, cost: 0 }, reason: 'invalid-cost' },
    { name: 'attest.sbom', data: { tenantId: t, cost: 'two' }, reason: 'invalid-cost' },
    { name: 'policy.eval', data: { tenantId: t, cost: 10_001 }, reason: 'invalid-cost' },
    // invalid-deadline (an absurd number too: past the year 9999)
    { name: 'scan.image', data: { tenantId: t, deadline: 'tomorrow' }, reason: 'invalid-deadline' },
    { name: 'policy.eval', data: { tenantId: t, deadline: { at: 1 } }, reason: 'invalid-deadline' },
    { name: 'attest.sbom', data: { tenantId: t, deadline: 1e300 }, reason: 'invalid-deadline' },
    // cost-over-capacity (scanner 50, attestor 20) and cost-over-quota (tenant "tight": maxConcurrent 2)
    { name: 'scan.image', data: { tenantId: t, cost: 51 }, reason: 'cost-over-capacity' },
    { name: 'attest.sbom', data: { tenantId: t, cost: 21 }, reason: 'cost-over-capacity' },
    { name: 'policy.eval', data: { tenantId: 'tight', cost: 3 }, reason: 'cost-over-quota' },
    // no-route, unknown-downstream
    { name: 'mystery.job', data: { tenantId: t }, reason: 'no-route' },
    { name: 'scan', data: { tenantId: t }, reason: 'no-route' },
    { name: 'mystery.job', data: { tenantId: t, downstream: 'printer' }, reason: 'unknown-downstream' },
    { name: 'mystery.job', data: { tenantId: t, downstream: 7 }, reason: 'unknown-downstream' },
    // Good jobs at the edges: exactly the payload limit, the extreme priorities, the longest tenant
    // id with every allowed character, a future deadline, the routing data field, cost 1. (The priority
    // limit is BullMQ's own for opts.priority: 2^21 - 1.)
    { name: 'scan.image', data: exactly(MAX_PAYLOAD, { tenantId: t, edge: 'size' }) },
    { name: 'attest.sbom', data: { tenantId: t, priority: 2_097_151, edge: 'priority-max' } },
    { name: 'policy.eval', data: { tenantId: t, edge: 'opts-priority' }, opts: { priority: 2_097_151 } },
    { name: 'scan.image', data: { tenantId: `A.b_c:d@e-${'9'.repeat(118)}`, edge: 'tenant' } },
    { name: 'policy.eval', data: { tenantId: t, deadline: new Date(Date.now() + 3_600_000).toISOString(), edge: 'deadline' } },
    { name: 'anything.at.all', data: { tenantId: t, downstream: 'attestor', edge: 'data-route' } },
    { name: 'scan.image', data: { tenantId: t, cost: 1, edge: 'cost' } },
    // Good jobs that are awkward rather than wrong: deeply nested data, prototype-ish tenant ids,
    // non-ASCII job names and data.
    { name: 'policy.eval', data: { tenantId: t, deep: JSON.parse('['.repeat(1500) + ']'.repeat(1500)), edge: 'deep' } },
    { name: 'scan.image', data: { tenantId: '__proto__', edge: 'proto' } },
    { name: 'attest.sbom', data: { tenantId: 'constructor', edge: 'constructor' } },
    { name: 'policy.ünïcode', data: { tenantId: t, note: '🚀 ✓ 中文', edge: 'unicode' } },
    // Custom ids with the characters BullMQ refuses in execution ids, or that tollgate encodes.
    { name: 'scan.image', data: { tenantId: t, edge: 'id-colon' }, opts: { jobId: `odd:${i}:colon` } },
    { name: 'attest.sbom', data: { tenantId: t, edge: 'id-percent' }, opts: { jobId: `odd-${i}%3A` } },
    { name: 'policy.eval', data: { tenantId: t, edge: 'id-tilde' }, opts: { jobId: `odd-${i}~1` } },
    // Exactly at the limits a cost may reach.
    { name: 'attest.sbom', data: { tenantId: t, cost: 20, edge: 'cost-at-capacity' } },
    { name: 'policy.eval', data: { tenantId: 'tight', cost: 2, edge: 'cost-at-quota' } },
  ];
}

it('a bad input storm mixed with good jobs: each bad job dead-lettered with its reason, good jobs unaffected', async () => {
  const c = await startCluster('badinput', chaosConfigInput({ limits: { maxPayloadBytes: MAX_PAYLOAD } }));
  let sampler: ReturnType<typeof sampleInflight> | undefined;
  try {
    const gates = [c.spawn('gate'), c.spawn('gate')];
    const observer = c.spawn('observer');
    const api = await apiClient();
    const apiProc = c.spawn('api', api.env);
    await waitReady(api.port, 'api');
    expect((await api.send('PUT', '/api/v1/quotas/tight', { maxConcurrent: 2 })).status).toBe(201);
    const seen = new Map<string, string>();
    const seenReused = new Set<number>();
    const exec = c.startExec({
      concurrency: 100,
      work: async (job) => {
        if (job.data?.edge === 'reused') seenReused.add(job.data.k);
        else seen.set(job.id!, createHash('sha1').update(JSON.stringify([job.name, job.data])).digest('hex'));
      },
    });
    sampler = sampleInflight(c);

    // 15 rounds of every variant, plus plain good jobs, in a fixed shuffled order.
    const specs: Spec[] = [];
    for (let i = 0; i < 15; i++) specs.push(...variants(i));
    specs.push(...c.goodJobs(1200).map((j) => ({ name: j.name, data: j.data, opts: j.opts })));
    let seed = 7;
    const rand = () => ((seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648) / 2_147_483_648);
    for (let i = specs.length - 1; i > 0; i--) {
      const k = Math.floor(rand() * (i + 1));
      [specs[i], specs[k]] = [specs[k]!, specs[i]!];
    }
    // A job scheduler whose id holds ':' runs through the storm (its ids are repeat:storm:every:<time>).
    await c.ingress.upsertJobScheduler('storm:every', { every: 200 }, { name: 'policy.eval', data: { tenantId: 'scheduled', edge: 'scheduler' } });
    const ids = await c.produce(specs.map((s) => ({ name: s.name, data: s.data, opts: s.opts ?? {} })));
    // Jobs whose execution add BullMQ refuses (stored options with a size limit below the data, as a
    // producer on another client could leave them), one per downstream.
    for (const name of ['scan.image', 'attest.sbom', 'policy.eval']) {
      const data = { tenantId: 'poisoner', blob: 'x'.repeat(100) };
      const job = await c.ingress.add(name, data, { delay: 60_000 });
      const key = c.keys.bullJob(c.ingress.name, job.id!);
      await c.conn.hset(key, 'opts', JSON.stringify({ ...JSON.parse((await c.conn.hget(key, 'opts'))!), sizeLimit: 10 }));
      await job.promote();
      ids.push(job.id!);
      specs.push({ name, data, reason: 'exec-refused' });
    }
    const bad = specs.filter((s) => s.reason !== undefined);
    const good = specs.filter((s) => s.reason === undefined);
    const expectedReasons: Record<string, number> = {};
    for (const s of bad) expectedReasons[s.reason!] = (expectedReasons[s.reason!] ?? 0) + 1;

    // Meanwhile, hostile calls: bodies missing or null, absurd numbers, a simulation over a large waiting place.
    const calls = await Promise.all([
      api.send('PUT', '/api/v1/quotas/tight'),
      api.send('PUT', '/api/v1/quotas/tight', null),
      api.send('PATCH', '/api/v1/quotas/tight', null),
      api.send('PUT', '/api/v1/quotas/tight', { rate: 1e-300 }),
      api.send('POST', '/api/v1/throttles', { tenantId: 'tight', action: 'slow', rate: 5e-324 }),
      api.send('PUT', '/api/v1/policies/scanner', { kind: 'proportional', defaultWeight: 1e-300 }),
    ]);
    expect(calls.map((r) => [r.status, r.body?.error])).toEqual(calls.map(() => [400, 'TG_ERR_VALIDATION']));
    const wc = c.keys.downstream('policy', 'waitingCounts');
    await c.conn.hset(wc, Object.fromEntries(Array.from({ length: 5200 }, (_, k) => [`sim-${k}`, 10])));
    const sim = await api.send('POST', '/api/v1/policies/policy/simulate', { policy: { kind: 'proportional' } });
    await c.conn.del(wc);
    expect(sim.status).toBe(200);
    expect(sim.body.bounds.tenants).toBeGreaterThanOrEqual(5200);
    process.stdout.write(`[chaos] bad input: simulation over 5,200 tenants answered in ${Math.round(sim.ms)} ms during the storm\n`);

    await waitFor(() => [...exec.runs.keys()].filter((id) => id.startsWith('tg-repeat%3Astorm%3Aevery%3A')).length >= 3 || undefined, 'three scheduled runs', 10_000);
    await c.ingress.removeJobScheduler('storm:every');
    await c.settleIngress(ids, 30_000);
    const goodIds = specs.flatMap((sp, k) => (sp.reason === undefined ? [ids[k]!] : []));
    await waitFor(() => goodIds.every((id) => exec.runs.has(execJobId(jobKey(id)))) || undefined, `every good job executed (${good.length})`, 30_000, 50);
    await new Promise((r) => setTimeout(r, 500)); // a late duplicate, if any, has the time to show up
    const peaks = await sampler.stop();
    sampler = undefined;

    // The scheduler's jobs are accounted for too, by the ids BullMQ gave them.
    const scheduled = [...exec.runs.keys()].filter((id) => id.startsWith('tg-repeat%3A')).map((id) => ingressIdOf(id)!);
    expect(scheduled.every((id) => /^repeat:storm:every:\d+$/.test(id))).toBe(true);
    await c.settleIngress(scheduled, 10_000);
    const result = await c.conservation([...ids, ...scheduled], exec);
    process.stdout.write(`[chaos] bad input: ${bad.length} bad of ${specs.length}; expected reasons ${JSON.stringify(expectedReasons)}\n`);
    expectConserved('bad input storm', result, { exec: good.length + scheduled.length, 'dead-letter': bad.length, ingress: 0, waiting: 0 });
    expect(result.deadReasons).toEqual(expectedReasons);

    // Per job: the bad one is in dead-letter with its own defect's reason and code, the original job
    // kept; the good one ran once with the name and data its producer sent.
    const pipe = c.conn.pipeline();
    for (const id of ids) pipe.hmget(c.keys.bullJob('dead-letter', execJobId(jobKey(id))), 'name', 'data');
    const dead = ((await pipe.exec()) ?? []).map(([, v]) => v as [string | null, string | null]);
    const wrong: unknown[] = [];
    const codeOf = Object.fromEntries(Object.entries(ERRORS).flatMap(([code, e]) => ('reason' in e ? [[e.reason, code]] : [])));
    for (const [k, s] of specs.entries()) {
      const id = ids[k]!;
      const [name, data] = dead[k]!;
      if (s.reason !== undefined) {
        const d = data
          ? (JSON.parse(data) as { reason: string; code: string; message: string; ingressJobId: string; job: { name: string; data: unknown; dataExcerpt?: { bytes: number; sha256: string } } })
          : undefined;
        // Data over the payload limit is kept as an excerpt with its size and hash; a name over the name limit, truncated.
        const json = JSON.stringify(s.data);
        const kept =
          s.reason === 'payload-too-large'
            ? d?.job.data === null && d.job.dataExcerpt?.bytes === Buffer.byteLength(json) && d.job.dataExcerpt.sha256 === createHash('sha256').update(json).digest('hex')
            : JSON.stringify(d?.job.data) === json;
        const ok =
          d !== undefined &&
          name === s.name.slice(0, 256) &&
          d.reason === s.reason &&
          d.code === codeOf[s.reason] &&
          d.ingressJobId === id &&
          d.job.name === s.name.slice(0, 256) &&
          kept &&
          d.message.length > 10;
        if (!ok) wrong.push({ id, expected: s.reason, got: d ? { name, reason: d.reason, code: d.code, message: d.message } : 'not dead-lettered' });
      } else {
        const digest = createHash('sha1').update(JSON.stringify([s.name, s.data])).digest('hex');
        if (data !== null) wrong.push({ id, expected: 'executed', got: JSON.parse(data).reason });
        else if (seen.get(execJobId(jobKey(id))) !== digest) wrong.push({ id, expected: 'executed with its data', got: seen.has(execJobId(jobKey(id))) ? 'other data' : 'not run' });
      }
    }
    expect(wrong.slice(0, 10)).toEqual([]);

    // Another tenant reusing the custom ids: each is a job of its own, and runs.
    const reused = specs.flatMap((s, k) => (typeof s.opts?.jobId === 'string' ? [{ id: s.opts.jobId as string, name: s.name, k }] : []));
    await c.ingress.addBulk(reused.map((r) => ({ name: r.name, data: { tenantId: 'reuser', edge: 'reused', k: r.k }, opts: { jobId: r.id } })));
    await waitFor(() => [...seenReused].length === reused.length || undefined, `every reused id run again (${reused.length})`, 20_000);

    // Nothing kept a slot: every admitted job was released.
    await waitFor(async () => {
      const pipe2 = c.conn.pipeline();
      for (const d of ['scanner', 'attestor', 'policy']) pipe2.zcard(c.keys.inflight(d));
      return ((await pipe2.exec()) ?? []).every(([, n]) => Number(n) === 0) || undefined;
    }, 'no slot left in flight', 15_000);
    const tight = await api.get('/api/v1/quotas/tight');
    expect(tight.body.quotas[0]).toMatchObject({ maxConcurrent: 2 });

    // The storm crashed nothing and logged no error; capacity held.
    for (const p of [...gates, observer, apiProc]) {
      expect({ exitCode: p.proc.exitCode, signal: p.proc.signalCode }).toEqual({ exitCode: null, signal: null });
      expect(errorLines(p)).toEqual([]);
    }
    expectWithinCapacity(exec, peaks);
  } finally {
    await sampler?.stop();
    await c.close();
  }
});
