/**
 * Size limits (`limits`): a dead-letter job keeps an excerpt of data over `maxPayloadBytes` with its
 * size and SHA-256, and cannot be re-driven; a job name over `maxJobNameLength` is dead-lettered
 * `job-name-too-long` before any key or record is built from it; the dead-letter queue keeps the
 * newest `deadLetterMaxJobs` jobs. Sizes are measured in Redis (MEMORY USAGE over the test's prefix).
 * Jobs within the limits are untouched. Real Redis and Postgres, tollgate in-process.
 */
import { createHash } from 'node:crypto';
import { parseApiTokens } from '../../src/config/tokens';
import type { DeadLetterData } from '../../src/queues/dead-letter';
import { createHarness, type Harness } from '../support/harness';
import { waitFor } from '../support/services';

jest.setTimeout(90_000);

const ADMIN = 'admin-secret-0123456789';
/** The defaults under test (README, Configuration). */
const EXCERPT_BYTES = 4096;
const MAX_NAME = 256;
const MAX_PAYLOAD = 1_048_576;
/** What a dead-letter job may hold beyond its excerpt: the envelope, options, BullMQ's job fields, Redis overhead. */
const METADATA_BYTES = 2048;

type Item = DeadLetterData & { id: string };
let h: Harness;

beforeAll(async () => {
  h = await createHarness('size-limits', { env: { apiTokens: parseApiTokens(`ops:${ADMIN}:admin`) } });
  await h.start();
});
afterAll(async () => {
  await h?.close();
});

const sha256 = (s: string) => createHash('sha256').update(s, 'utf8').digest('hex');

async function deadLetterOf(hh: Harness, ingressJobId: string, reason: string): Promise<Item> {
  return waitFor(async () => {
    const page = (await hh.api('GET', `/api/v1/dead-letter?reason=${reason}&limit=200`, { token: ADMIN })).body as { items: Item[] };
    return page.items.find((d) => d.ingressJobId === ingressJobId);
  }, `the ${reason} dead-letter job of ${ingressJobId}`);
}

const memoryUsage = async (key: string) => Number(await h.redis.call('MEMORY', 'USAGE', key, 'SAMPLES', '0'));

/** Every key under the test's prefix with its MEMORY USAGE (bytes), largest first. */
async function keySizes(): Promise<Array<{ key: string; bytes: number }>> {
  const keys: string[] = [];
  let cursor = '0';
  do {
    const [next, batch] = await h.redis.scan(cursor, 'MATCH', `${h.prefix}:*`, 'COUNT', 1000);
    cursor = next;
    keys.push(...batch);
  } while (cursor !== '0');
  const sizes = await Promise.all([...new Set(keys)].map(async (key) => ({ key, bytes: await memoryUsage(key) })));
  return sizes.sort((a, b) => b.bytes - a.bytes);
}

it('keeps a 5 MB payload-too-large job as a 4 KiB excerpt with its size and SHA-256, and refuses its re-drive', async () => {
  const data = { tenantId: 'acme', blob: 'x'.repeat(5 * 1024 * 1024) };
  const json = JSON.stringify(data);
  const job = await h.ingress.add('scan.image', data);
  const dl = await deadLetterOf(h, job.id!, 'payload-too-large');

  const bytes = await memoryUsage(h.queue('dead-letter').toKey(dl.id));
  process.stdout.write(`[size-limits] 5 MB payload (${Buffer.byteLength(json)} bytes): dead-letter job hash ${bytes} bytes (MEMORY USAGE)\n`);
  expect(bytes).toBeLessThanOrEqual(EXCERPT_BYTES + METADATA_BYTES);
  expect(dl.code).toBe('TG_ERR_PAYLOAD_TOO_LARGE');
  expect(dl.job.name).toBe('scan.image');
  expect(dl.job.data).toBeNull();
  expect(dl.job.dataExcerpt).toEqual({ excerpt: json.slice(0, EXCERPT_BYTES), bytes: Buffer.byteLength(json), sha256: sha256(json) });
  // Nothing else holds the payload: the ingress copy is gone, no key under the prefix is large.
  await waitFor(() => h.intakeDone(), 'intake done');
  const [largest] = await keySizes();
  process.stdout.write(`[size-limits] largest key under the prefix after it: ${largest!.key.slice(h.prefix.length)} ${largest!.bytes} bytes\n`);
  expect(largest!.bytes).toBeLessThanOrEqual(EXCERPT_BYTES + METADATA_BYTES);

  const redrive = await h.api('POST', `/api/v1/dead-letter/${dl.id}/redrive`, { token: ADMIN, reason: 'try it' });
  expect(redrive.status).toBe(422);
  expect(redrive.body).toMatchObject({ error: 'TG_ERR_NOT_REDRIVABLE', details: { bytes: Buffer.byteLength(json), sha256: sha256(json) } });
  expect(redrive.body.message).toContain(dl.id);
  // Refused, not replayed: nothing went back to ingress and the dead-letter job stays.
  expect(await h.ingress.getJob(`redrive-${dl.id}`)).toBeUndefined();
  expect(await h.queue('dead-letter').getJob(dl.id)).toBeDefined();
});

it('dead-letters a 100,000-character job name as job-name-too-long, truncated; no key under the prefix grows with it', async () => {
  const name = `scan.${'n'.repeat(99_995)}`;
  const job = await h.ingress.add(name, { tenantId: 'acme', mark: 'long-name' });
  await waitFor(() => h.intakeDone(), 'intake done');

  const sizes = await keySizes();
  // The producer's own add leaves the name in the ingress event stream (BullMQ's `added` event, trimmed
  // by BullMQ to its maxLen): written before tollgate sees the job, so not tollgate's to bound.
  const producerSide = `${h.prefix}:${h.config.queues.ingress}:events`;
  const ours = sizes.filter((s) => s.key !== producerSide);
  const shown = (s: { key: string; bytes: number }) => ({ key: s.key.slice(h.prefix.length, h.prefix.length + 80), keyLength: s.key.length, bytes: s.bytes });
  process.stdout.write(
    `[size-limits] 100,000-character name: largest key under the prefix ${JSON.stringify(shown(ours[0]!))}; ` +
      `the ingress event stream (producer side) ${sizes.find((s) => s.key === producerSide)?.bytes} bytes\n`,
  );
  expect(ours.filter((s) => s.bytes > 8192 || s.key.length > 1024).map(shown)).toEqual([]);

  const dl = await deadLetterOf(h, job.id!, 'job-name-too-long');
  expect(dl.code).toBe('TG_ERR_JOB_NAME_TOO_LONG');
  expect(dl.message).toContain('100000 characters');
  expect(dl.job.name).toBe(name.slice(0, MAX_NAME));
  expect(dl.job.nameTruncated).toEqual({ length: 100_000, sha256: sha256(name) });
  expect(dl.job.data).toEqual({ tenantId: 'acme', mark: 'long-name' });
  expect((await h.queue('dead-letter').getJob(dl.id))!.name).toBe(name.slice(0, MAX_NAME));
  process.stdout.write(`[size-limits] its dead-letter job: ${await memoryUsage(h.queue('dead-letter').toKey(dl.id))} bytes\n`);
  expect(await h.queue('exec.scanner').count()).toBe(0);

  const redrive = await h.api('POST', `/api/v1/dead-letter/${dl.id}/redrive`, { token: ADMIN, reason: 'try it' });
  expect(redrive.status).toBe(422);
  expect(redrive.body).toMatchObject({ error: 'TG_ERR_NOT_REDRIVABLE', details: { nameLength: 100_000, nameSha256: sha256(name) } });
});

it('leaves jobs within the limits alone: a name at the limit runs, data at the payload limit is kept whole and re-driven', async () => {
  const ran: Array<{ name: string; mark: string }> = [];
  h.worker('exec.scanner', async (job) => void ran.push({ name: job.name, mark: job.data.mark }));
  const longest = `scan.${'n'.repeat(MAX_NAME - 5)}`;
  await h.ingress.add(longest, { tenantId: 'acme', mark: 'name-at-limit' });
  const atLimit = await waitFor(() => ran.find((r) => r.mark === 'name-at-limit'), 'the job named at the limit to run');
  expect(atLimit.name).toBe(longest);

  // No tenant (dead-lettered missing-tenant), data exactly at maxPayloadBytes: kept whole, re-drivable.
  const empty = Buffer.byteLength(JSON.stringify({ mark: 'at-limit', pad: '' }));
  const data = { mark: 'at-limit', pad: 'p'.repeat(MAX_PAYLOAD - empty) };
  expect(Buffer.byteLength(JSON.stringify(data))).toBe(MAX_PAYLOAD);
  const job = await h.ingress.add('scan.image', data);
  const dl = await deadLetterOf(h, job.id!, 'missing-tenant');
  expect(dl.job.data).toEqual(data);
  expect(dl.job.dataExcerpt).toBeUndefined();
  expect(dl.job.nameTruncated).toBeUndefined();
  const redrive = await h.api('POST', `/api/v1/dead-letter/${dl.id}/redrive`, { token: ADMIN, reason: 'replay it' });
  expect(redrive).toEqual({ status: 200, body: { ingressJobId: `redrive-${dl.id}`, redriven: true } });
  const again = await deadLetterOf(h, `redrive-${dl.id}`, 'missing-tenant');
  expect(again.job.data).toEqual(data);
});

it('keeps the newest limits.deadLetterMaxJobs dead-letter jobs: each add past it removes the oldest', async () => {
  const small = await createHarness('size-limits-count', { config: { limits: { deadLetterMaxJobs: 10 } }, env: { apiTokens: parseApiTokens(`ops:${ADMIN}:admin`) } });
  try {
    await small.start();
    const dlq = small.queue('dead-letter');
    const deadSoFar = async () => ((await small.api('GET', '/api/v1/dead-letter/summary', { token: ADMIN })).body.byReason['missing-tenant'] as number | undefined) ?? 0;
    const first = await small.ingress.addBulk(Array.from({ length: 10 }, (_, i) => ({ name: 'scan.image', data: { i } })));
    await waitFor(async () => ((await deadSoFar()) === 10 ? true : undefined), 'ten dead letters');
    await waitFor(async () => ((await dlq.getWaitingCount()) === 10 ? true : undefined), 'ten in the queue');
    // One at a time: each add past the bound removes exactly the oldest one.
    const later: string[] = [];
    for (let i = 0; i < 5; i++) {
      const job = await small.ingress.add('scan.image', { later: i });
      later.push(job.id!);
      await deadLetterOf(small, job.id!, 'missing-tenant');
      expect(await dlq.getWaitingCount()).toBe(10);
    }
    expect(await deadSoFar()).toBe(15);
    const kept = new Set((await dlq.getWaiting(0, -1)).map((j) => (j.data as DeadLetterData).ingressJobId));
    expect(later.every((id) => kept.has(id))).toBe(true);
    expect(first.filter((j) => kept.has(j.id!))).toHaveLength(5);
  } finally {
    await small.close();
  }
});
