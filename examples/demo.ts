/**
 * `npm run demo`: tollgate (gate + observer + API) with the shipped config, tuned so the story fits in a
 * minute (the scanner runs 20 jobs at a time, the attestor's breaker opens for 5 s, then 10), and the
 * demo workload (examples/demo-workload.ts): a tenant flooding the scanner while the others stay fast,
 * a quota binding (jobs waiting with an ETA), the attestor failing for 20 s (its breaker opens, jobs are
 * held, probes go through, it closes, the held jobs replay). Each line says what happens and why.
 *
 * Uses REDIS_URL / DATABASE_URL like tollgate itself, under its own prefix (`tollgate-demo` unless
 * TOLLGATE_PREFIX is set), which it clears first. DEMO_SECONDS: how long it runs (60). The dashboard's
 * URL and an admin token for it (made up for the run unless TOLLGATE_API_TOKENS is set) are printed.
 */
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { loadEnv } from '../src/config/env';
import { loadConfigFile, parseConfig, type ConfigInput } from '../src/config/file';
import { parseApiTokens } from '../src/config/tokens';
import { createLogger } from '../src/observability/log';
import { deleteKeysWithPrefix } from '../src/redis/maintenance';
import { startTollgate } from '../src/runtime';
import { runDemo } from './demo-workload';

/** The shipped config, with the demo's timings. */
export function demoConfig(shipped: ConfigInput): ConfigInput {
  return {
    ...shipped,
    downstreams: (shipped.downstreams ?? []).map((d) =>
      d.name === 'scanner'
        ? { ...d, capacity: 20 }
        : d.name === 'attestor'
          ? { ...d, breaker: { ...(d.breaker ?? {}), consecutiveFailures: 5, openMs: 5000, maxOpenMs: 10_000, halfOpenProbes: 2, replayRampMs: 5000 } }
          : d,
    ),
  };
}

async function main(): Promise<void> {
  const adminSecret = `demo-${randomBytes(12).toString('hex')}`;
  const env = loadEnv({ TOLLGATE_PREFIX: 'tollgate-demo', LOG_LEVEL: 'error', HOST: '127.0.0.1', ...process.env });
  const tokens = env.apiTokens.length > 0 ? env.apiTokens : parseApiTokens(`demo:${adminSecret}:admin`);
  const admin = env.apiTokens.length > 0 ? undefined : adminSecret;
  const shipped = loadConfigFile(env.configPath);
  const config = parseConfig(demoConfig(shipped as unknown as ConfigInput), 'demo config');
  const seconds = Number(process.env.DEMO_SECONDS ?? 60);
  const redis = new Redis(env.redisUrl, { maxRetriesPerRequest: null });
  await deleteKeysWithPrefix(redis, env.prefix);
  redis.disconnect();

  const tollgate = await startTollgate({ roles: ['gate', 'observer', 'api'], env: { ...env, apiTokens: tokens }, config, log: createLogger(env.logLevel, 'demo') });
  await tollgate.started;
  console.log(`tollgate is running. Dashboard: ${tollgate.url}/${admin ? `  (paste this admin token in its token field: ${admin})` : ''}`);
  if (!admin) {
    console.log('TOLLGATE_API_TOKENS is set: the demo needs DEMO_ADMIN_TOKEN, one of its admin tokens, to change a quota');
  }
  const run = runDemo({
    redisUrl: env.redisUrl,
    prefix: env.prefix,
    ingressQueue: config.queues.ingress,
    execQueues: Object.fromEntries(config.downstreams.map((d) => [d.name, d.queue])),
    apiUrl: tollgate.url!,
    adminToken: admin ?? process.env.DEMO_ADMIN_TOKEN ?? '',
    log: (line) => console.log(line),
    durationMs: seconds * 1000,
  });
  const summary = await run.done;
  console.log('done. On the scanner, add → start p95 per tenant over the run (ms):', summary.p95ByTenant);
  console.log('the attestor breaker moved:', summary.breakerTransitions.length ? summary.breakerTransitions.join(' | ') : 'never');
  await tollgate.close();
}

if (require.main === module) {
  main().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
