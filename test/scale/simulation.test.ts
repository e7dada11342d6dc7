/**
 * An expensive what-if simulation must not freeze the process (issue 10): a wall-clock bound on the
 * API's responsiveness while it runs, so it lives with the other timed tests in the serial phase
 * (test/scale, --runInBand), not beside another test file competing for the same two cores.
 */
import { parseApiTokens } from '../../src/config/tokens';
import { Keys } from '../../src/redis/keys';
import { createHarness, type Harness } from '../support/harness';

jest.setTimeout(60_000);

const READER = 'reader-secret-0123456789';
let h: Harness;

beforeAll(async () => {
  h = await createHarness('simulation', { env: { apiTokens: parseApiTokens(`dash:${READER}:read`) } });
  await h.start();
});
afterAll(async () => {
  await h.close();
});

describe('bounded work per API call', () => {
  it('a what-if simulation over tens of thousands of waiting jobs answers in bounded time and never freezes the process', async () => {
    // The route reads how many jobs wait per tenant and how much each has in flight: here 52,000 jobs
    // of 5,200 tenants (the case that used to block the event loop for half a minute).
    const wc = new Keys(h.prefix).downstream('policy', 'waitingCounts');
    const fields: Record<string, number> = {};
    for (let i = 0; i < 5200; i++) fields[`sim-${i}`] = 10;
    await h.redis.hset(wc, fields);
    try {
      let slowest = 0;
      let polling = true;
      const poll = (async () => {
        while (polling) {
          const t0 = performance.now();
          const r = await fetch(`${h.tollgate!.url}/healthz`);
          await r.text();
          slowest = Math.max(slowest, performance.now() - t0);
          await new Promise((r2) => setTimeout(r2, 20));
        }
      })();
      const t0 = performance.now();
      const sim = await h.api('POST', '/api/v1/policies/policy/simulate', { body: { policy: { kind: 'proportional' }, horizonMs: 60_000, serviceMs: 1000 }, token: READER });
      const took = performance.now() - t0;
      polling = false;
      await poll;
      process.stdout.write(`simulate over 52,000 waiting jobs of 5,200 tenants: ${Math.round(took)} ms; slowest /healthz meanwhile ${Math.round(slowest)} ms\n`);
      expect(sim.status).toBe(200);
      expect(sim.body.bounds).toMatchObject({ tenants: 5200 });
      expect(typeof sim.body.bounds.simulatedTenants).toBe('number');
      expect(slowest).toBeLessThan(500);
      expect(took).toBeLessThan(10_000);
    } finally {
      await h.redis.del(wc);
    }
  });
});
