/**
 * The demo's story (examples/demo-workload.ts, on a shorter timeline) against tollgate with the demo's
 * config, watched in a real browser: the dashboard during the flood, with the attestor's breaker open,
 * a waiting job explained, and the breaker closed again. The screenshots are written to
 * docs/screenshots/ (the README shows them); the story's moments must all happen, with no console error.
 */
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseApiTokens } from '../../src/config/tokens';
import type { ConfigInput } from '../../src/config/file';
import { demoConfig } from '../../examples/demo';
import { runDemo } from '../../examples/demo-workload';
import { createHarness, type Harness } from '../support/harness';
import { waitFor } from '../support/services';
import { launch, type Browser } from './support/browser';

jest.setTimeout(180_000);

const ADMIN = 'admin-secret-0123456789';
const SHOTS = join(__dirname, '..', '..', 'docs', 'screenshots');
let h: Harness;
let browser: Browser;

beforeAll(async () => {
  const shipped = JSON.parse(readFileSync(join(__dirname, '..', '..', 'tollgate.config.json'), 'utf8')) as ConfigInput;
  const { downstreams } = demoConfig(shipped);
  h = await createHarness('demo-shots', { env: { apiTokens: parseApiTokens(`ops:${ADMIN}:admin`) }, config: { downstreams: downstreams! } });
  await h.start();
  browser = await launch();
  mkdirSync(SHOTS, { recursive: true });
});
afterAll(async () => {
  await browser?.close();
  await h?.close();
});

it('shows the demo story on the dashboard: a flood kept fair, a quota binding, a breaker opening and closing', async () => {
  const lines: string[] = [];
  const run = runDemo({
    redisUrl: h.env.redisUrl,
    prefix: h.prefix,
    ingressQueue: h.config.queues.ingress,
    execQueues: Object.fromEntries(h.config.downstreams.map((d) => [d.name, d.queue])),
    apiUrl: h.tollgate!.url!,
    adminToken: ADMIN,
    log: (l) => lines.push(l),
    durationMs: 40_000,
    outageAtMs: 8000,
    outageMs: 10_000,
    reportMs: 2000,
  });
  try {
    const { page, errors } = await browser.page();
    await page.setViewportSize({ width: 1500, height: 1300 });
    await page.addInitScript((t) => (globalThis as unknown as { sessionStorage: { setItem(k: string, v: string): void } }).sessionStorage.setItem('tollgate.token', t), ADMIN);
    await page.goto(h.tollgate!.url!);
    await page.getByTestId('breaker-attestor').waitFor();

    await run.moment('flood');
    await page.getByTestId('tenant-acme').waitFor();
    await page.waitForTimeout(2500);
    await page.screenshot({ path: join(SHOTS, 'flood.png'), fullPage: true });

    await run.moment('quota');
    expect(run.waitingJob()).toBeDefined();
    // A job initech sends now waits behind its backlog (it sends 12/s against a quota of 2/s).
    const added = await h.ingress.add('policy.evaluate', { tenantId: 'initech', artifact: 'sha256:looked-up' });
    const waiting = await waitFor(async () => {
      const where = (await h.api('GET', `/api/v1/jobs/${added.id}`, { token: ADMIN })).body;
      return where.place === 'waiting' ? added.id! : undefined;
    }, 'the job to wait');
    await page.getByTestId('lookup-id').fill(waiting);
    await page.getByTestId('lookup-id').press('Enter');
    await page.getByTestId('lookup-result').filter({ hasText: /waiting on policy/ }).waitFor();
    expect(await page.getByTestId('lookup-result').textContent()).toMatch(/Held by its quota's rate/);
    await page.getByTestId('lookup-result').screenshot({ path: join(SHOTS, 'job-lookup.png') });

    await run.moment('breaker-open');
    await page.locator('[data-testid="breaker-attestor"][data-state="open"]').waitFor();
    await page.waitForTimeout(1500);
    await page.getByTestId('breakers').screenshot({ path: join(SHOTS, 'breaker-open.png') });

    await run.moment('breaker-closed');
    await page.locator('[data-testid="breaker-attestor"][data-state="closed"]').waitFor();
    await page.waitForTimeout(1500);
    await page.screenshot({ path: join(SHOTS, 'breaker-closed.png'), fullPage: true });
    expect(errors).toEqual([]);
    await page.close();
  } finally {
    const summary = await run.done.catch(() => undefined);
    process.stdout.write(`demo story:\n${lines.join('\n')}\n`);
    if (summary) {
      expect(summary.breakerTransitions.some((t) => t.endsWith('closed → open: 5 consecutive failures'))).toBe(true);
      expect(summary.breakerTransitions.at(-1)).toMatch(/half-open → closed/);
      // The quiet tenants kept running scans through the flood.
      for (const t of ['globex', 'umbrella']) expect(summary.executed[`scanner/${t}`]).toBeGreaterThan(20);
    }
  }
});
