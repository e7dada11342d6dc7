/**
 * What every start-up step of a tollgate process shares (src/runtime.ts runs the steps): the parsed
 * environment and config, logging and metrics, the key layout, the governance clock, the Postgres
 * client and whether its migrations are in. Each step returns what closes what it opened.
 */
import type { Config } from '../config/file';
import type { Env } from '../config/env';
import type { Database } from '../db/client';
import type { Failpoints } from '../failpoints';
import type { Logger } from '../observability/log';
import type { Metrics } from '../observability/metrics';
import type { Keys } from '../redis/keys';

export interface RoleContext {
  env: Env;
  config: Config;
  log: Logger;
  metrics: Metrics;
  failpoints: Failpoints;
  keys: Keys;
  now: () => number;
  downstreamNames: string[];
  retentionMs: number;
  database: Database;
  /** True once the migrations are applied. */
  migrated(): boolean;
  /** Resolves once the migrations are applied (never, if the process closes first). */
  migrating: Promise<void>;
  /** True once the process started closing. */
  closing(): boolean;
}

/** Closes what a step opened; the runtime runs closers phase by phase (see src/runtime.ts). */
export type Closer = () => Promise<unknown> | unknown;

/** The roles of each process that finished starting (their loops run), for `/readyz` (src/roles/api.ts). */
const startedRoles = new WeakMap<RoleContext, Set<'gate' | 'observer'>>();

export function markStarted(ctx: RoleContext, role: 'gate' | 'observer'): void {
  const set = startedRoles.get(ctx) ?? new Set();
  set.add(role);
  startedRoles.set(ctx, set);
}

export function hasStarted(ctx: RoleContext, role: 'gate' | 'observer'): boolean {
  return startedRoles.get(ctx)?.has(role) ?? false;
}
