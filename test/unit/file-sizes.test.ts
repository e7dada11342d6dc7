/**
 * Files stay small enough to read in one sitting: no source file (TypeScript, the dashboard's script,
 * styles and page) over 400 lines; Lua has its own limit of 250 (test/unit/lua-includes.test.ts).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const ROOT = join(__dirname, '../..');
const MAX_LINES = 400;

const walk = (dir: string): string[] =>
  readdirSync(join(ROOT, dir), { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(join(dir, e.name)) : /\.(ts|js|css|html)$/.test(e.name) ? [join(dir, e.name)] : []));

it.each(walk('src'))('%s has at most 400 lines', (file) => {
  const lines = (readFileSync(join(ROOT, file), 'utf8').match(/\n/g) ?? []).length;
  expect(lines).toBeLessThanOrEqual(MAX_LINES);
});
