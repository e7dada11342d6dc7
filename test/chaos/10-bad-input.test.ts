/**
 * RELIABILITY.md scenario 10: a bad input storm mixed with good jobs, through two gates. Every bad job
 * is dead-lettered with the machine-readable reason of its one defect (checked per job, and the
 * per-reason counts exactly), with its original name and data kept; every good job (including the
 * ones exactly at a limit) is executed once with its data unchanged; conservation holds.
 */
import { createHash } from 'node:crypto';
import { ERRORS } from '../../src/errors';
import { execJobId } from '../../src/redis/keys';
import { chaosConfigInput, expectConserved, sampleInflight, startCluster } from './support/cluster';
import { errorLines } from './support/lifecycle';
import { expectWithinCapacity } from './support/observe';
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
    // invalid-deadline
    { name: 'scan.image', data: { tenantId: t, deadline: 'tomorrow' }, reason: 'invalid-deadline' },
    { name: 'policy.eval', data: { tenantId: t, deadline: { at: 1 } }, reason: 'invalid-deadline' },
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
  ];
}

it('a bad input storm mixed with good jobs: each bad job dead-lettered with its reason, good jobs unaffected', async () => {
  const c = await startCluster('badinput', chaosConfigInput({ limits: { maxPayloadBytes: MAX_PAYLOAD } }));
  let sampler: ReturnType<typeof sampleInflight> | undefined;
  try {
    const gates = [c.spawn('gate'), c.spawn('gate')];
    const observer = c.spawn('observer');
    const seen = new Map<string, string>();
    const exec = c.startExec({
      concurrency: 100,
      work: async (job) => {
        seen.set(job.id!, createHash('sha1').update(JSON.stringify([job.name, job.data])).digest('hex'));
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
    const ids = await c.produce(specs.map((s) => ({ name: s.name, data: s.data, opts: s.opts ?? {} })));
    const bad = specs.filter((s) => s.reason !== undefined);
    const good = specs.filter((s) => s.reason === undefined);
    const expectedReasons: Record<string, number> = {};
    for (const s of bad) expectedReasons[s.reason!] = (expectedReasons[s.reason!] ?? 0) + 1;

    await c.settleIngress(ids, 30_000);
    await waitFor(() => exec.runs.size >= good.length, `every good job executed (${good.length})`, 30_000, 50);
    await new Promise((r) => setTimeout(r, 500)); // a late duplicate, if any, has the time to show up
    const peaks = await sampler.stop();
    sampler = undefined;

    const result = await c.conservation(ids, exec);
    process.stdout.write(`[chaos] bad input: ${bad.length} bad of ${specs.length}; expected reasons ${JSON.stringify(expectedReasons)}\n`);
    expectConserved('bad input storm', result, { exec: good.length, 'dead-letter': bad.length, ingress: 0, waiting: 0 });
    expect(result.deadReasons).toEqual(expectedReasons);

    // Per job: the bad one is in dead-letter with its own defect's reason and code, the original job
    // kept; the good one ran once with the name and data its producer sent.
    const pipe = c.conn.pipeline();
    for (const id of ids) pipe.hmget(c.keys.bullJob('dead-letter', execJobId(id)), 'name', 'data');
    const dead = ((await pipe.exec()) ?? []).map(([, v]) => v as [string | null, string | null]);
    const wrong: unknown[] = [];
    const codeOf = Object.fromEntries(Object.entries(ERRORS).flatMap(([code, e]) => ('reason' in e ? [[e.reason, code]] : [])));
    for (const [k, s] of specs.entries()) {
      const id = ids[k]!;
      const [name, data] = dead[k]!;
      if (s.reason !== undefined) {
        const d = data ? (JSON.parse(data) as { reason: string; code: string; message: string; ingressJobId: string; job: { name: string; data: unknown } }) : undefined;
        const ok =
          d !== undefined &&
          name === s.name &&
          d.reason === s.reason &&
          d.code === codeOf[s.reason] &&
          d.ingressJobId === id &&
          d.job.name === s.name &&
          JSON.stringify(d.job.data) === JSON.stringify(s.data) &&
          d.message.length > 10;
        if (!ok) wrong.push({ id, expected: s.reason, got: d ? { name, reason: d.reason, code: d.code, message: d.message } : 'not dead-lettered' });
      } else {
        const digest = createHash('sha1').update(JSON.stringify([s.name, s.data])).digest('hex');
        if (data !== null) wrong.push({ id, expected: 'executed', got: JSON.parse(data).reason });
        else if (seen.get(execJobId(id)) !== digest) wrong.push({ id, expected: 'executed with its data', got: seen.has(execJobId(id)) ? 'other data' : 'not run' });
      }
    }
    expect(wrong.slice(0, 10)).toEqual([]);

    // The storm crashed nothing and logged no error; capacity held.
    for (const p of [...gates, observer]) {
      expect({ exitCode: p.proc.exitCode, signal: p.proc.signalCode }).toEqual({ exitCode: null, signal: null });
      expect(errorLines(p)).toEqual([]);
    }
    expectWithinCapacity(exec, peaks);
  } finally {
    await sampler?.stop();
    await c.close();
  }
});
