/**
 * Loads the governance Lua scripts (src/redis/lua/<name>-<numberOfKeys>.lua) into an ioredis client
 * as custom commands. ioredis runs them with EVALSHA and falls back to EVAL after a Redis restart
 * (NOSCRIPT), so a flushed script cache needs no handling here.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Redis } from 'ioredis';
import { DOWNSTREAM_FAMILIES, DOWNSTREAM_KEYS, GOV_FAMILIES, GOV_KEYS } from './keys';

const LUA_DIR = join(__dirname, 'lua');
const FILE = /^([A-Za-z]+)-(\d+)\.lua$/;

type Arg = string | number;

export interface Scripts {
  intake(keys: [inflight: string], args: Arg[]): Promise<string[]>;
  enqueue(keys: [inflight: string], args: Arg[]): Promise<string[]>;
  admitWaiting(keys: [inflight: string], args: Arg[]): Promise<unknown[]>;
  confirm(keys: [promoting: string], args: Arg[]): Promise<number>;
  release(keys: [inflight: string], args: Arg[]): Promise<Array<number | string>>;
  wake(keys: [slot: string], args: Arg[]): Promise<number>;
  explain(keys: [slot: string], args: Arg[]): Promise<string[]>;
  deadLetter(keys: [slot: string], args: Arg[]): Promise<string[]>;
  abandon(keys: [inflight: string], args: Arg[]): Promise<string[]>;
  restoreStats(keys: [stats: string, restored: string], args: Arg[]): Promise<number>;
  detectGap(keys: [stream: string], args: Arg[]): Promise<[number, string, string]>;
  ensureGroup(keys: [stream: string], args: Arg[]): Promise<number>;
  advanceVersion(keys: [version: string], args: Arg[]): Promise<number>;
  restoreUsage(keys: [marker: string], args: Arg[]): Promise<number>;
  adopt(keys: [slot: string], args: Arg[]): Promise<number>;
  breakerCas(keys: [breaker: string, outbox: string, transitions: string], args: Arg[]): Promise<number>;
  releaseHeld(keys: [inflight: string], args: Arg[]): Promise<string[]>;
  claimIngress(keys: [wait: string, prioritized: string, delayed: string, meta: string, marker: string, events: string, pc: string, claims: string], args: Arg[]): Promise<Array<number | string | string[]>>;
  addExec(keys: [wait: string, paused: string, meta: string, id: string, completed: string, delayed: string, active: string, events: string, marker: string, prioritized: string, pc: string], args: Arg[]): Promise<string[]>;
  finishIngress(keys: [claims: string, events: string, meta: string, wait: string, prioritized: string, heldDedup: string], args: Arg[]): Promise<number>;
  detachChild(keys: [dependencies: string], args: Arg[]): Promise<number>;
  releaseDedup(keys: [held: string], args: Arg[]): Promise<number>;
  evaluateAlerts(keys: [open: string, since: string, events: string], args: Arg[]): Promise<string[]>;
}

let sources: Array<{ name: string; numberOfKeys: number; file: string; lua: string }> | undefined;

/** BullMQ's own Lua includes, reused where tollgate reads or writes a BullMQ queue's keys. */
const BULLMQ_INCLUDES = join(dirname(require.resolve('bullmq/package.json')), 'dist', 'cjs', 'commands', 'includes');

/**
 * includes/keys.lua, generated from the key layout in src/redis/keys.ts (the only spelling of key
 * names): GK keys under G, GF families under G, DK a downstream's keys, DF a downstream's families.
 */
export function keysInclude(): string {
  const table = (name: string, doc: string, t: Record<string, string>) =>
    `-- ${doc}\nlocal ${name} = {\n${Object.entries(t)
      .map(([k, v]) => `  ${k} = '${v}',`)
      .join('\n')}\n}\n`;
  return [
    '-- Generated from src/redis/keys.ts by src/redis/scripts.ts (keysInclude): do not spell key names in Lua.',
    table('GK', 'keys under the governance prefix G: G .. GK.name', GOV_KEYS),
    table('GF', 'families under G: G .. GF.family .. id', GOV_FAMILIES),
    table('DK', "a downstream's keys: G .. GF.downstream .. ds .. ':' .. DK.name (dsKey)", DOWNSTREAM_KEYS),
    table('DF', "a downstream's families: dsKey(ctx, ds, DF.family .. id)", DOWNSTREAM_FAMILIES),
  ].join('\n');
}

/**
 * Inlines `--- @include "name"` lines with lua/includes/name.lua, and `--- @include "bullmq:name"` with
 * BullMQ's includes/name.lua (and the includes that one names, in BullMQ's own form), each once per
 * script.
 */
function withIncludes(lua: string, seen = new Set<string>(), bullmq = false): string {
  return lua.replace(/^--- @include "([A-Za-z0-9_:/-]+)"\s*$/gm, (_, ref: string) => {
    const fromBullmq = bullmq || ref.startsWith('bullmq:');
    const name = ref.replace(/^bullmq:/, '').replace(/^includes\//, '');
    const id = `${fromBullmq ? 'bullmq:' : ''}${name}`;
    if (seen.has(id)) return '';
    seen.add(id);
    if (!fromBullmq && name === 'keys') return keysInclude();
    const file = fromBullmq ? join(BULLMQ_INCLUDES, `${name}.lua`) : join(LUA_DIR, 'includes', `${name}.lua`);
    return withIncludes(readFileSync(file, 'utf8'), seen, fromBullmq);
  });
}

/** Every script as it is loaded: its name, number of keys, and source with its includes inlined. */
export function scriptSources(): ReadonlyArray<{ name: string; numberOfKeys: number; file: string; lua: string }> {
  return loadSources();
}

function loadSources() {
  if (!sources) {
    sources = readdirSync(LUA_DIR)
      .map((f) => FILE.exec(f))
      .filter((m): m is RegExpExecArray => m !== null)
      .map((m) => ({ name: m[1]!, numberOfKeys: Number(m[2]), file: m[0], lua: withIncludes(readFileSync(join(LUA_DIR, m[0]), 'utf8')) }));
  }
  return sources;
}

const installed = new WeakSet<Redis>();

export function scriptsFor(client: Redis): Scripts {
  if (!installed.has(client)) {
    for (const s of loadSources()) client.defineCommand(`tg_${s.name}`, { numberOfKeys: s.numberOfKeys, lua: s.lua });
    installed.add(client);
  }
  const c = client as unknown as Record<string, (...a: Arg[]) => Promise<unknown>>;
  const call = (name: string, keys: string[], args: Arg[]) => c[`tg_${name}`]!.call(client, ...keys, ...args);
  const names = ['intake', 'enqueue', 'admitWaiting', 'confirm', 'release', 'wake', 'explain', 'deadLetter', 'abandon', 'restoreStats', 'detectGap', 'ensureGroup', 'advanceVersion', 'restoreUsage', 'adopt', 'breakerCas', 'releaseHeld', 'claimIngress', 'finishIngress', 'addExec', 'detachChild', 'releaseDedup', 'evaluateAlerts'] as const;
  return Object.fromEntries(names.map((n) => [n, (keys: string[], args: Arg[]) => call(n, keys, args)])) as unknown as Scripts;
}
