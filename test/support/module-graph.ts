/**
 * What a module loads: a fresh process requires only it (test/support/module-graph-probe.cjs) and reports
 * its exports and the packages in its require cache. For the producer entry's promise of no server
 * dependencies (test/unit/client-entry.test.ts, test/package/package.test.ts).
 */
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';

/** Packages only the server uses: none may load with the producer entry, `tollgate/client`. */
export const SERVER_PACKAGES = [
  'pg',
  'drizzle-orm',
  'fastify',
  'prom-client',
  'pino',
  '@bull-board/api',
  '@bull-board/fastify',
  'standardwebhooks',
  '@opentelemetry/api',
  'preact',
  'htm',
  'uplot',
];

export interface ModuleGraph {
  /** Export name → typeof. */
  exports: Record<string, string>;
  /** Every package under node_modules the module loaded, sorted. */
  packages: string[];
}

/** Requires `module` from `cwd` in a fresh node; `tsx` to load TypeScript sources. */
export function moduleGraph(module: string, opts: { cwd: string; tsx?: boolean }): ModuleGraph {
  const args = [...(opts.tsx ? ['--import', 'tsx'] : []), join(__dirname, 'module-graph-probe.cjs'), module];
  const out = execFileSync(process.execPath, args, { cwd: opts.cwd, encoding: 'utf8', env: { ...process.env, NODE_OPTIONS: '' } });
  return JSON.parse(out) as ModuleGraph;
}
