/**
 * The key contract of the Lua scripts, checked against the sources:
 * - each script `<name>-<n>.lua` declares KEYS[1]..KEYS[n] in its header, in order, and no other;
 * - the `Scripts` interface (src/redis/scripts.ts) gives each script a tuple of exactly n labelled keys,
 *   and each label names the key its header declares at that position;
 * - no Lua code spells a key name: keys are built from the layout generated from src/redis/keys.ts
 *   (includes/keys.lua: GK, GF, DK, DF), and every name used from it exists there;
 * - no TypeScript outside src/redis/keys.ts spells a governance key (its hash tag or a family prefix).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DOWNSTREAM_FAMILIES, DOWNSTREAM_KEYS, GOV_FAMILIES, GOV_KEYS, Keys } from '../../src/redis/keys';
import { scriptKeys } from '../../src/redis/script-keys';
import { keysInclude, scriptSources } from '../../src/redis/scripts';

const ROOT = join(__dirname, '../..');
const LUA_DIR = join(ROOT, 'src/redis/lua');
const SCRIPT = /^([A-Za-z]+)-(\d+)\.lua$/;
const scripts = readdirSync(LUA_DIR)
  .map((f) => SCRIPT.exec(f))
  .filter((m): m is RegExpExecArray => m !== null)
  .map((m) => ({ file: m[0], name: m[1]!, n: Number(m[2]), lua: readFileSync(join(LUA_DIR, m[0]), 'utf8') }));
const includes = readdirSync(join(LUA_DIR, 'includes'))
  .filter((f) => f.endsWith('.lua'))
  .map((f) => ({ file: `includes/${f}`, lua: readFileSync(join(LUA_DIR, 'includes', f), 'utf8') }));

/** The leading --[[ … ]] block of a script. */
const headerOf = (lua: string) => /^--\[\[([\s\S]*?)\]\]/.exec(lua)?.[1] ?? '';

/** KEYS declarations of a header: `KEYS[i] <description>` (not prose such as `KEYS[1] = …`), in order. */
function declaredKeys(header: string): Array<{ i: number; text: string }> {
  const out: Array<{ i: number; text: string }> = [];
  for (const m of header.matchAll(/KEYS\[(\d+)\] (?!=)([^\n]*?)(?=\s{2,}KEYS\[|\n|$)/g)) out.push({ i: Number(m[1]), text: m[2]! });
  return out;
}

/** The Scripts interface's key tuples: script name → labels. */
function interfaceKeys(): Map<string, string[]> {
  const ts = readFileSync(join(ROOT, 'src/redis/scripts.ts'), 'utf8');
  const body = /export interface Scripts \{([\s\S]*?)\n\}/.exec(ts)![1]!;
  const out = new Map<string, string[]>();
  for (const m of body.matchAll(/^\s+(\w+)\(keys: \[([^\]]*)\]/gm)) out.set(m[1]!, m[2]!.split(',').map((p) => p.trim().split(':')[0]!.trim()));
  return out;
}

/** Lua with comments removed (string literals kept). */
const code = (lua: string) => lua.replace(/--\[\[[\s\S]*?\]\]/g, '').replace(/--[^\n]*/g, '');

describe('each script', () => {
  const tuples = interfaceKeys();
  it.each(scripts)('$file declares KEYS[1..n] in its header, and the Scripts interface gives it n keys named so', ({ name, n, lua }) => {
    const declared = declaredKeys(headerOf(lua));
    expect(declared.map((d) => d.i)).toEqual(Array.from({ length: n }, (_, k) => k + 1));
    const labels = tuples.get(name);
    expect(labels).toBeDefined();
    expect(labels).toHaveLength(n);
    const words = (s: string) => s.toLowerCase().replace(/[^a-z]/g, '');
    labels!.forEach((label, k) => expect(words(declared[k]!.text)).toContain(words(label).replace(/dedup$/, 'deduplication').replace(/^pc$/, 'pc')));
  });

  it.each(scripts)('$file gets its KEYS from one builder in keys.ts (scriptKeys), n keys, all under the prefix', ({ name, n }) => {
    const build = (scriptKeys as unknown as Record<string, (k: Keys, ...a: string[]) => string[]>)[name];
    expect(build).toBeDefined();
    const keys = build!(new Keys('pfx'), 'ds-or-queue', 'exec');
    expect(keys).toHaveLength(n);
    for (const key of keys) expect(key.startsWith('pfx:') || key.startsWith('ds-or-queue:')).toBe(true);
  });

  it('is called only with the KEYS its builder makes (no call site lists keys itself)', () => {
    const walk = (dir: string): string[] =>
      readdirSync(join(ROOT, dir), { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : []));
    const names = scripts.map((s) => s.name).join('|');
    const calls: string[] = [];
    for (const f of walk('src')) {
      const text = readFileSync(join(ROOT, f), 'utf8');
      for (const m of text.matchAll(new RegExp(`\\.(${names})\\(\\s*\\[`, 'g'))) calls.push(`${f}: ${m[0]}`);
    }
    expect(calls).toEqual([]);
  });

  it('has a key tuple in the Scripts interface, and the interface names no script that does not exist', () => {
    expect([...tuples.keys()].sort()).toEqual(scripts.map((s) => s.name).sort());
  });
});

describe('key names in Lua', () => {
  const layout: Record<string, Record<string, string>> = { GK: GOV_KEYS, GF: GOV_FAMILIES, DK: DOWNSTREAM_KEYS, DF: DOWNSTREAM_FAMILIES };

  it.each([...scripts, ...includes])('$file builds no key from a literal name', ({ lua }) => {
    // A key is built with dsKey(ctx, ds, suffix) or by appending to the governance prefix G (or to a
    // prefix passed in ARGV): the part appended must come from the layout, never a quoted literal.
    const spelled = [...code(lua).matchAll(/(dsKey\([^,()]+,[^,()]+,\s*|\bG\s*\.\.\s*|ARGV\[\d+\]\s*\.\.\s*)'([^']*)'/g)].map((m) => m[0]);
    // BullMQ's own deduplication keys (`<queue prefix>de:<id>`) are BullMQ's layout, not tollgate's.
    expect(spelled.filter((s) => !s.endsWith("'de:'"))).toEqual([]);
  });

  it.each([...scripts, ...includes])('$file uses only names the generated layout has', ({ lua }) => {
    for (const m of code(lua).matchAll(/\b(GK|GF|DK|DF)\.(\w+)/g)) expect(Object.keys(layout[m[1]!]!)).toContain(m[2]);
  });

  it.each([...scriptSources()])('$file, built, defines the layout tables it uses before their first use', ({ lua }) => {
    const body = code(lua);
    for (const table of ['GK', 'GF', 'DK', 'DF']) {
      const used = body.search(new RegExp(`\\b${table}\\.`));
      if (used >= 0) expect(body.indexOf(`local ${table} = {`)).toBeGreaterThanOrEqual(0);
      if (used >= 0) expect(body.indexOf(`local ${table} = {`)).toBeLessThan(used);
    }
  });

  it('gets the layout from src/redis/keys.ts (includes/keys.lua is generated, not a file)', () => {
    expect(includes.map((i) => i.file)).not.toContain('includes/keys.lua');
    const generated = keysInclude();
    for (const [table, entries] of Object.entries(layout)) for (const [k, v] of Object.entries(entries)) expect(generated).toContain(`  ${k} = '${v}',`);
    expect(generated).toMatch(/local GK = \{/);
  });
});

describe('key names in TypeScript', () => {
  const walk = (dir: string): string[] =>
    readdirSync(join(ROOT, dir), { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : []));
  const files = ['src', 'test', 'bench', 'scripts', 'examples', 'workers'].flatMap(walk).filter((f) => f !== join('src', 'redis', 'keys.ts') && f !== join('test', 'unit', 'script-keys.test.ts'));
  const families = [...Object.values(GOV_FAMILIES), ...Object.values(DOWNSTREAM_FAMILIES)];

  it('spell no governance key outside src/redis/keys.ts', () => {
    const found: string[] = [];
    for (const f of files) {
      readFileSync(join(ROOT, f), 'utf8')
        .split('\n')
        .forEach((line, i) => {
          for (const m of line.matchAll(/'([^'\n]*)'|`([^`\n]*)`/g)) {
            const lit = m[1] ?? m[2]!;
            // The hash tag of the governance slot, or a literal starting a key family (`rec:…`, `qs:…`).
            if (/:gov:|\.gov\}/.test(lit) || families.some((p) => lit.startsWith(p) && lit.length > p.length && /^[a-z-]+:\$?\{?\w/.test(lit) && !/\s/.test(lit))) found.push(`${f}:${i + 1}: ${lit}`);
          }
        });
    }
    expect(found).toEqual([]);
  });
});
