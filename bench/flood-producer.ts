/**
 * A flooding producer as a process of its own (as a separate service would be): adds FLOOD_JOBS jobs of
 * one tenant to a queue with plain BullMQ `addBulk`, FLOOD_BATCH at a time, as fast as Redis takes them.
 * Used by test/scale/flood.test.ts and the benchmark's tollgate-flood scenario, so the flood does not
 * share an event loop with the workers and the quiet producer being measured.
 *
 * Env: REDIS_URL, FLOOD_PREFIX, FLOOD_QUEUE, FLOOD_JOBS (100000), FLOOD_BATCH (1000), FLOOD_TENANT
 * ('flood'), FLOOD_NAME (job name, 'scan.image'), FLOOD_PAYLOAD (bytes of filler, 150).
 * Writes one JSON line when it starts adding ({"event":"start","at":ms}) and one when done
 * ({"event":"done","at":ms,"jobs":n}), then exits 0.
 */
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';

async function main(): Promise<void> {
  const env = process.env;
  const jobs = Number(env.FLOOD_JOBS ?? 100_000);
  const batch = Number(env.FLOOD_BATCH ?? 1000);
  const tenantId = env.FLOOD_TENANT ?? 'flood';
  const name = env.FLOOD_NAME ?? 'scan.image';
  const payload = 'x'.repeat(Number(env.FLOOD_PAYLOAD ?? 150));
  const conn = new Redis(env.REDIS_URL ?? 'redis://127.0.0.1:6379', { maxRetriesPerRequest: null });
  const queue = new Queue(env.FLOOD_QUEUE ?? 'ingress', { connection: conn, prefix: env.FLOOD_PREFIX ?? 'bull' });
  await queue.waitUntilReady();
  process.stdout.write(`${JSON.stringify({ event: 'start', at: Date.now() })}\n`);
  for (let i = 0; i < jobs; i += batch) {
    const n = Math.min(batch, jobs - i);
    await queue.addBulk(Array.from({ length: n }, (_, k) => ({ name, data: { tenantId, k: i + k, payload } })));
  }
  process.stdout.write(`${JSON.stringify({ event: 'done', at: Date.now(), jobs })}\n`);
  await queue.close();
  conn.disconnect();
}

main().catch((err) => {
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
