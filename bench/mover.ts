/**
 * baseline-move's middle hop: a plain BullMQ worker that only moves each job to a second queue with
 * `add` (same name, data and options). Runs as its own process, like a gate would.
 * argv: <prefix> <from> <to> <concurrency>
 */
import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';

const [prefix, from, to, concurrency] = process.argv.slice(2) as [string, string, string, string];
const url = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const target = new Queue(to, { connection: new Redis(url, { maxRetriesPerRequest: null, enableAutoPipelining: true }), prefix });
const worker = new Worker(
  from,
  async (job) => {
    await target.add(job.name, job.data, { removeOnComplete: true });
  },
  { connection: new Redis(url, { maxRetriesPerRequest: null }), prefix, concurrency: Number(concurrency), removeOnComplete: { count: 0 } },
);
worker.on('error', () => undefined);
process.on('SIGTERM', () => void worker.close().then(() => process.exit(0)));
process.send?.('ready');
