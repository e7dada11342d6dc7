/**
 * API tokens from TOLLGATE_API_TOKENS. Only SHA-256 digests of the secrets are kept in memory.
 *
 * Format: comma-separated entries `<name>:<secret>:<scope>[+<scope>...]`, where a scope is `read`,
 * `admin` or `tenant:<tenantId>`, and `<secret>` is either the secret itself (16+ characters) or
 * `sha256-<64 hex digits>` of it, so the plain secret need not be stored anywhere.
 */
import { createHash, timingSafeEqual } from 'node:crypto';

export type Scope = { kind: 'read' } | { kind: 'admin' } | { kind: 'tenant'; tenantId: string };

export interface ApiToken {
  name: string;
  digest: Buffer;
  scopes: Scope[];
}

const NAME = /^[A-Za-z0-9_.-]{1,64}$/;
const TENANT = /^[A-Za-z0-9._:@-]{1,128}$/;

export function sha256(secret: string): Buffer {
  return createHash('sha256').update(secret, 'utf8').digest();
}

function parseScope(raw: string, entry: string): Scope {
  if (raw === 'read' || raw === 'admin') return { kind: raw };
  if (raw.startsWith('tenant:') && TENANT.test(raw.slice(7))) return { kind: 'tenant', tenantId: raw.slice(7) };
  throw new Error(`token "${entry}": unknown scope "${raw}" (expected read, admin or tenant:<id>)`);
}

export function parseApiTokens(value: string): ApiToken[] {
  const tokens: ApiToken[] = [];
  for (const rawEntry of value.split(',')) {
    const entry = rawEntry.trim();
    if (entry === '') continue;
    const first = entry.indexOf(':');
    const second = entry.indexOf(':', first + 1);
    if (first < 0 || second < 0) throw new Error(`entry "${entry.slice(0, first > 0 ? first : 16)}" is not <name>:<secret>:<scopes>`);
    const name = entry.slice(0, first);
    const secret = entry.slice(first + 1, second);
    const scopeText = entry.slice(second + 1);
    if (!NAME.test(name)) throw new Error(`token name "${name}" must be 1-64 characters from [A-Za-z0-9_.-]`);
    if (tokens.some((t) => t.name === name)) throw new Error(`token name "${name}" appears twice`);
    let digest: Buffer;
    if (/^sha256-[0-9a-f]{64}$/i.test(secret)) digest = Buffer.from(secret.slice(7), 'hex');
    else if (secret.length >= 16) digest = sha256(secret);
    else throw new Error(`token "${name}": the secret must be at least 16 characters or sha256-<hex>`);
    const scopes = scopeText.split('+').map((s) => parseScope(s.trim(), name));
    tokens.push({ name, digest, scopes });
  }
  return tokens;
}

/** Finds the token whose secret is `presented`, comparing digests in constant time. */
export function findToken(tokens: readonly ApiToken[], presented: string): ApiToken | undefined {
  const digest = sha256(presented);
  let found: ApiToken | undefined;
  for (const t of tokens) if (timingSafeEqual(t.digest, digest)) found = t;
  return found;
}
