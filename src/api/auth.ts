/**
 * Bearer-token authorization. Scopes: `read` (all reads), `admin` (reads and mutations),
 * `tenant:<id>` (reads of that tenant's own resources only). With no tokens configured the API is
 * bound to loopback (src/config/env.ts) and open for reads; mutations then always need a token.
 */
import { findToken, type ApiToken } from '../config/tokens';
import { TollgateError } from '../errors';

/** What a 401 answers in `WWW-Authenticate` (RFC 6750): a bearer token for this realm. */
export const WWW_AUTHENTICATE = 'Bearer realm="tollgate"';

/** public: no token; read: any reader (tenant tokens get their own view); admin: admin scope. */
export type Access = 'public' | 'read' | 'admin';

export interface AuthContext {
  /** Token name, for audit; 'anonymous' when no tokens are configured. */
  identity: string;
  /** Set for tenant-scoped tokens: the only tenant this caller may see. */
  tenantId?: string;
  /** The token has the admin scope (mutations allowed). */
  admin?: boolean;
}

export function authorize(header: string | undefined, access: Access, tokens: readonly ApiToken[]): AuthContext {
  if (access === 'public') return { identity: 'anonymous' };
  if (tokens.length === 0) {
    if (access === 'read') return { identity: 'anonymous' };
    throw new TollgateError('TG_ERR_UNAUTHORIZED', 'this request changes state and needs a bearer token; configure TOLLGATE_API_TOKENS');
  }
  const m = header ? /^Bearer\s+(\S+)\s*$/i.exec(header) : null;
  if (!m) throw new TollgateError('TG_ERR_UNAUTHORIZED', 'missing bearer token (Authorization: Bearer <token>)');
  const token = findToken(tokens, m[1]!);
  if (!token) throw new TollgateError('TG_ERR_UNAUTHORIZED', 'unknown bearer token');
  const kinds = new Set(token.scopes.map((s) => s.kind));
  if (kinds.has('admin')) return { identity: token.name, admin: true };
  if (access === 'admin') throw new TollgateError('TG_ERR_FORBIDDEN', 'this request needs the admin scope');
  if (kinds.has('read')) return { identity: token.name };
  const tenant = token.scopes.find((s) => s.kind === 'tenant');
  if (tenant && tenant.kind === 'tenant') return { identity: token.name, tenantId: tenant.tenantId };
  throw new TollgateError('TG_ERR_FORBIDDEN', 'this request needs the read scope');
}

/** Routes that list or aggregate across tenants are closed to tenant-scoped tokens. */
export function requireGlobalReader(auth: AuthContext): void {
  if (auth.tenantId !== undefined) throw new TollgateError('TG_ERR_FORBIDDEN', 'this request needs the read scope');
}
