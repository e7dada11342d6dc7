/** Builds the OpenAPI 3.1 document from the route declarations and their zod schemas. */
import { z, type ZodType } from 'zod';
import type { RouteDef } from './route';

type Components = Record<string, unknown>;

/** JSON Schema of a zod schema; named schemas (`.meta({ id })`) go to components and are referenced. */
function jsonSchema(schema: ZodType, io: 'input' | 'output', components: Components): Record<string, unknown> {
  const raw = z.toJSONSchema(schema, { target: 'draft-2020-12', io, unrepresentable: 'any' }) as Record<string, unknown>;
  const rewritten = JSON.parse(JSON.stringify(raw).replaceAll('"#/$defs/', '"#/components/schemas/')) as Record<string, unknown>;
  const defs = (rewritten.$defs ?? {}) as Record<string, unknown>;
  for (const [id, def] of Object.entries(defs)) components[id] = def;
  delete rewritten.$defs;
  delete rewritten.$schema;
  return rewritten;
}

function parameters(schema: ZodType | undefined, where: 'path' | 'query', components: Components) {
  if (!schema) return [];
  const js = jsonSchema(schema, 'input', components) as { properties?: Record<string, Record<string, unknown>>; required?: string[] };
  return Object.entries(js.properties ?? {}).map(([name, s]) => ({
    name,
    in: where,
    required: where === 'path' || (js.required ?? []).includes(name),
    ...(typeof s.description === 'string' ? { description: s.description } : {}),
    schema: s,
  }));
}

export function buildOpenApi(routes: readonly RouteDef[], version: string): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  const schemas: Components = {};
  for (const r of routes) {
    const path = r.url.replace(/:([A-Za-z0-9_]+)/g, '{$1}');
    const op: Record<string, unknown> = {
      summary: r.summary,
      tags: [r.tag],
      operationId: `${r.method.toLowerCase()}${path.replace(/[{}]/g, '').replace(/[^A-Za-z0-9]+(.)?/g, (_, c: string | undefined) => (c ? c.toUpperCase() : ''))}`,
      parameters: [...parameters(r.params, 'path', schemas), ...parameters(r.query, 'query', schemas)],
      responses: Object.fromEntries(
        Object.entries(r.responses).map(([status, res]) => [
          status,
          {
            description: res.description,
            ...(res.schema ? { content: { [res.contentType ?? 'application/json']: { schema: jsonSchema(res.schema, 'output', schemas) } } } : {}),
          },
        ]),
      ),
    };
    if (r.body) op.requestBody = { required: true, content: { 'application/json': { schema: jsonSchema(r.body, 'input', schemas) } } };
    if (r.access !== 'public') op.security = [{ bearer: [] }];
    (paths[path] ??= {})[r.method.toLowerCase()] = op;
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'tollgate',
      version,
      description: 'Quota governance and circuit breakers for multi-tenant job orchestration on BullMQ. Errors are `{error, message, details}` (docs/errors.md).',
    },
    components: { schemas, securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
    paths,
  };
}
