/** What API routes need, built once by the server. */
import type { Config } from '../config/file';
import type { ApiToken } from '../config/tokens';
import type { Metrics } from '../observability/metrics';
import type { Governance } from '../redis/governance';
import type { Topology } from '../queues/topology';
import type { Logger } from 'pino';
import type { Redis } from 'ioredis';
import type { Database } from '../db/client';
import type { Definitions } from '../governance/definitions';
import type { BreakerService } from '../governance/breakers';

export type CheckResult = Record<string, { ok: boolean; detail?: string }>;

export interface ApiContext {
  config: Config;
  tokens: readonly ApiToken[];
  topology: Topology;
  governance: Governance;
  /** The API's own Redis client (fails fast). */
  redis: Redis;
  database: Database;
  definitions: Definitions;
  breakers: BreakerService;
  metrics: Metrics;
  log: Logger;
  /** Live checks of Redis and Postgres (and anything else readiness depends on). */
  readiness(): Promise<CheckResult>;
  /** False until the migrations are applied: Postgres-backed routes answer 503 meanwhile. */
  postgresReady(): boolean;
}
