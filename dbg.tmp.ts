import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { spawnWorker, writeConfigFile } from './test/support/processes';
import { testConfigInput, uniquePrefix, createTestDatabase, REDIS_URL } from './test/support/services';
(async () => {
  const prefix = uniquePrefix('dbg'); const db = await createTestDatabase('dbg');
  const cfg = writeConfigFile(testConfigInput({ gate: { lockDurationMs: 1000, stalledIntervalMs: 500, concurrency: 100 } }));
  const env = { REDIS_URL, DATABASE_URL: db.url, TOLLGATE_PREFIX: prefix, TOLLGATE_CONFIG: cfg };
  const obs = spawnWorker('observer', env); let g1 = spawnWorker('gate', env); let g2 = spawnWorker('gate', env);
  const monkey = setInterval(async () => { g1.kill('SIGKILL'); await g1.exited; g1 = spawnWorker('gate', env); }, 700);
  setTimeout(() => clearInterval(monkey), 12000);
  const r = new Redis({ maxRetriesPerRequest: null });
  const q = new Queue('ingress', { connection: r, prefix });
  let n = 0;
  for (const d of ['scanner','attestor','policy']) new Worker('exec.' + d, async () => { n++; }, { connection: new Redis({ maxRetriesPerRequest: null }), prefix, concurrency: 100 });
  const names = ['scan.image','attest.sbom','policy.eval'];
  await q.addBulk(Array.from({ length: 10000 }, (_, i) => ({ name: names[i%3]!, data: { tenantId: 't' + (i % 7) }, opts: { removeOnComplete: true, attempts: 2 } })));
  for (let i = 0; i < 20; i++) {
    await new Promise((res) => setTimeout(res, 1000));
    const G = `${prefix}:gov:{${prefix}.gov}:`;
    const G0 = `${prefix}:gov:{${prefix}.gov}:`;
    console.log('promoting', await r.zrange(G0 + 'ds:attestor:promoting', 0, -1, 'WITHSCORES'), 'now', Date.now());
    console.log('executed', n, 'ingress', JSON.stringify(await q.getJobCounts('waiting','active')), 'inflight att', await r.zcard(G + 'ds:attestor:inflight'), 'wc', JSON.stringify(await r.hgetall(G + 'ds:attestor:wc')), 'fst', JSON.stringify(await r.hgetall(G + 'ds:attestor:fst')));
  }
  console.log('gate logs', JSON.stringify(g1.logs.slice(0, 5)));
  console.log('obs logs', JSON.stringify(obs.logs.slice(0, 5)));
  obs.kill(); g1.kill(); g2.kill();
  console.log('g2 logs', JSON.stringify(g2.logs.slice(0, 5)));
  process.exit(0);
})();
