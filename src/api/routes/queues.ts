/** `GET /api/v1/queues`: how many jobs are in each place a job can be. */
import type { Queue } from 'bullmq';
import { requireGlobalReader } from '../auth';
import type { ApiContext } from '../context';
import { defineRoute, type RouteDef } from '../route';
import { QueuesOverviewSchema } from '../schemas';

const STATES = ['waiting', 'active', 'delayed', 'prioritized', 'waiting-children', 'completed', 'failed'] as const;

export async function countJobs(queue: Queue): Promise<Record<string, number>> {
  return (await queue.getJobCounts(...STATES)) as Record<string, number>;
}

export async function queuesOverview(ctx: ApiContext) {
  const { topology, governance } = ctx;
  const exec = await Promise.all(
    [...topology.exec].map(async ([downstream, queue]) => ({
      downstream,
      queue: queue.name,
      capacity: topology.downstreams.get(downstream)!.capacity,
      inFlight: await governance.reads.inFlightCount(downstream),
      waiting: Object.values(await governance.waiting.byTenant(downstream)).reduce((a, b) => a + b, 0),
      counts: await countJobs(queue),
    })),
  );
  return {
    ingress: { queue: topology.ingress.name, counts: await countJobs(topology.ingress) },
    exec,
    deadLetter: { queue: topology.deadLetter.name, counts: await countJobs(topology.deadLetter) },
  };
}

export function queueRoutes(ctx: ApiContext): RouteDef[] {
  return [
    defineRoute({
      method: 'GET',
      url: '/api/v1/queues',
      summary: 'Job counts of every place: ingress, the waiting place and execution queue of each downstream (with jobs in flight), dead-letter',
      tag: 'queues',
      access: 'read',
      responses: { 200: { description: 'Counts', schema: QueuesOverviewSchema } },
      handler: async ({ auth }) => {
        requireGlobalReader(auth);
        return queuesOverview(ctx);
      },
    }),
  ];
}
