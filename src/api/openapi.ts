/**
 * Builds the OpenAPI 3.1 document from the route declarations and their zod schemas, with what every
 * route of a kind shares declared once: the bearer scheme, the operator headers of a change, and the
 * 400 / 401 / 403 / 503 answers (with `WWW-Authenticate` and `Retry-After`) wherever they can occur.
 */
import { z, type ZodType } from 'zod';
import { RETRY_AFTER_SECONDS } from './errors';
import { ErrorBody, type RouteDef } from './route';

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

/** Header parameters (request) or headers (response) declared as name → zod schema. */
function headerSchemas(headers: Record<string, ZodType>, components: Components) {
  return Object.entries(headers).map(([name, s]) => {
    const js = jsonSchema(s, 'input', components);
    const { description, ...schema } = js;
    return { name, required: !s.safeParse(undefined).success, ...(typeof description === 'string' ? { description } : {}), schema };
  });
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

const ERROR_CONTENT = { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } };

/** Answers shared by many routes, referenced from each operation where they can occur. */
const RESPONSES = {
  BadRequest: { description: 'Invalid parameters, query, headers or body (TG_ERR_VALIDATION; `details` names each field)', content: ERROR_CONTENT },
  Unauthorized: {
    description: 'No known bearer token (TG_ERR_UNAUTHORIZED); with no TOLLGATE_API_TOKENS configured, any change',
    headers: { 'WWW-Authenticate': { description: 'How to authenticate', schema: { type: 'string', const: 'Bearer realm="tollgate"' } } },
    content: ERROR_CONTENT,
  },
  Forbidden: { description: "The token's scope does not allow it (TG_ERR_FORBIDDEN): a change without the admin scope, or a tenant token on a route across tenants", content: ERROR_CONTENT },
  Unavailable: {
    description: 'Redis or Postgres does not answer, or the process is shutting down (TG_ERR_UNAVAILABLE); nothing was changed',
    headers: { 'Retry-After': { description: `Seconds to wait before retrying (${RETRY_AFTER_SECONDS})`, schema: { type: 'string', pattern: '^[0-9]+$' } } },
    content: ERROR_CONTENT,
  },
};

/** The headers every change takes (src/api/operator.ts): why, and an optional ticket, for the audit log. */
const PARAMETERS = {
  OperatorReason: { name: 'X-Operator-Reason', in: 'header', required: true, description: 'Why this change is made (1-500 characters); recorded in the audit log', schema: { type: 'string', minLength: 1, maxLength: 500 } },
  OperatorTicket: { name: 'X-Operator-Ticket', in: 'header', required: false, description: 'A ticket reference for the audit log (at most 200 characters)', schema: { type: 'string', maxLength: 200 } },
};

const isChange = (r: RouteDef) => r.access === 'admin' && r.method !== 'GET';

/** References to the shared parameters and answers that apply to a route and that it does not declare itself. */
function shared(r: RouteDef): { parameters: unknown[]; responses: Record<string, unknown> } {
  const declared = new Set(Object.keys(r.headers ?? {}).map((h) => h.toLowerCase()));
  const parameters = isChange(r)
    ? (['OperatorReason', 'OperatorTicket'] as const).filter((p) => !declared.has(PARAMETERS[p].name.toLowerCase())).map((p) => ({ $ref: `#/components/parameters/${p}` }))
    : [];
  const takesInput = r.params !== undefined || r.query !== undefined || r.body !== undefined || declared.size > 0 || isChange(r);
  const responses: Record<string, unknown> = {};
  const add = (status: number, name: keyof typeof RESPONSES, when: boolean) => {
    if (when && r.responses[status] === undefined) responses[status] = { $ref: `#/components/responses/${name}` };
  };
  add(400, 'BadRequest', takesInput);
  add(401, 'Unauthorized', r.access !== 'public');
  add(403, 'Forbidden', r.access !== 'public');
  // Any route while the process shuts down; most also when Redis or Postgres does not answer.
  add(503, 'Unavailable', true);
  return { parameters, responses };
}

export function buildOpenApi(routes: readonly RouteDef[], version: string): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  const schemas: Components = {};
  jsonSchema(ErrorBody, 'output', schemas);
  for (const r of routes) {
    const common = shared(r);
    const path = r.url.replace(/:([A-Za-z0-9_]+)/g, '{$1}');
    const op: Record<string, unknown> = {
      summary: r.summary,
      tags: [r.tag],
      operationId: `${r.method.toLowerCase()}${path.replace(/[{}]/g, '').replace(/[^A-Za-z0-9]+(.)?/g, (_, c: string | undefined) => (c ? c.toUpperCase() : ''))}`,
      parameters: [
        ...parameters(r.params, 'path', schemas),
        ...parameters(r.query, 'query', schemas),
        ...headerSchemas(r.headers ?? {}, schemas).map((h) => ({ ...h, in: 'header' })),
        ...common.parameters,
      ],
      responses: Object.fromEntries(
        [
          ...Object.entries(r.responses).map(([status, res]) => [
            status,
            {
              description: res.description,
              ...(res.headers ? { headers: Object.fromEntries(headerSchemas(res.headers, schemas).map(({ name, ...h }) => [name, h])) } : {}),
              ...(res.schema ? { content: { [res.contentType ?? 'application/json']: { schema: jsonSchema(res.schema, 'output', schemas) } } } : {}),
            },
          ]),
          ...Object.entries(common.responses),
        ].sort(([a], [b]) => Number(a) - Number(b)),
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
    components: {
      schemas,
      responses: RESPONSES,
      parameters: PARAMETERS,
      securitySchemes: {
        bearer: {
          type: 'http',
          scheme: 'bearer',
          description: 'A secret of TOLLGATE_API_TOKENS (`name:secret:scope`); scope `read`, `admin` or `tenant:<id>`. Without tokens configured, reads are open (loopback only) and changes are refused',
        },
      },
    },
    paths,
  };
}
