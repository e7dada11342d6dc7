/**
 * `npm run demo`: tollgate (gate + observer + API) with the shipped config, a producer that enqueues
 * a mixed workload for a few tenants (including some malformed jobs), and plain BullMQ execution
 * workers for the three downstreams. Prints what moves where every second, then a summary.
 *
 * Uses REDIS_URL / DATABASE_URL like tollgate itself, under its own prefix (`tollgate-demo` unless
 * TOLLGATE_PREFIX is set), which it clears first. DEMO_SECONDS sets how long producers run (10).
 */
import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { loadEnv } from '../src/config/env';
import { loadConfigFile } from '../src/config/file';
import { createLogger } from '../src/observability/log';
import { deleteKeysWithPrefix } from '../src/redis/maintenance';
import { startTollgate } from '../src/runtime';

const TENANTS = ['acme', 'globex', 'initech', 'umbrella'];
const KINDS = [
  { name: 'scan.image', downstream: 'scanner' },
  { name: 'attest.sbom', downstream: 'attestor' },
  { name: 'policy.evaluate', downstream: 'policy' },
];

async function main(): Promise<void> {
  const env = loadEnv({ TOLLGATE_PREFIX: 'tollgate-demo', LOG_LEVEL: 'warn', ...process.env });
  const config = loadConfigFile(env.configPath);
  const seconds = Number(process.env.DEMO_SECONDS ?? 10);
  const redis = new Redis(env.redisUrl, { maxRetriesPerRequest: null });
  await deleteKeysWithPrefix(redis, env.prefix);

  const tollgate = await startTollgate({ roles: ['gate', 'observer', 'api'], env, config, log: createLogger(env.logLevel, 'demo') });
  await tollgate.started;
  console.log(`tollgate running: API and dashboard at ${tollgate.url}  (prefix ${env.prefix})`);

  // Plain BullMQ execution workers, as a platform team would write them.
  const executed: Record<string, number> = {};
  const workerConns: Redis[] = [];
  const workers = config.downstreams.map((d) => {
    const conn = new Redis(env.redisUrl, { maxRetriesPerRequest: null });
    workerConns.push(conn);
    return new Worker(
      d.queue,
      async (job) => {
        await new Promise((r) => setTimeout(r, 5 + Math.random() * 30));
        if (Math.random() < 0.03) throw new Error(`${d.name} returned 503`);
        executed[`${d.name}/${job.data.tenantId}`] = (executed[`${d.name}/${job.data.tenantId}`] ?? 0) + 1;
        return { ok: true };
      },
      { connection: conn, prefix: env.prefix, concurrency: 20 },
    );
  });

  // The producer: plain BullMQ, unchanged job shapes, straight into ingress.
  const ingress = new Queue(config.queues.ingress, { connection: redis, prefix: env.prefix });
  let produced = 0;
  let malformed = 0;
  const producing = setInterval(() => {
    const batch = Array.from({ length: 40 }, (_, i) => {
      const kind = KINDS[(produced + i) % KINDS.length]!;
      const tenant = TENANTS[Math.floor(Math.random() ** 2 * TENANTS.length)]!; // acme sends the most
      return { name: kind.name, data: { tenantId: tenant, artifact: `sha256:${(produced + i).toString(16)}` }, opts: { attempts: 2, removeOnComplete: 1000 } };
    });
    if (Math.random() < 0.5) {
      malformed++;
      batch.push({ name: 'scan.image', data: { artifact: 'no tenant' } as never, opts: { attempts: 1, removeOnComplete: 1000 } });
    }
    produced += batch.length;
    void ingress.addBulk(batch);
  }, 100);

  const report = async () => {
    const res = await fetch(`${tollgate.url}/api/v1/queues`);
    const q = (await res.json()) as {
      ingress: { counts: Record<string, number> };
      exec: Array<{ downstream: string; inFlight: number; counts: Record<string, number> }>;
      deadLetter: { counts: Record<string, number> };
    };
    const exec = q.exec
      .map((e) => `${e.downstream}: ${e.counts.completed ?? 0} done, ${e.counts.failed ?? 0} failed, ${e.inFlight} in flight`)
      .join(' | ');
    console.log(
      `produced ${produced} (${malformed} malformed) · ingress waiting ${q.ingress.counts.waiting ?? 0} · ${exec} · dead-letter ${q.deadLetter.counts.waiting ?? 0}`,
    );
  };
  const ticker = setInterval(() => void report().catch(() => undefined), 1000);

  await new Promise((r) => setTimeout(r, seconds * 1000));
  clearInterval(producing);
  await new Promise((r) => setTimeout(r, 2000)); // let the tail drain
  clearInterval(ticker);
  await report();

  const dl = await new Queue(config.queues.deadLetter, { connection: redis, prefix: env.prefix }).getJobs(['waiting'], 0, 0);
  if (dl[0]) console.log(`a dead-lettered job: reason=${dl[0].data.reason} message="${dl[0].data.message}"`);
  console.log('executed per downstream/tenant:', executed);

  await Promise.all(workers.map((w) => w.close()));
  await ingress.close();
  await tollgate.close();
  redis.disconnect();
  workerConns.forEach((c) => c.disconnect());
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
