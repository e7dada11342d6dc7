/**
 * Adaptive capacity with a real execution worker whose latency we change: capacity falls when the
 * downstream slows down and climbs back when it recovers; the effective capacity shows in the API.
 */
import { Keys } from '../../src/redis/keys';
import { createHarness, type Harness } from '../support/harness';
import { waitFor } from '../support/services';

jest.setTimeout(90_000);

let h: Harness;
afterAll(async () => {
  await h?.close();
});

it('lowers capacity when the downstream slows down and raises it when it recovers', async () => {
  h = await createHarness('adaptive', {
    config: {
      downstreams: [
        { name: 'scanner', capacity: 20, adaptive: { floor: 2, targetLatencyMs: 300, intervalMs: 300, minSamples: 5, decreaseFactor: 0.5, increaseStep: 3 } },
        { name: 'attestor', capacity: 20 },
        { name: 'policy', capacity: 20 },
      ],
    },
  });
  await h.start();
  let latencyMs = 10;
  let running = 0;
  let maxRunning = 0;
  h.worker(
    'exec.scanner',
    async () => {
      maxRunning = Math.max(maxRunning, ++running);
      await new Promise((r) => setTimeout(r, latencyMs));
      running--;
    },
    { concurrency: 50 },
  );
  const capacity = async (): Promise<number> =>
    (await h.api('GET', '/api/v1/policies')).body.items.find((p: { downstream: string }) => p.downstream === 'scanner').effectiveCapacity;
  const feed = setInterval(() => void h.ingress.addBulk(Array.from({ length: 40 }, (_, i) => ({ name: 'scan.image', data: { tenantId: 'steady', i } }))), 100);
  try {
    // Healthy: capacity is used and completions are fast; it stays at or climbs back to the ceiling
    // (a loaded machine may slow a round or two; the rule recovers by itself).
    const healthy = await waitFor(async () => {
      const c = await capacity();
      return c >= 17 ? c : undefined;
    }, 'capacity near the ceiling while healthy', 20_000, 100);

    latencyMs = 800;
    const degraded = await waitFor(async () => {
      const c = await capacity();
      return c <= 5 ? c : undefined;
    }, 'capacity to fall', 20_000, 100);
    // While slow, the downstream is given no more than the lowered capacity, plus the jobs already
    // admitted when it was lowered (running, or added to the execution queue and about to start).
    const admittedWhenLowered = Math.max(running, await h.redis.zcard(new Keys(h.prefix).inflight('scanner')));
    maxRunning = 0;
    await new Promise((r) => setTimeout(r, 1500));
    expect(maxRunning).toBeLessThanOrEqual(Math.max(degraded, admittedWhenLowered));

    latencyMs = 10;
    const recovered = await waitFor(async () => {
      const c = await capacity();
      return c >= 14 ? c : undefined;
    }, 'capacity to climb back', 20_000, 100);
    process.stdout.write(`adaptive capacity: healthy ${healthy}, slowed to ${degraded}, recovered to ${recovered}\n`);
    const metrics = await (await fetch(`${h.tollgate!.url}/metrics`)).text();
    expect(metrics).toMatch(/tollgate_capacity_adjustments_total\{downstream="scanner",reason="latency"\} [1-9]/);
    expect(metrics).toMatch(/tollgate_effective_capacity\{downstream="scanner"\} \d+/);
  } finally {
    clearInterval(feed);
  }
});
