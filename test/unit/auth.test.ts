import { authorize } from '../../src/api/auth';
import { parseApiTokens } from '../../src/config/tokens';
import { TollgateError } from '../../src/errors';

const tokens = parseApiTokens('ops:ops-secret-0123456789:admin,dash:dash-secret-0123456789:read,acme:acme-secret-0123456789:tenant:acme');
const bearer = (t: string) => `Bearer ${t}`;

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    return (err as TollgateError).code;
  }
  return 'allowed';
}

describe('authorization', () => {
  it('leaves public routes open', () => {
    expect(authorize(undefined, 'public', tokens)).toEqual({ identity: 'anonymous' });
  });

  it('without configured tokens, allows reads and refuses every mutation', () => {
    expect(authorize(undefined, 'read', [])).toEqual({ identity: 'anonymous' });
    expect(codeOf(() => authorize(undefined, 'admin', []))).toBe('TG_ERR_UNAUTHORIZED');
    expect(codeOf(() => authorize(bearer('anything-at-all-here'), 'admin', []))).toBe('TG_ERR_UNAUTHORIZED');
  });

  it('with tokens, needs a known bearer token', () => {
    expect(codeOf(() => authorize(undefined, 'read', tokens))).toBe('TG_ERR_UNAUTHORIZED');
    expect(codeOf(() => authorize('Basic abc', 'read', tokens))).toBe('TG_ERR_UNAUTHORIZED');
    expect(codeOf(() => authorize(bearer('wrong-secret-0123456'), 'read', tokens))).toBe('TG_ERR_UNAUTHORIZED');
  });

  it('maps scopes to what they allow', () => {
    expect(authorize(bearer('ops-secret-0123456789'), 'admin', tokens)).toEqual({ identity: 'ops', admin: true });
    expect(authorize(bearer('dash-secret-0123456789'), 'read', tokens)).toEqual({ identity: 'dash' });
    expect(codeOf(() => authorize(bearer('dash-secret-0123456789'), 'admin', tokens))).toBe('TG_ERR_FORBIDDEN');
    expect(authorize(bearer('acme-secret-0123456789'), 'read', tokens)).toEqual({ identity: 'acme', tenantId: 'acme' });
    expect(codeOf(() => authorize(bearer('acme-secret-0123456789'), 'admin', tokens))).toBe('TG_ERR_FORBIDDEN');
  });
});
