/**
 * RELIABILITY.md scenario 1: kill -9 of a gate at each failpoint in the promotion path, with two gates
 * under load. Each gate is armed to kill itself at one named step; a supervisor restarts it. Then the
 * conservation invariant: every job in exactly one place, none run twice, capacity never exceeded.
 */
import { chaosConfigInput, expectConserved, sampleInflight, startCluster } from './support/cluster';
import type { Child } from '../support/processes';
import { expectWithinCapacity } from './support/observe';
import { waitFor } from '../support/services';

jest.setTimeout(60_000);

const STEPS = [
  'gate.after-claim',
  'gate.after-decision',
  'gate.after-exec-add',
  'gate.after-enqueue',
  'gate.after-dead-letter',
  'gate.before-finish',
  'scheduler.after-admit',
  'scheduler.after-exec-add',
] as const;

it('two gates killed -9 at every promotion failpoint lose, duplicate and over-admit nothing', async () => {
  // Capacities bind (50 / 20 / 100) so jobs also take the waiting place and the scheduler's path.
  const c = await startCluster('failpoints', chaosConfigInput());
  const gates: Child[] = [];
  const deaths = new Map<string, number>();
  const crashes: unknown[] = [];
  let stop = false;
  try {
    c.spawn('observer');
    const exec = c.startExec({ concurrency: 100, work: () => new Promise((r) => setTimeout(r, 2)) });
    const sampler = sampleInflight(c);
    // Each restart arms the next step in turn (kill at its 3rd to 40th hit), so every step is hit.
    let round = 0;
    const supervise = (slot: number): void => {
      const step = STEPS[round++ % STEPS.length]!;
      // Once-per-batch steps are hit less often than per-job ones.
      const at = step === 'gate.after-dead-letter' ? 2 : step === 'gate.after-claim' || step === 'gate.before-finish' ? 1 + Math.floor(Math.random() * 4) : 3 + Math.floor(Math.random() * 37);
      const g = c.spawn('gate', { TOLLGATE_FAILPOINTS: `${step}=kill@${at}` });
      gates[slot] = g;
      void g.exited.then(({ code, signal }) => {
        if (stop) return;
        if (signal === 'SIGKILL') deaths.set(step, (deaths.get(step) ?? 0) + 1);
        else crashes.push({ step, code, signal, logs: g.logs.slice(-5) });
        supervise(slot);
      });
    };
    supervise(0);
    supervise(1);
    const good = await c.produce(c.goodJobs(3000));
    const bad = await c.produce(Array.from({ length: 60 }, (_, i) => ({ name: 'scan.image', data: { seq: i } })));
    const ids = [...good, ...bad];
    await c.settleIngress(ids, 45_000);
    await waitFor(() => [...exec.runs.keys()].length >= good.length, 'every good job executed', 30_000, 100);
    // A late duplicate, if any, has the time to show up.
    await new Promise((r) => setTimeout(r, 1000));
    stop = true;
    const peaks = await sampler.stop();
    const result = await c.conservation(ids, exec);
    process.stdout.write(`[chaos] failpoint deaths: ${JSON.stringify(Object.fromEntries(deaths))}\n`);
    expect(crashes).toEqual([]);
    for (const step of STEPS) expect({ step, died: (deaths.get(step) ?? 0) > 0 }).toEqual({ step, died: true });
    expectConserved('gate failpoints', result, { exec: good.length, 'dead-letter': bad.length, ingress: 0, waiting: 0 });
    expect(result.deadReasons).toEqual({ 'missing-tenant': bad.length });
    expectWithinCapacity(exec, peaks);
  } finally {
    stop = true;
    await c.close();
  }
});
