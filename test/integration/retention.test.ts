/**
 * What Redis keeps for a finished job (issue 11): its decision record, compact, for the history that
 * `GET /api/v1/jobs/:id` shows, and nothing else: the deduplication key of its execution job lives only
 * for the window in which a late repeated add may still come once the job was released (then the
 * record's outcome makes a repeated delivery a no-op). Jobs admitted at
 * intake and jobs that went through the waiting place (whose record held their payload). Real Redis and
 * Postgres, tollgate in-process.
 */
import type { Job } from 'bullmq';
import { parseApiTokens } from '../../src/config/tokens';
import { encodeJobId, execJobId, Keys } from '../../src/redis/keys';
import { createHarness, type Harness } from '../support/harness';
import { waitFor } from '../support/services';

jest.setTimeout(60_000);

const ADMIN = 'admin-secret-0123456789';
let h: Harness;

afterAll(async () => {
  await h?.close();
});

it('keeps a compact record and no deduplication key for finished jobs, direct and waited', async () => {
  h = await createHarness('retention', {
    env: { apiTokens: parseApiTokens(`ops:${ADMIN}:admin`) },
    // Short leases: the deduplication key of a released job lives 2 × the longest lease + 1 s (the window in
    // which a late repeated add may still come), not the record's retention.
    config: {
      downstreams: [{ name: 'scanner', capacity: 1 }, { name: 'attestor', capacity: 20 }, { name: 'policy', capacity: 20 }],
      gate: { lockDurationMs: 300 },
      scheduler: { leaseMs: 300 },
    },
  });
  await h.start();
  const ran: Job[] = [];
  h.worker('exec.scanner', async (job) => {
    ran.push(job);
    await new Promise((r) => setTimeout(r, 50));
  }, { concurrency: 5 });
  // Capacity 1: the first is admitted at intake, the others wait (their records hold their payloads).
  const jobs = await h.ingress.addBulk(Array.from({ length: 4 }, (_, i) => ({ name: 'scan.image', data: { tenantId: 'acme', i, filler: 'x'.repeat(200) } })));
  const keys = new Keys(h.prefix);
  await waitFor(async () => ran.length === 4 && (await h.redis.zcard(keys.inflight('scanner'))) === 0 || undefined, 'all four run and released');
  const exec = h.queue('exec.scanner');
  for (const j of jobs) {
    const key = encodeJobId(j.id!);
    const rec = keys.record(key);
    const dedup = exec.toKey(`de:${execJobId(key)}`);
    const ttl = await h.redis.pttl(dedup);
    // Shortened at release (or already gone), never kept for the record's retention.
    expect({ id: j.id, short: ttl === -2 || (ttl > 0 && ttl <= 1600) }).toEqual({ id: j.id, short: true });
    expect({ id: j.id, encoding: await h.redis.object('ENCODING', rec) }).toEqual({ id: j.id, encoding: 'listpack' });
    expect(Number(await h.redis.memory('USAGE', rec))).toBeLessThan(400);
    expect(await h.redis.hget(rec, 'p')).toBeNull();
    const where = await h.api('GET', `/api/v1/jobs/${j.id}`, { token: ADMIN });
    expect(where.status).toBe(200);
    expect(where.body).toMatchObject({ place: 'exec', downstream: 'scanner', tenantId: 'acme' });
  }
  // The window over, nothing but the records is left.
  await waitFor(async () => {
    const left = await Promise.all(jobs.map((j) => h.redis.exists(exec.toKey(`de:${execJobId(encodeJobId(j.id!))}`))));
    return left.every((n) => n === 0) || undefined;
  }, 'the deduplication keys to expire', 5000);
});
