/**
 * One way to declare an API route: zod schemas for params, query, body and responses, an access
 * level, and a handler. The same declaration validates requests and generates the OpenAPI document
 * (src/api/openapi.ts), so the two cannot drift apart.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z, type ZodType } from 'zod';
import { TollgateError } from '../errors';
import { authorize, type Access, type AuthContext } from './auth';
import type { ApiToken } from '../config/tokens';

export interface RouteDef<P = unknown, Q = unknown, B = unknown> {
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  /** Fastify path, e.g. `/api/v1/jobs/:id`. */
  url: string;
  summary: string;
  tag: string;
  access: Access;
  /** The route reads or writes Postgres: 503 until migrations are applied. */
  postgres?: boolean;
  params?: ZodType<P>;
  query?: ZodType<Q>;
  body?: ZodType<B>;
  /** Request headers the route reads itself (`If-Match`...), for the OpenAPI document. */
  headers?: Record<string, ZodType>;
  responses: Record<number, { description: string; schema?: ZodType; contentType?: string; headers?: Record<string, ZodType> }>;
  handler(input: { params: P; query: Q; body: B; auth: AuthContext; req: FastifyRequest; reply: FastifyReply }): Promise<unknown>;
}

export function defineRoute<P, Q, B>(def: RouteDef<P, Q, B>): RouteDef {
  return def as unknown as RouteDef;
}

function parse<T>(schema: ZodType<T> | undefined, value: unknown, where: string): T {
  if (!schema) return undefined as T;
  const r = schema.safeParse(value ?? {});
  if (!r.success) {
    // An unknown field is named as the field itself, not as its parent object.
    const details = r.error.issues.flatMap((i) =>
      i.code === 'unrecognized_keys'
        ? i.keys.map((k) => ({ field: [where, ...i.path.map(String), k].join('.'), message: 'unknown field' }))
        : [{ field: [where, ...i.path.map(String)].join('.'), message: i.message }],
    );
    throw new TollgateError('TG_ERR_VALIDATION', `invalid ${where}: ${details.map((d) => `${d.field}: ${d.message}`).join('; ')}`, details);
  }
  return r.data;
}

export function registerRoutes(
  app: FastifyInstance,
  routes: readonly RouteDef[],
  tokens: readonly ApiToken[],
  postgresReady: () => boolean,
  /** Resolves if Postgres answers now; checked before every change (see below). */
  postgresAnswers?: () => Promise<unknown>,
): void {
  for (const def of routes) {
    app.route({
      method: def.method,
      url: def.url,
      handler: async (req, reply) => {
        const auth = authorize(req.headers.authorization, def.access, tokens);
        if (def.postgres && !postgresReady()) {
          throw new TollgateError('TG_ERR_UNAVAILABLE', 'Postgres is not ready (unreachable at DATABASE_URL, or migrations not applied yet); retry shortly');
        }
        // A change needs Postgres (the durable truth and its audit entry): refused up front while it
        // does not answer, so no change is half-applied (in Redis but not audited) during an outage.
        if (def.postgres && def.method !== 'GET' && postgresAnswers) {
          try {
            await postgresAnswers();
          } catch (err) {
            throw new TollgateError(
              'TG_ERR_UNAVAILABLE',
              `Postgres does not answer at DATABASE_URL (${(err as Error).message}); changes are refused until it is back (the gates keep admitting under the rules already in Redis); retry shortly`,
            );
          }
        }
        const params = parse(def.params, req.params, 'params');
        const query = parse(def.query, req.query, 'query');
        // A missing or null body is refused, never read as {} (a PUT would then wipe every field).
        if (def.body && (req.body === undefined || req.body === null)) {
          const message = `a JSON object body is required (got ${req.body === null ? 'null' : 'none'}); send {} to take every default`;
          throw new TollgateError('TG_ERR_VALIDATION', `invalid body: ${message}`, [{ field: 'body', message }]);
        }
        const body = parse(def.body, req.body, 'body');
        return def.handler({ params, query, body, auth, req, reply });
      },
    });
  }
}

export const ErrorBody = z
  .object({
    error: z.string().describe('Error code from docs/errors.md, e.g. TG_ERR_VALIDATION'),
    message: z.string(),
    details: z.unknown().optional(),
  })
  .meta({ id: 'Error' });
