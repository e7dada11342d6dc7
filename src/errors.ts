/**
 * The one registry of errors a user can meet (Fastify's lib/errors.js is the model).
 *
 * Every entry has a code, an HTTP status (for API errors) and, for jobs the gate refuses, the
 * machine-readable dead-letter `reason` stored with the job. docs/errors.md lists every code;
 * test/unit/errors.test.ts keeps the two in sync.
 */

export interface ErrorSpec {
  /** HTTP status when the error reaches an API client. */
  status: number;
  /** Dead-letter reason (kebab-case) when the error refuses an ingress job. */
  reason?: string;
  /** One line for docs/errors.md: when it happens and what to do. */
  doc: string;
}

export const ERRORS = {
  // Configuration and start-up
  TG_ERR_ENV: { status: 500, doc: 'An environment variable has a bad value; the message names it. The process exits 1.' },
  TG_ERR_BULLMQ_VERSION: {
    status: 500,
    doc: "The installed BullMQ is not a version tollgate's intake was verified against (it reads BullMQ's key layout; the README names the versions). The process exits 1.",
  },
  TG_ERR_CONFIG: {
    status: 500,
    doc: 'The config file (TOLLGATE_CONFIG) is missing, not JSON, or invalid; the message names the file and the exact path inside it. The process exits 1.',
  },
  TG_ERR_PG_SCHEMA_OWNED: {
    status: 500,
    doc: 'The Postgres schema (TOLLGATE_PG_SCHEMA, default derived from TOLLGATE_PREFIX) belongs to a deployment with another TOLLGATE_PREFIX; the message names both. Nothing in the schema was touched. Give this deployment a TOLLGATE_PG_SCHEMA of its own (docs/operations.md). The process exits 1.',
  },
  TG_ERR_PG_SEARCH_PATH: {
    status: 500,
    doc: "Postgres connections do not work inside the deployment's schema although tollgate sets their search_path at start-up: something between tollgate and Postgres (a pooler that drops the `options` startup parameter) removes it. The process exits 1 rather than read another schema's tables.",
  },

  // Jobs the gate refuses: each lands in the dead-letter queue with `reason`.
  TG_ERR_JOB_NAME_TOO_LONG: {
    status: 400,
    reason: 'job-name-too-long',
    doc: 'The job name is longer than `limits.maxJobNameLength` of the config (default 256 characters); the dead-letter job keeps its first that many characters, its length and SHA-256 (`job.nameTruncated`).',
  },
  TG_ERR_INVALID_PAYLOAD: {
    status: 400,
    reason: 'invalid-payload',
    doc: 'The job data is not a JSON object (a string, number, array or null).',
  },
  TG_ERR_PAYLOAD_TOO_LARGE: {
    status: 413,
    reason: 'payload-too-large',
    doc: 'The serialized job data is larger than `limits.maxPayloadBytes` of the config; the dead-letter job keeps only an excerpt of it, its size and SHA-256 (`job.dataExcerpt`), and cannot be re-driven.',
  },
  TG_ERR_MISSING_TENANT: {
    status: 400,
    reason: 'missing-tenant',
    doc: 'No tenant id at the configured path (`tenant.idPath`, default `data.tenantId`).',
  },
  TG_ERR_INVALID_TENANT: {
    status: 400,
    reason: 'invalid-tenant',
    doc: 'The tenant id is not a string of 1-128 characters from [A-Za-z0-9._:@-].',
  },
  TG_ERR_INVALID_PRIORITY: {
    status: 400,
    reason: 'invalid-priority',
    doc: 'The priority (BullMQ `priority` option or `data.priority`) is not an integer from 0 to 2097151.',
  },
  TG_ERR_INVALID_COST: {
    status: 400,
    reason: 'invalid-cost',
    doc: 'The job states a cost (`data.cost` by default) that is not a whole number from 1 to 10,000.',
  },
  TG_ERR_INVALID_DEADLINE: {
    status: 400,
    reason: 'invalid-deadline',
    doc: 'The job states a deadline (`data.deadline` by default) that is neither an ISO time nor milliseconds since the epoch, or lies past the year 9999.',
  },
  TG_ERR_NO_ROUTE: {
    status: 400,
    reason: 'no-route',
    doc: 'No routing rule matches the job name and the job has no `data.downstream`.',
  },
  TG_ERR_UNKNOWN_DOWNSTREAM: {
    status: 400,
    reason: 'unknown-downstream',
    doc: '`data.downstream` names a downstream that the config does not declare.',
  },

  TG_ERR_COST_OVER_CAPACITY: {
    status: 400,
    reason: 'cost-over-capacity',
    doc: "The job's cost is above what its downstream could ever admit: the capacity of its allocation policy, the tenant's `maxShare` of it, or its `reserve` plus `borrowLimit`. Checked at intake and again while it waits (a policy change).",
  },
  TG_ERR_COST_OVER_QUOTA: {
    status: 400,
    reason: 'cost-over-quota',
    doc: "The job's cost is above a limit of its quota that a single job must fit: `maxConcurrent`, `burst`, or a period total; it could never start.",
  },
  TG_ERR_DUPLICATE_JOB_ID: {
    status: 409,
    reason: 'duplicate-job-id',
    doc: "The job reuses the custom id of the same tenant's job that is still in flight (waiting or admitted and unfinished); BullMQ adds a job id once, so it is not run twice. Once the first job ended, the id runs again.",
  },
  TG_ERR_EXEC_REFUSED: {
    status: 400,
    reason: 'exec-refused',
    doc: 'BullMQ refused to add the admitted job to its execution queue (its options are invalid there, e.g. a `sizeLimit` below its data), or the add failed 3 times for a reason of its own; the message has the error. Its slot and quota were given back.',
  },

  TG_ERR_QUOTA_EXCEEDED: {
    status: 429,
    reason: 'quota-exceeded',
    doc: "A period total (hour, day or month) of the job's quota is used up and the quota says `onPeriodExceeded: reject`.",
  },

  TG_ERR_EXPIRED: {
    status: 410,
    reason: 'expired',
    doc: 'The job was still waiting when its deadline (its own, or its job type\'s TTL) passed; it is never run late.',
  },
  TG_ERR_SHED: {
    status: 503,
    reason: 'shed',
    doc: "The downstream's waiting place was over its shedding mark and this job was among the lowest priorities (`downstreams[].shedding`).",
  },
  TG_ERR_DRAINED: {
    status: 410,
    reason: 'drained',
    doc: "An operator drained the job from a downstream's held jobs (`POST /api/v1/breakers/:downstream/held/drain`).",
  },
  TG_ERR_BACKLOG_FULL: {
    status: 429,
    reason: 'tenant-backlog-full',
    doc: 'The tenant already had `tenantLimits.maxWaiting` jobs waiting on the downstream, and `onBacklogFull` is `reject`.',
  },

  // The producer helper waitForExecution (src/wait.ts)
  TG_ERR_EXECUTION_FAILED: {
    status: 502,
    doc: "The job's execution job failed for good (its attempts spent); the message is the worker's failure reason.",
  },
  TG_ERR_EXECUTION_VANISHED: {
    status: 410,
    doc: "The job's execution job was removed before it ended, or ended and was removed with its event gone from its queue's event stream: its outcome is unknown.",
  },
  TG_ERR_WAIT_TIMEOUT: { status: 504, doc: '`waitForExecution` gave up after its `timeoutMs`; the job itself goes on (`details.state` says where it was).' },

  // API
  TG_ERR_VALIDATION: { status: 400, doc: 'A request parameter, query or body is invalid (also: a body that is not valid JSON, an id or cursor past its range); `details` names each field.' },
  TG_ERR_BAD_REQUEST: { status: 400, doc: 'The request is not well-formed HTTP, or its URL is not validly percent-encoded; nothing was read from it.' },
  TG_ERR_REQUEST_TIMEOUT: { status: 408, doc: 'The request did not arrive completely in time (Node\'s `requestTimeout`); send it again.' },
  TG_ERR_BODY_TOO_LARGE: { status: 413, doc: 'The request body is over 1 MiB, the largest the API reads.' },
  TG_ERR_URI_TOO_LONG: { status: 414, doc: 'The request URI is too long: a path parameter over 1,024 characters, or a request line over 8 KiB.' },
  TG_ERR_UNSUPPORTED_MEDIA_TYPE: { status: 415, doc: 'The request body is not `application/json` (the only type the API reads).' },
  TG_ERR_HEADERS_TOO_LARGE: { status: 431, doc: "The request's headers are over Node's limit (16 KiB in all)." },
  TG_ERR_UNAUTHORIZED: { status: 401, doc: 'The request has no bearer token, or the token is unknown; the answer carries `WWW-Authenticate: Bearer realm="tollgate"`.' },
  TG_ERR_FORBIDDEN: { status: 403, doc: "The token's scopes do not allow this request." },
  TG_ERR_NOT_FOUND: { status: 404, doc: 'The route or the resource does not exist (or is outside the token\'s tenant).' },
  TG_ERR_CONFLICT: { status: 409, doc: 'The request conflicts with a concurrent change of the same resource; read it again and retry.' },
  TG_ERR_PRECONDITION_FAILED: {
    status: 412,
    doc: "`If-Match` names no current `ETag` of the resource: someone changed it since you read it. Nothing was changed; GET it again (a new ETag), re-apply your change and retry.",
  },
  TG_ERR_NOT_REDRIVABLE: {
    status: 422,
    doc: "The dead-letter job does not hold its original job whole: its data was over `limits.maxPayloadBytes` (only an excerpt, its size and SHA-256 are kept: `job.dataExcerpt`) or its name over `limits.maxJobNameLength` (truncated: `job.nameTruncated`). Re-driving it would replay another job, so nothing was added; the producer must send the job again.",
  },
  TG_ERR_IDEMPOTENCY_KEY_REUSED: {
    status: 422,
    doc: 'The `Idempotency-Key` was used in the last 24 hours for a request with another body (on the same route, by the same token). Nothing was created; send a new key for a new request.',
  },
  TG_ERR_UNAVAILABLE: {
    status: 503,
    doc: 'Redis or Postgres does not answer (refused, cut, timed out, the database gone), or the process is shutting down; the request was not applied. The answer carries `Retry-After` (seconds): retry then.',
  },
  TG_ERR_INTERNAL: { status: 500, doc: 'An unexpected error; the log line with the same request id has the cause.' },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof ERRORS;

/** Dead-letter reasons, by the code that produces them. */
export type RejectionCode = {
  [K in ErrorCode]: (typeof ERRORS)[K] extends { reason: string } ? K : never;
}[ErrorCode];

export class TollgateError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly details: unknown;

  constructor(code: ErrorCode, message: string, details?: unknown) {
    super(message);
    this.name = 'TollgateError';
    this.code = code;
    this.status = ERRORS[code].status;
    this.details = details;
  }
}

export function isRejectionCode(code: string): code is RejectionCode {
  return Object.hasOwn(ERRORS, code) && 'reason' in ERRORS[code as ErrorCode];
}
