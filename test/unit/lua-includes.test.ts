/**
 * The governance Lua sources and their includes: every file stays small enough to read, and every
 * script, built with its includes as src/redis/scripts.ts builds it, defines each include function it
 * calls (and each include constant it reads) once and before its first use, and loads in Redis.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { scriptSources } from '../../src/redis/scripts';

const LUA_DIR = join(__dirname, '../../src/redis/lua');
const INCLUDES = join(LUA_DIR, 'includes');
const SCRIPT = /^([A-Za-z]+)-(\d+)\.lua$/;
const MAX_LINES = 250;

/** The source with comments and string literals blanked out (same length, so offsets still match). */
function codeOnly(lua: string): string {
  const blank = (s: string) => s.replace(/[^\n]/g, ' ');
  const longOpen = /(--)?\[(=*)\[/y;
  let out = '';
  let i = 0;
  while (i < lua.length) {
    longOpen.lastIndex = i;
    const long = longOpen.exec(lua);
    let end: number;
    if (long) {
      const close = `]${long[2]}]`;
      const at = lua.indexOf(close, i + long[0].length);
      end = at < 0 ? lua.length : at + close.length;
      out += blank(lua.slice(i, end));
    } else if (lua.startsWith('--', i)) {
      const at = lua.indexOf('\n', i);
      end = at < 0 ? lua.length : at;
      out += blank(lua.slice(i, end));
    } else if (lua[i] === "'" || lua[i] === '"') {
      let j = i + 1;
      while (j < lua.length && lua[j] !== lua[i] && lua[j] !== '\n') j += lua[j] === '\\' ? 2 : 1;
      end = Math.min(j + 1, lua.length);
      out += `${lua[i]}${blank(lua.slice(i + 1, end - 1))}${lua[end - 1]}`;
    } else {
      end = i + 1;
      out += lua[i];
    }
    i = end;
  }
  return out;
}

const lineCount = (text: string) => (text.match(/\n/g) ?? []).length;

const scripts = [...scriptSources()].sort((a, b) => a.file.localeCompare(b.file)).map(({ file, lua }) => ({ file, lua }));

const includeFiles = readdirSync(INCLUDES).filter((f) => f.endsWith('.lua')).sort();

/** Top-level `local function NAME` and `local NAME[, NAME] = ...` of tollgate's own includes. */
const includeFunctions = new Set<string>();
const includeValues = new Set<string>();
for (const f of includeFiles) {
  const code = codeOnly(readFileSync(join(INCLUDES, f), 'utf8'));
  for (const m of code.matchAll(/^local function ([A-Za-z_]\w*)/gm)) includeFunctions.add(m[1]!);
  for (const m of code.matchAll(/^local ((?:[A-Za-z_]\w*)(?:\s*,\s*[A-Za-z_]\w*)*)\s*=/gm)) {
    for (const name of m[1]!.split(',')) includeValues.add(name.trim());
  }
}

/** Top-level definitions of a built script: name -> offsets of its definitions. */
function definitions(code: string): Map<string, number[]> {
  const defs = new Map<string, number[]>();
  const add = (name: string, at: number) => defs.set(name, [...(defs.get(name) ?? []), at]);
  for (const m of code.matchAll(/^local function ([A-Za-z_]\w*)/gm)) add(m[1]!, m.index!);
  for (const m of code.matchAll(/^local ((?:[A-Za-z_]\w*)(?:\s*,\s*[A-Za-z_]\w*)*)\s*=/gm)) {
    for (const name of m[1]!.split(',')) add(name.trim(), m.index!);
  }
  return defs;
}

/** Offset of the first use of `name` in `code` (a call, or for a value any read), or -1. */
function firstUse(code: string, name: string, call: boolean): number {
  const pattern = call
    ? new RegExp(`(?<![.:\\w])${name}\\s*\\(`, 'g')
    : new RegExp(`(?<![.:\\w])${name}(?![\\w])(?!\\s*=[^=])`, 'g');
  for (const m of code.matchAll(pattern)) {
    const before = code.slice(Math.max(0, m.index! - 20), m.index!);
    if (/\bfunction\s+$/.test(before) || /\blocal\s+$/.test(before)) continue; // its definition
    return m.index!;
  }
  return -1;
}

describe('the Lua sources', () => {
  it('have the include functions this test checks', () => {
    expect(scripts.length).toBeGreaterThan(10);
    expect(includeFunctions.size).toBeGreaterThan(40);
    for (const name of ['fmt', 'dsKey', 'evaluate', 'recordDead', 'makeEligible']) expect(includeFunctions).toContain(name);
    for (const name of ['rcall', 'CONTEXT_ARGS', 'PERIODS']) expect(includeValues).toContain(name);
  });

  it.each([...readdirSync(LUA_DIR).filter((f) => f.endsWith('.lua')), ...includeFiles.map((f) => `includes/${f}`)].sort())(
    '%s has at most 250 lines',
    (file) => {
      expect(lineCount(readFileSync(join(LUA_DIR, file), 'utf8'))).toBeLessThanOrEqual(MAX_LINES);
    },
  );
});

describe.each(scripts)('$file, built with its includes', ({ lua }) => {
  const code = codeOnly(lua);
  const defs = definitions(code);

  it('defines every include function it calls, before its first call', () => {
    const missing: string[] = [];
    const late: string[] = [];
    for (const name of includeFunctions) {
      const at = firstUse(code, name, true);
      if (at < 0) continue;
      const defined = defs.get(name);
      if (!defined) missing.push(name);
      else if (defined[0]! > at) late.push(`${name} (called at line ${lineCount(code.slice(0, at)) + 1})`);
    }
    expect({ missing, late }).toEqual({ missing: [], late: [] });
  });

  it('defines every include constant it reads, before its first read', () => {
    const missing: string[] = [];
    const late: string[] = [];
    for (const name of includeValues) {
      const at = firstUse(code, name, false);
      if (at < 0) continue;
      const defined = defs.get(name);
      if (!defined) missing.push(name);
      else if (defined[0]! > at) late.push(name);
    }
    expect({ missing, late }).toEqual({ missing: [], late: [] });
  });

  it('defines no function twice', () => {
    const twice = [...code.matchAll(/^local function ([A-Za-z_]\w*)/gm)]
      .map((m) => m[1]!)
      .filter((name, i, all) => all.indexOf(name) !== i);
    expect(twice).toEqual([]);
  });
});

describe('in Redis', () => {
  let redis: Redis;

  beforeAll(() => {
    redis = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', { maxRetriesPerRequest: null });
  });

  afterAll(async () => {
    await redis.quit();
  });

  it.each(scripts)('$file loads (SCRIPT LOAD: its syntax is valid)', async ({ lua }) => {
    const sha = await redis.script('LOAD', lua);
    expect(sha).toMatch(/^[0-9a-f]{40}$/);
  });
});
