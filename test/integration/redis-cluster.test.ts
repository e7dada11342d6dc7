/**
 * tollgate on Redis Cluster as a user starts it (issue 17): a private cluster of three masters with one
 * replica each on loopback, `npm start`'s process with REDIS_CLUSTER_NODES, hash-tagged queue names,
 * plain BullMQ producer and worker on cluster connections. Bad cluster settings exit 1 with a message
 * naming them. (The harness-based gate, quota, policy and breaker tests and the kill -9 test run on a
 * cluster too: `npm run test:cluster`.)
 */
import { Queue, Worker } from 'bullmq';
import { Cluster } from 'ioredis';
import { createBackpressureClient } from '../../src/client';
import { parseConfig } from '../../src/config/file';
import { execJobId, Keys } from '../../src/redis/keys';
import { freePort } from '../support/net';
import { startPrivateCluster, type PrivateCluster } from '../support/private-cluster';
import { spawnWorker, writeConfigFile } from '../support/processes';
import { createTestDatabase, tagQueueNames, testConfigInput, uniquePrefix, waitFor } from '../support/services';

jest.setTimeout(120_000);

let cluster: PrivateCluster;
beforeAll(async () => {
  cluster = await startPrivateCluster({ masters: 3, replicas: 1 });
});
afterAll(async () => {
  await cluster?.stop();
});

const fatalLine = (logs: Array<Record<string, unknown>>) => logs.find((l) => l.level === 'fatal' || l.level === 60);

it('exits 1 naming REDIS_CLUSTER_NODES when an entry is not host:port', async () => {
  const child = spawnWorker('all', { REDIS_CLUSTER_NODES: '127.0.0.1:7000,not-a-node', TOLLGATE_CONFIG: writeConfigFile(tagQueueNames(testConfigInput())) });
  expect((await child.exited).code).toBe(1);
  expect(fatalLine(child.logs)).toMatchObject({ code: 'TG_ERR_ENV', msg: expect.stringMatching(/REDIS_CLUSTER_NODES.*"not-a-node" is not host:port/) });
});

it('exits 1 naming each queue without a hash tag on a cluster', async () => {
  const config = { ...testConfigInput(), queues: { ingress: 'ingress', deadLetter: '{dead-letter}' }, downstreams: [{ name: 'scanner', capacity: 5, queue: '{exec.scanner}' }, { name: 'attestor', capacity: 5 }, { name: 'policy', capacity: 5, queue: '{exec.policy}' }] };
  const child = spawnWorker('all', { REDIS_CLUSTER_NODES: cluster.nodesEnv, TOLLGATE_CONFIG: writeConfigFile(config) });
  expect((await child.exited).code).toBe(1);
  const line = fatalLine(child.logs);
  expect(line).toMatchObject({ code: 'TG_ERR_CONFIG' });
  expect(String(line?.msg)).toContain('queues.ingress "ingress" (e.g. "{ingress}")');
  expect(String(line?.msg)).toContain('downstreams[1].queue "exec.attestor"');
  expect(String(line?.msg)).not.toContain('queues.deadLetter');
});

it('runs all roles on the cluster: ready, governs, executes, dead-letters, releases capacity', async () => {
  const prefix = uniquePrefix('rcluster');
  const db = await createTestDatabase('rcluster');
  const port = await freePort();
  const config = tagQueueNames(testConfigInput({ downstreams: [{ name: 'scanner', capacity: 2 }, { name: 'attestor', capacity: 5 }, { name: 'policy', capacity: 5 }] }));
  const child = spawnWorker('all', { REDIS_CLUSTER_NODES: cluster.nodesEnv, TOLLGATE_CONFIG: writeConfigFile(config), TOLLGATE_PREFIX: prefix, DATABASE_URL: db.url, PORT: String(port) });
  const conn = () => new Cluster(cluster.nodes.map((n) => ({ host: '127.0.0.1', port: n.port })), { redisOptions: { maxRetriesPerRequest: null } });
  const producerConn = conn();
  const workerConn = conn();
  const ingress = new Queue('{ingress}', { connection: producerConn, prefix });
  let running = 0;
  let peak = 0;
  const ran: number[] = [];
  const worker = new Worker(
    '{exec.scanner}',
    async (job) => {
      peak = Math.max(peak, ++running);
      await new Promise((r) => setTimeout(r, 30));
      running--;
      ran.push(job.data.i);
    },
    { connection: workerConn, prefix, concurrency: 10 },
  );
  const base = `http://127.0.0.1:${port}`;
  try {
    await waitFor(async () => (await fetch(`${base}/readyz`).catch(() => undefined))?.status === 200 || undefined, 'ready on the cluster', 30_000, 100);
    const jobs = await ingress.addBulk(Array.from({ length: 30 }, (_, i) => ({ name: 'scan.image', data: { tenantId: `t${i % 3}`, i }, opts: { attempts: 2 } })));
    const bad = await ingress.add('scan.image', { i: -1 });
    await waitFor(() => ran.length === 30 || undefined, '30 jobs executed', 30_000);
    // The scanner's capacity of 2 held across the cluster's slots; the producer's options survived.
    expect(peak).toBeLessThanOrEqual(2);
    const exec = new Queue('{exec.scanner}', { connection: producerConn, prefix });
    const loc = (await (await fetch(`${base}/api/v1/jobs/${jobs[0]!.id}`)).json()) as Record<string, unknown>;
    expect(loc).toMatchObject({ place: 'exec', queue: '{exec.scanner}', jobId: execJobId(jobs[0]!.id!) });
    await exec.close();
    const dead = await waitFor(async () => (await (await fetch(`${base}/api/v1/dead-letter?reason=missing-tenant`)).json()) as { items: Array<{ ingressJobId: string }> }, 'the dead letter');
    expect(dead.items.map((d) => d.ingressJobId)).toEqual([bad.id]);
    // Every slot's capacity released once the jobs finished (the observer reads each stream's slot).
    const keys = new Keys(prefix);
    await waitFor(async () => ((await producerConn.zcard(keys.inflight('scanner'))) === 0 && (await producerConn.get(keys.downstream('scanner', 'used'))) === '0') || undefined, 'capacity released', 15_000, 100);
    // The producer's backpressure client reads REDIS_CLUSTER_NODES too (REDIS_URL pointed at nothing
    // meanwhile: a client that ignored the cluster would fail to connect).
    const saved = { nodes: process.env.REDIS_CLUSTER_NODES, url: process.env.REDIS_URL };
    process.env.REDIS_CLUSTER_NODES = cluster.nodesEnv;
    process.env.REDIS_URL = `redis://127.0.0.1:${await freePort()}`;
    try {
      const bp = createBackpressureClient({ prefix, config: parseConfig(config) });
      expect(await bp.check('t0', 'scan.image')).toMatchObject({ level: 'ok', downstream: 'scanner' });
      await bp.close();
    } finally {
      for (const [k, v] of [['REDIS_CLUSTER_NODES', saved.nodes], ['REDIS_URL', saved.url]] as const) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    }
    expect(child.logs.filter((l) => Number(l.level) >= 50 || String(l.msg ?? l.raw ?? '').includes('CROSSSLOT'))).toEqual([]);
  } finally {
    await worker.close();
    await ingress.close();
    producerConn.disconnect();
    workerConn.disconnect();
    child.kill('SIGKILL');
    await child.exited;
    await db.drop();
  }
});

/**
 * Queues placed on other masters than the governance slot's (names chosen by their slot), so a
 * pipeline or script that mixes slots fails here instead of passing by luck of placement: custom job
 * ids (existence checks in the dead-letter and execution queues), deduplication ids (their holds in
 * ingress's slot, released with the execution queue's acknowledgements), a breaker downstream whose jobs
 * fail and retry (the observer reads records and job hashes), the usage snapshot (a SCAN).
 */
it('spreads ingress, the execution queues and governance over three masters, and every path still works', async () => {
  const prefix = uniquePrefix('rspread');
  const keys = new Keys(prefix);
  const gov = (await cluster.masterOfKey(keys.throttles())).port;
  const taken = new Set([gov]);
  const pick = async (base: string) => {
    const { queue, master } = await cluster.queueTagOn(base, (q) => keys.bullKey(q, 'wait'), (m) => !taken.has(m.port));
    taken.add(master.port);
    return queue;
  };
  const ingressName = await pick('ingress');
  const scannerQueue = await pick('exec.scanner');
  expect(taken.size).toBe(3);
  const db = await createTestDatabase('rspread');
  const port = await freePort();
  const config = tagQueueNames(
    testConfigInput({
      queues: { ingress: ingressName, deadLetter: '{dead-letter}' },
      downstreams: [
        { name: 'scanner', capacity: 5, queue: scannerQueue, breaker: { minimumCalls: 1000, consecutiveFailures: 1000 } },
        { name: 'attestor', capacity: 5 },
        { name: 'policy', capacity: 5 },
      ],
    } as never),
  );
  const child = spawnWorker('all', { REDIS_CLUSTER_NODES: cluster.nodesEnv, TOLLGATE_CONFIG: writeConfigFile(config), TOLLGATE_PREFIX: prefix, DATABASE_URL: db.url, PORT: String(port), LOG_LEVEL: 'info' });
  const producerConn = new Cluster(cluster.nodes.map((n) => ({ host: '127.0.0.1', port: n.port })), { redisOptions: { maxRetriesPerRequest: null } });
  const workerConn = new Cluster(cluster.nodes.map((n) => ({ host: '127.0.0.1', port: n.port })), { redisOptions: { maxRetriesPerRequest: null } });
  const ingress = new Queue(ingressName, { connection: producerConn, prefix });
  const attempts = new Map<string, number>();
  const worker = new Worker(
    scannerQueue,
    async (job) => {
      const n = (attempts.get(job.data.k) ?? 0) + 1;
      attempts.set(job.data.k, n);
      if (job.data.failFirst && n === 1) throw new Error('scanner hiccup');
    },
    { connection: workerConn, prefix, concurrency: 5 },
  );
  const base = `http://127.0.0.1:${port}`;
  try {
    await waitFor(async () => (await fetch(`${base}/readyz`).catch(() => undefined))?.status === 200 || undefined, 'ready on the cluster', 30_000, 100);
    await ingress.addBulk([
      ...Array.from({ length: 10 }, (_, i) => ({ name: 'scan.image', data: { tenantId: 'acme', k: `custom-${i}` }, opts: { jobId: `custom-${i}` } })),
      ...Array.from({ length: 10 }, (_, i) => ({ name: 'scan.image', data: { tenantId: 'acme', k: `dedup-${i}` }, opts: { deduplication: { id: `d-${i}` } } })),
      ...Array.from({ length: 10 }, (_, i) => ({ name: 'scan.image', data: { tenantId: 'globex', k: `retry-${i}`, failFirst: true }, opts: { attempts: 2, backoff: { type: 'fixed', delay: 10 } } })),
    ]);
    await waitFor(() => attempts.size === 30 && [...attempts].filter(([k]) => k.startsWith('retry-')).every(([, n]) => n === 2) || undefined, 'every job run (retries twice)', 30_000);
    // The observer acknowledged every event (a failed tail leaves them pending) and the holds ended.
    await waitFor(async () => {
      const pending = (await producerConn.xpending(keys.events(scannerQueue), 'tollgate-observer')) as [number, ...unknown[]];
      const holds = await producerConn.hlen(keys.ingressHeldDedup(ingressName));
      return (Number(pending[0]) === 0 && holds === 0) || undefined;
    }, 'events acknowledged and deduplication holds ended', 15_000, 100);
    // The same deduplication id is free again once its job ended; the same custom id is the same job.
    const again = await ingress.add('scan.image', { tenantId: 'acme', k: 'dedup-0-again' }, { deduplication: { id: 'd-0' } });
    await waitFor(() => attempts.has('dedup-0-again') || undefined, 'a job reusing an ended deduplication id runs');
    expect(again.id).toBeDefined();
    const problems = child.logs.filter((l) => Number(l.level) >= 40 && !/Redis lacks the quota/.test(String(l.msg)));
    expect(problems.map((l) => `${String(l.msg)} ${String(l.err ?? '')}`)).toEqual([]);
  } finally {
    await worker.close();
    await ingress.close();
    producerConn.disconnect();
    workerConn.disconnect();
    child.kill('SIGKILL');
    await child.exited;
    await db.drop();
  }
});

