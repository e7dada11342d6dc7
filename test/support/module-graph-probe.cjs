// Run as `node [--import tsx] module-graph-probe.cjs <module>` (cwd: where `<module>` resolves from):
// requires only that module, then prints the names and types of its exports and every package under
// node_modules that it loaded (test/unit/client-entry.test.ts, test/package/package.test.ts).
const { createRequire } = require('node:module');
const { join } = require('node:path');
const target = process.argv[2];
const m = createRequire(join(process.cwd(), 'noop.js'))(target);
const packages = new Set();
for (const file of Object.keys(require.cache)) {
  const hit = /[\\/]node_modules[\\/]((?:@[^\\/]+[\\/])?[^\\/]+)/.exec(file);
  if (hit) packages.add(hit[1].replace('\\', '/'));
}
const exportsOf = Object.fromEntries(Object.entries(m).map(([k, v]) => [k, typeof v]));
process.stdout.write(JSON.stringify({ exports: exportsOf, packages: [...packages].sort() }));
