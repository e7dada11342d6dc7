/** `GET /api/v1/jobs/:id`: where an ingress job is now and why (its decision record). */
import { z } from 'zod';
import { TollgateError } from '../../errors';
import { locateJob } from '../../queues/locate';
import type { ApiContext } from '../context';
import { defineRoute, ErrorBody, type RouteDef } from '../route';
import { JobLocationSchema } from '../schemas';

const Params = z.strictObject({ id: z.string().min(1).max(256).describe('Ingress job id') });

export function jobRoutes(ctx: ApiContext): RouteDef[] {
  return [
    defineRoute({
      method: 'GET',
      url: '/api/v1/jobs/:id',
      summary: 'Where an ingress job is now (ingress, exec, dead-letter) and the decision that sent it there',
      tag: 'jobs',
      access: 'read',
      params: Params,
      responses: {
        200: { description: 'The job location', schema: JobLocationSchema },
        404: { description: 'No such job (or it belongs to another tenant than the token\'s)', schema: ErrorBody },
      },
      handler: async ({ params, auth }) => {
        const loc = await locateJob(ctx.topology, ctx.governance, params.id, auth.tenantId !== undefined ? { tenantId: auth.tenantId } : {});
        // A tenant token sees only its own jobs, and cannot tell other tenants' jobs from missing ones.
        if (!loc || (auth.tenantId !== undefined && loc.tenantId !== auth.tenantId)) {
          throw new TollgateError('TG_ERR_NOT_FOUND', `no job ${params.id}`);
        }
        return loc;
      },
    }),
  ];
}
