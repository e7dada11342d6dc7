/**
 * The library build (`npm run build`): dist/ from src/ by tsc (tsconfig.build.json: CommonJS, .d.ts,
 * source maps), then every file the code reads at run time copied beside the compiled modules, at the
 * same place relative to them as in src/: the Lua scripts (src/redis/scripts.ts reads `__dirname/lua`)
 * and the dashboard's page, script and styles (src/api/routes/dashboard.ts reads
 * `__dirname/../dashboard`). Paths that leave src/ (package.json, drizzle/) keep their depth, since
 * dist/ mirrors src/ one level below the package root. `--out-dir <dir>` builds elsewhere (the
 * packaging test builds into a temporary package).
 */
import { execFileSync } from 'node:child_process';
import { cpSync, readdirSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';

const ROOT = join(__dirname, '..');
const SRC = join(ROOT, 'src');
const flag = process.argv.indexOf('--out-dir');
const OUT = flag >= 0 && process.argv[flag + 1] ? resolve(process.argv[flag + 1]!) : join(ROOT, 'dist');

/** Every file under src/ that tsc does not emit: anything that is not TypeScript. */
function runtimeFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return runtimeFiles(path);
    return e.name.endsWith('.ts') ? [] : [path];
  });
}

rmSync(OUT, { recursive: true, force: true });
const started = Date.now();
execFileSync(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', join(ROOT, 'tsconfig.build.json'), '--outDir', OUT], { stdio: ['ignore', process.stderr, process.stderr] });
const files = runtimeFiles(SRC);
for (const file of files) cpSync(file, join(OUT, file.slice(SRC.length + 1)));
// On stderr: `npm pack --json` runs this (prepack) and its stdout must stay JSON.
console.error(`built ${OUT} in ${((Date.now() - started) / 1000).toFixed(1)} s (${files.length} runtime files copied from src/: ${[...new Set(files.map((f) => dirname(f).slice(SRC.length + 1)))].join(', ')})`);
