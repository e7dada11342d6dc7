/**
 * Redis Cluster failover under load (issue 17): three masters with one replica each, two gates and
 * an observer as processes, 6,000 jobs flowing; the master serving the governance slot (every
 * decision's state) is killed -9 mid-stream, its replica takes over, production goes on. Reported:
 * how long the slot had no master, and where every job ended (the conservation check).
 *
 * Replication is asynchronous: a write the killed master acknowledged but had not yet sent to its
 * replica is gone after the failover (a decision record, a capacity slot taken, a job added). The
 * assertions are what must hold anyway: no job runs twice, and every job the producer added after
 * the failover, and every job whose ingress entry survived, ends in one place. What the check finds
 * for the jobs caught in the window is reported, not asserted (docs/operations.md, "Redis Cluster
 * failover").
 */
import { chaosConfigInput, DOWNSTREAMS, startCluster, type Cluster } from './support/cluster';
import { waitFor } from '../support/services';

jest.setTimeout(240_000);

let c: Cluster | undefined;
afterAll(async () => {
  await c?.close();
});

it('a master killed -9 under load: its replica takes over, nothing runs twice, every job is accounted for (reported)', async () => {
  c = await startCluster('failover', chaosConfigInput(), { redisCluster: true });
  const cluster = c.redisCluster!;
  c.spawn('gate');
  c.spawn('gate');
  c.spawn('observer');
  const exec = c.startExec({ concurrency: 100 });
  const govSlot = await cluster.slotOf(c.keys.throttles());
  const victim = await cluster.masterOf(govSlot);
  const coLocated: string[] = [];
  for (const d of DOWNSTREAMS) if ((await cluster.masterOfKey(c.keys.events(c.execQueue(d)))) === victim) coLocated.push(c.execQueue(d));
  if ((await cluster.masterOfKey(c.keys.bullKey(c.ingress.name, 'wait'))) === victim) coLocated.push(c.ingress.name);

  const replica = await cluster.replicaOf(victim);
  expect(replica).toBeDefined();

  const jobs = c.goodJobs(6000);
  const before = await c.produce(jobs.slice(0, 3000));
  await waitFor(() => exec.runs.size >= 1000 || undefined, '1,000 jobs executed before the kill', 60_000, 20);
  // The precondition of any failover: a replica whose link to its master is up.
  const link = await waitFor(async () => {
    const r = await cluster.replication(replica!);
    return r.master_link_status === 'up' ? r : undefined;
  }, "the replica's link to its master up", 30_000, 100);
  const killedAt = Date.now();
  const executedAtKill = exec.runs.size;
  await cluster.kill(victim);
  // The producer goes on through the failover (its commands wait for the slot's new master).
  const producing = c.produce(jobs.slice(3000));
  // Redis's own election promotes the replica (node timeout 2 s). What is tested here is tollgate through a
  // failover, not the election: if none happened in 30 s (a starved machine), the replica is made master
  // with CLUSTER FAILOVER TAKEOVER, and the report says so.
  const promotedTo = async () => {
    const m = await cluster.masterOf(govSlot).catch(() => undefined);
    return m && m !== victim ? m : undefined;
  };
  let forced = false;
  let promoted = await waitFor(promotedTo, 'a replica promoted to master of the governance slot', 30_000, 100).catch(() => undefined);
  if (!promoted) {
    process.stdout.write(`[chaos] failover: no election in 30 s; replica ${replica!.port} replication ${JSON.stringify(await cluster.replication(replica!).catch((e: Error) => e.message))}\n${await cluster.view()}\n`);
    forced = true;
    await cluster.takeover(replica!);
    promoted = await waitFor(promotedTo, 'the replica master after CLUSTER FAILOVER TAKEOVER', 30_000, 100);
  }
  const failoverMs = Date.now() - killedAt;
  const after = await producing;
  const ids = [...before, ...after];
  await c.settleIngress(ids, 120_000);
  // Settled: the waiting place drains (capacity is released as jobs finish), executions stop growing.
  let last = -1;
  await waitFor(
    async () => {
      const n = exec.runs.size;
      const stable = n === last;
      last = n;
      return stable && n > 0 ? true : undefined;
    },
    'executions to settle',
    120_000,
    2000,
  );
  const result = await c.conservation(ids, exec);
  process.stdout.write(
    `[chaos] failover: master ${victim.port} (governance slot ${govSlot}${coLocated.length ? `, with ${coLocated.join(', ')}` : ''}) killed -9 after ${executedAtKill} executions (replica link ${link.master_link_status}, ${link.master_last_io_seconds_ago} s since its last I/O); ` +
      `replica ${promoted.port} master after ${failoverMs} ms${forced ? ' (forced with TAKEOVER)' : ''}; ${ids.length} jobs: ${JSON.stringify(result.byPlace)}, missing ${result.missing.length}, ` +
      `in two places ${result.multiple.length}, duplicated ${result.duplicated.length}, dead-letter reasons ${JSON.stringify(result.deadReasons)}\n`,
  );
  if (result.missing.length > 0 || result.multiple.length > 0) {
    process.stdout.write(`[chaos] failover: missing ${JSON.stringify(result.missing.slice(0, 10))}, in two places ${JSON.stringify(result.multiple.slice(0, 10))}\n`);
  }
  // Nothing runs twice, whatever the failover lost.
  expect(result.duplicated).toEqual([]);
  // Every job added after the failover ended in exactly one place.
  const afterSet = new Set(after);
  expect(result.missing.filter((id) => afterSet.has(id))).toEqual([]);
  expect(result.multiple.filter((m) => afterSet.has(m.id))).toEqual([]);
});
