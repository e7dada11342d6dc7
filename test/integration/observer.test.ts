/**
 * The observer counts every execution outcome exactly once: across its own restart, across kill -9
 * mid-batch, and when the events it would have read are gone (the sweep reconciles, and says so).
 */
import { UnrecoverableError } from 'bullmq';
import { Client } from 'pg';
import { execJobId } from '../../src/redis/keys';
import { Governance } from '../../src/redis/governance';
import { Keys } from '../../src/redis/keys';
import { startTollgate } from '../../src/runtime';
import { createHarness, type Harness } from '../support/harness';
import { spawnWorker, writeConfigFile } from '../support/processes';
import { REDIS_URL, testConfigInput, waitFor } from '../support/services';

jest.setTimeout(60_000);

let h: Harness;
let gov: Governance;

beforeEach(async () => {
  h = await createHarness('observer');
  gov = new Governance(h.redis, new Keys(h.prefix), 60_000, h.config.downstreams.map((d) => d.name));
});
afterEach(async () => {
  await h.close();
});

async function addMany(n: number, name: string, data: Record<string, unknown> = {}, opts: Record<string, unknown> = {}) {
  const jobs = await h.ingress.addBulk(Array.from({ length: n }, (_, i) => ({ name, data: { tenantId: 'acme', i, ...data }, opts })));
  return jobs.map((j) => j.id!);
}

it('counts completions and final failures per downstream and releases every admitted job', async () => {
  await h.start();
  h.worker('exec.scanner', async (job) => {
    if (job.data.fail) throw new Error('scanner exploded');
    return 'ok';
  });
  await addMany(30, 'scan.image');
  await addMany(10, 'scan.image', { fail: true }, { attempts: 2, backoff: { type: 'fixed', delay: 10 } });
  const stats = await waitFor(async () => {
    const s = await gov.reads.stats('scanner');
    return s.completed === 30 && s.failed === 10 ? s : undefined;
  }, 'all outcomes counted');
  expect(stats).toMatchObject({ admitted: 40, completed: 30, failed: 10 });
  expect(await gov.reads.inFlightCount('scanner')).toBe(0);
});

it('misses nothing and counts nothing twice across an observer restart', async () => {
  await h.start(['gate']);
  const observer1 = await startTollgate({ roles: ['observer'], env: h.env, config: h.config });
  await observer1.started;
  h.worker('exec.policy', async () => 'ok');
  await addMany(50, 'policy.eval');
  await waitFor(async () => (await gov.reads.stats('policy')).completed === 50 || undefined, 'first 50 counted');
  await observer1.close();

  // Jobs finish while no observer runs; their events wait in the stream.
  await addMany(70, 'policy.eval');
  await waitFor(async () => (await h.queue('exec.policy').getJobCounts('completed')).completed === 120 || undefined, 'all executed');
  expect((await gov.reads.stats('policy')).completed).toBe(50);

  const observer2 = await startTollgate({ roles: ['observer'], env: h.env, config: h.config });
  await observer2.started;
  try {
    await waitFor(async () => (await gov.reads.stats('policy')).completed === 120 || undefined, 'the rest counted after restart');
    await new Promise((r) => setTimeout(r, 700));
    expect(await gov.reads.stats('policy')).toMatchObject({ admitted: 120, completed: 120 });
    expect(await gov.reads.inFlightCount('policy')).toBe(0);
  } finally {
    await observer2.close();
  }
});

it('redelivers a batch whose observer was killed -9 before acknowledging, without double counting', async () => {
  await h.start(['gate']);
  const configFile = writeConfigFile(testConfigInput());
  const env = { REDIS_URL, DATABASE_URL: h.db.url, TOLLGATE_PREFIX: h.prefix, TOLLGATE_CONFIG: configFile };
  // Dies after applying its first batch of releases, before the XACK.
  const doomed = spawnWorker('observer', { ...env, TOLLGATE_FAILPOINTS: 'observer.before-ack=kill' });
  h.worker('exec.attestor', async () => 'ok');
  await addMany(40, 'attest.sbom');
  expect((await doomed.exited).signal).toBe('SIGKILL');
  const pending = (await h.redis.xpending(`${h.prefix}:exec.attestor:events`, 'tollgate-observer')) as [number, ...unknown[]];
  expect(pending[0]).toBeGreaterThan(0);

  const survivor = spawnWorker('observer', env);
  try {
    await waitFor(async () => (await gov.reads.stats('attestor')).completed === 40 || undefined, 'every completion counted');
    await waitFor(
      async () => ((await h.redis.xpending(`${h.prefix}:exec.attestor:events`, 'tollgate-observer')) as [number])[0] === 0 || undefined,
      'the dead observer\'s pending events claimed and acknowledged',
    );
    expect(await gov.reads.stats('attestor')).toMatchObject({ admitted: 40, completed: 40 });
  } finally {
    survivor.kill('SIGTERM');
    await survivor.exited;
  }
});

it('releases a job removed by hand before it ran', async () => {
  await h.start();
  const [id] = await addMany(1, 'scan.image');
  const execId = execJobId(id!);
  await waitFor(async () => (await h.queue('exec.scanner').getJobState(execId)) === 'waiting' || undefined, 'promotion');
  expect(await gov.reads.inFlightCount('scanner')).toBe(1);
  await (await h.queue('exec.scanner').getJob(execId))!.remove();
  await waitFor(async () => (await gov.reads.stats('scanner')).vanished === 1 || undefined, 'the removal released');
  expect(await gov.reads.inFlightCount('scanner')).toBe(0);
});

it('reconciles when the stream lost events while no observer ran, and reports the gap', async () => {
  await h.start(['gate']);
  h.worker('exec.scanner', async (job) => {
    if (job.data.fail) throw new UnrecoverableError('bad image');
    return 'ok';
  });
  const observer1 = await startTollgate({ roles: ['observer'], env: h.env, config: h.config });
  await observer1.started;
  await observer1.close(); // consumer group exists, then the observer is gone
  await addMany(20, 'scan.image');
  await addMany(5, 'scan.image', { fail: true });
  await addMany(10, 'scan.image', {}, { removeOnComplete: true });
  await waitFor(async () => {
    const c = await h.queue('exec.scanner').getJobCounts('completed', 'failed', 'waiting', 'active');
    return c.completed === 20 && c.failed === 5 && c.waiting === 0 && c.active === 0 && (await gov.reads.inFlightCount('scanner')) === 35;
  }, 'all executed');
  await h.redis.xtrim(`${h.prefix}:exec.scanner:events`, 'MAXLEN', 0);

  const observer2 = await startTollgate({ roles: ['observer'], env: h.env, config: h.config });
  await observer2.started;
  try {
    await waitFor(async () => (await gov.reads.inFlightCount('scanner')) === 0 || undefined, 'the sweep to release all 35');
    expect(await gov.reads.stats('scanner')).toMatchObject({ admitted: 35, completed: 20, failed: 5, vanished: 10 });
    const metrics = await observer2.metrics.registry.getSingleMetricAsString('tollgate_observer_event_gaps_total');
    expect(metrics).toMatch(/tollgate_observer_event_gaps_total\{downstream="scanner"\} 1/);
    const swept = await observer2.metrics.registry.getSingleMetricAsString('tollgate_observer_releases_total');
    expect(swept).toMatch(/downstream="scanner",outcome="completed",source="sweep"\} 20/);
  } finally {
    await observer2.close();
  }
});

it('snapshots counters to Postgres and restores them into a Redis that lost them', async () => {
  await h.start();
  h.worker('exec.policy', async () => 'ok');
  await addMany(12, 'policy.eval');
  await waitFor(async () => (await gov.reads.stats('policy')).completed === 12 || undefined, 'outcomes counted');
  await h.stop(); // the last snapshot is written on the way out

  const pg = new Client({ connectionString: h.db.url });
  await pg.connect();
  try {
    const { rows } = await pg.query(`SELECT counters FROM downstream_counters WHERE downstream = 'policy'`);
    expect(rows[0].counters).toMatchObject({ admitted: 12, completed: 12 });
  } finally {
    await pg.end();
  }
  // Redis loses the governance keys (flush); gates keep counting before the observer is back.
  await h.redis.del(gov.keys.stats('policy'), gov.keys.statsRestored('policy'));
  await h.start(['gate']);
  await addMany(3, 'policy.eval');
  await waitFor(async () => (await gov.reads.stats('policy')).admitted === 3 || undefined, 'new admissions counted from zero');
  await h.stop();
  await h.start(['gate', 'observer']);
  // The snapshot is added to what was counted since the loss, not written over it.
  await waitFor(async () => {
    const s = await gov.reads.stats('policy');
    return s.admitted === 15 && s.completed === 15 || undefined;
  }, 'counters restored and the new completions counted');
});

describe('tenant concurrency slots', () => {
  const quota = { id: 'q1', tenantId: 'slotty', maxConcurrent: 2, onPeriodExceeded: 'wait' as const, paused: false };
  const inFlight = async () => Number((await h.redis.hget(gov.keys.quotaState('q1', 'slotty'), 'inf')) ?? 0);
  // The quota goes straight into Redis (these tests are about the observer), marked as a mirror in
  // step with Postgres (version 0): without the mark a starting gate rebuilds the mirror from Postgres.
  const seedQuota = async () => {
    await gov.mirror.writeTenantQuotas('slotty', [quota]);
    await h.redis.set(gov.keys.mirrorVersion(), '0');
  };

  it('holds a slot through retries and gives it back after the last attempt fails', async () => {
    await seedQuota();
    await h.start();
    const attempts = new Map<string, number>();
    h.worker('exec.scanner', async (job) => {
      attempts.set(job.id!, (attempts.get(job.id!) ?? 0) + 1);
      if (job.data.fail) throw new Error('scanner down');
    });
    await addMany(2, 'scan.image', { tenantId: 'slotty', fail: true }, { attempts: 3, backoff: { type: 'fixed', delay: 200 } });
    await addMany(3, 'scan.image', { tenantId: 'slotty' });
    // While the two failing jobs retry, they hold both slots: the others wait.
    await new Promise((r) => setTimeout(r, 250));
    expect(await inFlight()).toBe(2);
    expect([...attempts.keys()].length).toBe(2);
    await waitFor(async () => {
      const s = await gov.reads.stats('scanner');
      return (s.completed === 3 && s.failed === 2) || undefined;
    }, 'the others after the failures');
    expect([...attempts.values()].filter((n) => n === 3)).toHaveLength(2);
    await waitFor(async () => (await inFlight()) === 0 || undefined, 'every slot back');
  });

  it('frees slots through the sweep when completions were missed', async () => {
    await seedQuota();
    await h.start(['gate']);
    h.worker('exec.scanner', async () => 'ok');
    await addMany(4, 'scan.image', { tenantId: 'slotty' });
    // Two ran; no observer released them, so the other two wait for slots that never come back...
    await waitFor(async () => (await h.queue('exec.scanner').getJobCounts('completed')).completed === 2 || undefined, 'two executed');
    await new Promise((r) => setTimeout(r, 300));
    expect(await inFlight()).toBe(2);
    expect((await h.queue('exec.scanner').getJobCounts('completed')).completed).toBe(2);
    // ...and their events are gone from the stream.
    await h.redis.xtrim(`${h.prefix}:exec.scanner:events`, 'MAXLEN', 0);
    const observer = await startTollgate({ roles: ['observer'], env: h.env, config: h.config });
    await observer.started;
    try {
      await waitFor(async () => (await h.queue('exec.scanner').getJobCounts('completed')).completed === 4 || undefined, 'the waiting two admitted once the sweep freed the slots');
      await waitFor(async () => (await inFlight()) === 0 || undefined, 'no slot leaked');
    } finally {
      await observer.close();
    }
  });
});
