/**
 * GET /api/v1/flow: each downstream's admitted and dead-lettered per sampling interval, waiting, in flight,
 * effective capacity and fairness over the last 15 minutes, from the observer's samples. Real Redis and
 * Postgres, tollgate in-process, a plain worker.
 */
import { jain } from '../../src/api/routes/flow';
import { createHarness, type Harness } from '../support/harness';
import { waitFor } from '../support/services';

jest.setTimeout(60_000);

let h: Harness;

beforeAll(async () => {
  h = await createHarness('flow', { config: { observer: { flowSampleMs: 200 } } });
  await h.start();
});
afterAll(async () => {
  await h.close();
});

it("counts what was admitted and dead-lettered between the observer's samples, with waiting, capacity and fairness", async () => {
  h.worker('exec.policy', async () => undefined);
  await h.ingress.addBulk([
    ...Array.from({ length: 30 }, (_, i) => ({ name: 'policy.eval', data: { tenantId: i % 2 ? 'acme' : 'globex', i } })),
    // Routed, then refused: a cost the policy engine could never admit (a refusal before routing, such as a
    // missing tenant, belongs to no downstream's flow).
    ...Array.from({ length: 4 }, (_, i) => ({ name: 'policy.eval', data: { tenantId: 'acme', cost: h.config.downstreams.find((d) => d.name === 'policy')!.capacity + 1, i } })),
  ]);
  let last = '';
  const flow = await waitFor(async () => {
    const body = (await h.api('GET', '/api/v1/flow')).body as { items: Array<{ downstream: string; points: Array<{ admitted: number; deadLettered: number; capacity: number }>; fairness: { jain?: number; tenants: number } }> };
    const policy = body.items.find((d) => d.downstream === 'policy')!;
    const sum = (k: 'admitted' | 'deadLettered') => policy.points.reduce((n, p) => n + p[k], 0);
    last = JSON.stringify({ admitted: sum('admitted'), dead: sum('deadLettered'), n: policy.points.length, f: policy.fairness });
    return sum('admitted') === 30 && sum('deadLettered') === 4 ? policy : undefined;
  }, 'the samples to count 30 admitted and 4 dead-lettered', 20_000).catch((e) => { throw new Error(`${(e as Error).message}: ${last}`); });
  expect(flow.points.at(-1)!.capacity).toBe(h.config.downstreams.find((d) => d.name === 'policy')!.capacity);
  expect(flow.fairness).toEqual({ jain: 1, tenants: 2 });
});

it("computes Jain's index: 1 when equal, 1/n when one tenant takes everything", () => {
  expect(jain([5, 5, 5])).toBe(1);
  expect(jain([9, 0, 0])).toBeCloseTo(1 / 3);
  expect(jain([])).toBeUndefined();
});
