/**
 * The producer entry (`tollgate/client`, src/client.ts) loads none of the server's dependencies: a
 * child process requires only that module and lists every package in its require cache. The main
 * entry, for contrast, loads them (which is why producers should not import it). The compiled entries
 * are checked the same way from an installed tarball in test/package/package.test.ts.
 */
import { join } from 'node:path';
import { moduleGraph, SERVER_PACKAGES } from '../support/module-graph';

const ROOT = join(__dirname, '..', '..');

describe('the producer entry (src/client.ts)', () => {
  const client = moduleGraph('./src/client.ts', { cwd: ROOT, tsx: true });

  it('loads no server dependency (pg, drizzle-orm, fastify, prom-client, pino, ...)', () => {
    expect(client.packages.filter((p) => SERVER_PACKAGES.includes(p))).toEqual([]);
    // What it does load: BullMQ and its ioredis, zod for the config (tsx and esbuild are this test's loader).
    expect(client.packages).toEqual(expect.arrayContaining(['bullmq', 'ioredis', 'zod']));
  });

  it('exports the backpressure check, waitForExecution, the error class and the job id helpers', () => {
    expect(client.exports).toMatchObject({
      checkBackpressure: 'function',
      createBackpressureClient: 'function',
      waitForExecution: 'function',
      TollgateError: 'function',
      ERRORS: 'object',
      execJobId: 'function',
      ingressIdOf: 'function',
      parseConfig: 'function',
    });
  });
});

it('the main entry (src/index.ts) loads the server: pg, drizzle-orm, fastify, prom-client, pino', () => {
  const main = moduleGraph('./src/index.ts', { cwd: ROOT, tsx: true });
  expect(main.packages).toEqual(expect.arrayContaining(['pg', 'drizzle-orm', 'fastify', 'prom-client', 'pino']));
  expect(main.exports).toMatchObject({ startTollgate: 'function', checkBackpressure: 'function', waitForExecution: 'function' });
});
