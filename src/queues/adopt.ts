/**
 * After Redis lost its governance state but not its queues, jobs already in the execution queues
 * (waiting, running, retrying) would run unaccounted: new admissions could exceed capacities and
 * tenant concurrency while they finish. This finds them and re-creates their accounting.
 */
import { readPath } from '../core/paths';
import type { Config } from '../config/file';
import type { Governance } from '../redis/governance';
import { jobKeyOf } from '../redis/keys';
import type { Topology } from './topology';

const LIVE = ['waiting', 'active', 'delayed', 'prioritized', 'waiting-children'] as const;

export async function adoptLiveJobs(topology: Topology, governance: Governance, config: Config): Promise<number> {
  let adopted = 0;
  for (const [downstream, queue] of topology.exec) {
    for (let start = 0; ; start += 1000) {
      const jobs = await queue.getJobs([...LIVE], start, start + 999, true);
      if (jobs.length === 0) break;
      const items = [];
      for (const job of jobs) {
        const key = job?.id ? jobKeyOf(job.id) : undefined;
        const tenantId = job ? readPath({ data: job.data }, config.tenant.idPath) : undefined;
        if (key === undefined || typeof tenantId !== 'string') continue;
        items.push({ key, tenantId, name: job.name, downstream, queue: queue.name, cost: 1 });
      }
      adopted += await governance.adopt(items);
      if (jobs.length < 1000) break;
    }
  }
  return adopted;
}
