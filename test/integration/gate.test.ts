/**
 * The gate end to end on real Redis and Postgres: plain BullMQ producers add to ingress, tollgate
 * promotes, plain BullMQ workers receive exactly what the producer sent.
 */
import type { Job } from 'bullmq';
import { execJobId } from '../../src/redis/keys';
import type { DeadLetterData } from '../../src/queues/gate';
import type { JobLocation } from '../../src/queues/locate';
import { createHarness, type Harness } from '../support/harness';
import { clusterQueueName, waitFor } from '../support/services';

let h: Harness;

beforeAll(async () => {
  h = await createHarness('gate');
  await h.start();
});
afterEach(async () => {
  await h.closeWorkers();
});
afterAll(async () => {
  await h.close();
});

it('promotes a producer job to exec.<downstream> with the same name, data and retry options', async () => {
  const received: Job[] = [];
  h.worker('exec.scanner', async (job) => {
    received.push(job);
    return { ok: true };
  });
  const data = { tenantId: 'acme', image: 'registry.local/app:1.2.3', layers: [1, 2, 3], nested: { a: null } };
  const opts = { attempts: 4, backoff: { type: 'exponential', delay: 250 }, removeOnFail: 50 };
  const added = await h.ingress.add('scan.image', data, opts);

  await waitFor(() => received.length === 1, 'the execution worker to receive the job');
  const got = received[0]!;
  expect(got.name).toBe('scan.image');
  expect(got.data).toEqual(data);
  expect(got.id).toBe(execJobId(added.id!));
  expect(got.opts).toMatchObject(opts);

  // The ingress copy is gone once handled: the job is in exactly one place.
  await waitFor(async () => (await h.ingress.getJobCounts('waiting', 'active', 'completed', 'failed', 'delayed')).active === 0 || undefined, 'ingress to drain');
  expect(await h.ingress.getJobState(added.id!)).toBe('unknown');
});

it('routes by job-name rule, then by data.downstream', async () => {
  const byQueue: Record<string, string[]> = { 'exec.attestor': [], 'exec.policy': [] };
  for (const q of Object.keys(byQueue)) h.worker(q, async (job) => void byQueue[q]!.push(job.name));
  await h.ingress.add('attest.sbom', { tenantId: 'acme' });
  await h.ingress.add('evaluate', { tenantId: 'globex', downstream: 'policy' });
  await waitFor(() => byQueue['exec.attestor']!.length === 1 && byQueue['exec.policy']!.length === 1, 'both routes');
  expect(byQueue).toEqual({ 'exec.attestor': ['attest.sbom'], 'exec.policy': ['evaluate'] });
});

it('dead-letters malformed jobs with a machine-readable reason and keeps promoting good ones', async () => {
  const good: string[] = [];
  h.worker('exec.policy', async (job) => void good.push(job.data.n));
  const bad = [
    { name: 'scan.image', data: 'not an object', reason: 'invalid-payload' },
    { name: 'scan.image', data: { image: 'x' }, reason: 'missing-tenant' },
    { name: 'mystery.job', data: { tenantId: 'acme' }, reason: 'no-route' },
    { name: 'mystery.job', data: { tenantId: 'acme', downstream: 'printer' }, reason: 'unknown-downstream' },
    { name: 'scan.image', data: { tenantId: 'acme', priority: 'urgent' }, reason: 'invalid-priority' },
  ];
  const ids: Record<string, string> = {};
  for (const [i, b] of bad.entries()) {
    ids[b.reason] = (await h.ingress.add(b.name, b.data))!.id!;
    await h.ingress.add('policy.check', { tenantId: 'acme', n: `good-${i}` });
  }
  await waitFor(async () => (await h.queue('dead-letter').getJobCounts('waiting')).waiting === bad.length || undefined, 'all bad jobs dead-lettered');
  await waitFor(() => good.length === bad.length, 'all good jobs promoted');

  for (const b of bad) {
    const dl = await h.queue('dead-letter').getJob(execJobId(ids[b.reason]!));
    const d = dl!.data as DeadLetterData;
    expect({ reason: d.reason, name: dl!.name, original: d.job.data, ingressJobId: d.ingressJobId }).toEqual({
      reason: b.reason,
      name: b.name,
      original: b.data,
      ingressJobId: ids[b.reason],
    });
    expect(d.message.length).toBeGreaterThan(10);
    expect(d.code).toMatch(/^TG_ERR_/);
  }
  expect(good.sort()).toEqual(bad.map((_, i) => `good-${i}`).sort());
});

it('records every decision so the API tells where a job is and why', async () => {
  const url = h.tollgate!.url!;
  h.worker('exec.attestor', async () => 'done');
  const ok = await h.ingress.add('attest.provenance', { tenantId: 'initech' });
  const bad = await h.ingress.add('attest.provenance', { nope: true });

  const okLoc = await waitFor(async () => {
    const body = (await (await fetch(`${url}/api/v1/jobs/${ok.id}`)).json()) as JobLocation;
    return body.finished ? body : undefined;
  }, 'the admitted job to finish');
  expect(okLoc).toMatchObject({
    id: ok.id,
    place: 'exec',
    queue: clusterQueueName('exec.attestor'),
    jobId: execJobId(ok.id!),
    tenantId: 'initech',
    downstream: 'attestor',
    decision: { outcome: 'admitted' },
    finished: { outcome: 'completed' },
  });
  expect(['completed', 'removed']).toContain(okLoc.state);

  const badLoc = await waitFor(async () => {
    const res = await fetch(`${url}/api/v1/jobs/${bad.id}`);
    const body = (await res.json()) as JobLocation;
    return body.place === 'dead-letter' ? body : undefined;
  }, 'the refused job to be dead-lettered');
  expect(badLoc).toMatchObject({ place: 'dead-letter', state: 'waiting', decision: { outcome: 'dead-lettered', reason: 'missing-tenant' } });

  const missing = await fetch(`${url}/api/v1/jobs/does-not-exist`);
  expect(missing.status).toBe(404);
  expect(await missing.json()).toMatchObject({ error: 'TG_ERR_NOT_FOUND' });
});

it('does not promote a job twice when its ingress job is processed again', async () => {
  // Simulates the retry after a gate died between the execution add and completing the ingress job:
  // the same ingress job (same id, same creation time) goes through the gate again, after the first
  // execution already finished and was removed.
  const runs: string[] = [];
  h.worker('exec.scanner', async (job) => void runs.push(job.id!));
  const first = await h.ingress.add('scan.repeat', { tenantId: 'acme' }, { jobId: 'repeat-1', removeOnComplete: true });
  await waitFor(() => runs.length === 1, 'the first execution');
  await waitFor(async () => (await h.ingress.getJobState('repeat-1')) === 'unknown' || undefined, 'ingress copy removed');
  await h.ingress.add('scan.repeat', { tenantId: 'acme' }, { jobId: first.id, timestamp: first.timestamp });
  const marker = await h.ingress.add('scan.marker', { tenantId: 'acme' });
  await waitFor(() => runs.includes(execJobId(marker.id!)), 'a later job to pass');
  expect(runs.filter((id) => id.startsWith(execJobId('repeat-1')))).toEqual([execJobId('repeat-1')]);
});
