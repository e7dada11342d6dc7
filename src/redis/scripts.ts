/**
 * Loads the governance Lua scripts (src/redis/lua/<name>-<numberOfKeys>.lua) into an ioredis client
 * as custom commands. ioredis runs them with EVALSHA and falls back to EVAL after a Redis restart
 * (NOSCRIPT), so a flushed script cache needs no handling here.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Redis } from 'ioredis';

const LUA_DIR = join(__dirname, 'lua');
const FILE = /^([A-Za-z]+)-(\d+)\.lua$/;

type Arg = string | number;

export interface Scripts {
  admit(keys: [inflight: string, stats: string], args: Arg[]): Promise<string[]>;
  release(keys: [inflight: string, stats: string], args: Arg[]): Promise<number[]>;
  restoreStats(keys: [stats: string, restored: string], args: Arg[]): Promise<number>;
  deadLetter(keys: [stats: string], args: Arg[]): Promise<string[]>;
  detectGap(keys: [stream: string], args: Arg[]): Promise<[number, string]>;
  ensureGroup(keys: [stream: string], args: Arg[]): Promise<number>;
}

let sources: Array<{ name: string; numberOfKeys: number; lua: string }> | undefined;

function loadSources() {
  if (!sources) {
    sources = readdirSync(LUA_DIR)
      .map((f) => FILE.exec(f))
      .filter((m): m is RegExpExecArray => m !== null)
      .map((m) => ({ name: m[1]!, numberOfKeys: Number(m[2]), lua: readFileSync(join(LUA_DIR, m[0]), 'utf8') }));
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
  return {
    admit: (keys, args) => call('admit', keys, args) as Promise<string[]>,
    release: (keys, args) => call('release', keys, args) as Promise<number[]>,
    restoreStats: (keys, args) => call('restoreStats', keys, args) as Promise<number>,
    deadLetter: (keys, args) => call('deadLetter', keys, args) as Promise<string[]>,
    detectGap: (keys, args) => call('detectGap', keys, args) as Promise<[number, string]>,
    ensureGroup: (keys, args) => call('ensureGroup', keys, args) as Promise<number>,
  };
}
