/**
 * The process environment, parsed once at start (STYLE.md rule 6). Nothing else reads process.env.
 */
import { z } from 'zod';
import { schemaForPrefix, schemaNameProblem } from '../db/pg-schema';
import { TollgateError } from '../errors';
import { parseApiTokens, type ApiToken } from './tokens';

const urlWithScheme = (schemes: string[]) =>
  z
    .string()
    .trim()
    .refine((v) => {
      try {
        return schemes.includes(new URL(v).protocol);
      } catch {
        return false;
      }
    }, `must be a URL starting with ${schemes.map((s) => `${s}//`).join(' or ')}`);

const EnvSchema = z.object({
  REDIS_URL: urlWithScheme(['redis:', 'rediss:']).default('redis://127.0.0.1:6379'),
  /** Redis Cluster seed nodes, `host:port,host:port,…`: when set, every client is a cluster client (REDIS_URL is then ignored). */
  REDIS_CLUSTER_NODES: z
    .string()
    .trim()
    .min(1)
    .superRefine((v, ctx) => {
      for (const entry of v.split(',')) {
        if (!clusterNode(entry.trim())) ctx.addIssue({ code: 'custom', message: `"${entry.trim()}" is not host:port (port 1-65535)` });
      }
    })
    .optional(),
  DATABASE_URL: urlWithScheme(['postgres:', 'postgresql:']).default('postgres://postgres@127.0.0.1:5432/postgres'),
  TOLLGATE_CONFIG: z.string().trim().min(1).default('./tollgate.config.json'),
  TOLLGATE_PREFIX: z
    .string()
    .trim()
    .regex(/^[A-Za-z0-9_.-]{1,64}$/, 'must be 1-64 characters from [A-Za-z0-9_.-] (no braces or colons)')
    .default('tollgate'),
  /** The deployment's Postgres schema; default derived from TOLLGATE_PREFIX (src/db/pg-schema.ts). */
  TOLLGATE_PG_SCHEMA: z
    .string()
    .trim()
    .superRefine((v, ctx) => {
      const problem = schemaNameProblem(v);
      if (problem) ctx.addIssue({ code: 'custom', message: problem });
    })
    .optional(),
  PORT: z.coerce.number().int().min(0).max(65535).default(8080),
  /** Bind address of the API. Default: 0.0.0.0 when tokens are configured, else loopback only. */
  HOST: z.string().trim().min(1).optional(),
  TOLLGATE_API_TOKENS: z.string().optional(),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  /** Named failpoints for the fault suite, e.g. `gate.after-exec-add=kill`. Inert when unset. */
  TOLLGATE_FAILPOINTS: z.string().optional(),
  /** Optional port on which a standalone gate or observer serves /healthz, /readyz and /metrics. */
  METRICS_PORT: z.coerce.number().int().min(0).max(65535).optional(),
  /** Seconds SIGTERM waits for in-flight work before the process gives up and exits 1. */
  TOLLGATE_SHUTDOWN_GRACE_SECONDS: z.coerce.number().positive().default(25),
});

export interface Env {
  redisUrl: string;
  /** Seed nodes of a Redis Cluster (REDIS_CLUSTER_NODES); absent for a single Redis at redisUrl. */
  redisClusterNodes?: Array<{ host: string; port: number }>;
  databaseUrl: string;
  configPath: string;
  prefix: string;
  /** Postgres schema holding this deployment's tables (TOLLGATE_PG_SCHEMA). */
  pgSchema: string;
  port: number;
  host: string;
  apiTokens: ApiToken[];
  logLevel: z.infer<typeof EnvSchema>['LOG_LEVEL'];
  failpoints: string | undefined;
  metricsPort: number | undefined;
  shutdownGraceMs: number;
}

/** Parses the environment; throws TG_ERR_ENV naming every bad variable. */
export function loadEnv(source: NodeJS.ProcessEnv = process.env): Env {
  // An empty variable means "unset" (docker-compose and .env files write `FOO=`).
  const cleaned = Object.fromEntries(Object.entries(source).filter(([, v]) => v !== undefined && v !== ''));
  const parsed = EnvSchema.safeParse(cleaned);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `${String(i.path[0])}: ${i.message}`);
    throw new TollgateError('TG_ERR_ENV', `invalid environment: ${lines.join('; ')}`, { issues: lines });
  }
  const e = parsed.data;
  let apiTokens: ApiToken[];
  try {
    apiTokens = parseApiTokens(e.TOLLGATE_API_TOKENS ?? '');
  } catch (err) {
    throw new TollgateError('TG_ERR_ENV', `invalid environment: TOLLGATE_API_TOKENS: ${(err as Error).message}`);
  }
  const host = e.HOST ?? (apiTokens.length > 0 ? '0.0.0.0' : '127.0.0.1');
  if (apiTokens.length === 0 && !isLoopback(host)) {
    throw new TollgateError(
      'TG_ERR_ENV',
      `invalid environment: HOST: ${host} is not a loopback address; without TOLLGATE_API_TOKENS the API binds to loopback only`,
    );
  }
  return {
    redisUrl: e.REDIS_URL,
    ...(e.REDIS_CLUSTER_NODES !== undefined ? { redisClusterNodes: e.REDIS_CLUSTER_NODES.split(',').map((n) => clusterNode(n.trim())!) } : {}),
    databaseUrl: e.DATABASE_URL,
    configPath: e.TOLLGATE_CONFIG,
    prefix: e.TOLLGATE_PREFIX,
    pgSchema: e.TOLLGATE_PG_SCHEMA ?? schemaForPrefix(e.TOLLGATE_PREFIX),
    port: e.PORT,
    host,
    apiTokens,
    logLevel: e.LOG_LEVEL,
    failpoints: e.TOLLGATE_FAILPOINTS,
    metricsPort: e.METRICS_PORT,
    shutdownGraceMs: Math.round(e.TOLLGATE_SHUTDOWN_GRACE_SECONDS * 1000),
  };
}

/** `host:port` (IPv6 in brackets: `[::1]:7000`) → its parts; undefined when malformed. */
function clusterNode(entry: string): { host: string; port: number } | undefined {
  const m = /^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(entry);
  if (!m) return undefined;
  const port = Number(m[2]);
  if (port < 1 || port > 65535) return undefined;
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port };
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}
