import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadEnv } from '../../src/config/env';
import { loadConfigFile, parseConfig } from '../../src/config/file';
import { findToken, parseApiTokens, sha256 } from '../../src/config/tokens';
import { configError } from '../support/config-error';

const minimal = { downstreams: [{ name: 'scanner', capacity: 5 }] };


describe('config file', () => {
  it('fills defaults from a minimal file', () => {
    const cfg = parseConfig(minimal);
    expect(cfg.queues).toEqual({ ingress: 'ingress', deadLetter: 'dead-letter' });
    expect(cfg.tenant.idPath).toBe('data.tenantId');
    expect(cfg.downstreams).toEqual([
      {
        name: 'scanner',
        queue: 'exec.scanner',
        capacity: 5,
        policy: { kind: 'proportional', capacity: 5, defaultWeight: 1, defaultTier: 1, tenants: {} },
        breaker: expect.objectContaining({ enabled: true, consecutiveFailures: 5, minimumCalls: 10, failureRateThreshold: 0.5, window: { type: 'time', size: 60_000 } }),
      },
    ]);
    expect(cfg.tenantLimits).toEqual({ onBacklogFull: 'reject' });
    expect(cfg.jobs).toMatchObject({ costs: [], ttls: [], costField: 'data.cost', deadlineField: 'data.deadline' });
    expect(cfg.routing.dataField).toBe('data.downstream');
    expect(cfg.gate.maxStalledCount).toBeGreaterThan(1);
  });

  it('ships an example that is valid', () => {
    const cfg = loadConfigFile(join(__dirname, '..', '..', 'tollgate.config.json'));
    expect(cfg.downstreams.map((d) => d.name)).toEqual(['scanner', 'attestor', 'policy']);
  });

  it.each([
    [{ downstreams: [{ name: 'scanner', capacity: 0 }] }, 'downstreams[0].capacity'],
    [{ downstreams: [{ name: 'scanner', capacity: 5, extra: 1 }] }, 'downstreams[0]'],
    [{ downstreams: [] }, 'downstreams'],
    [{ ...minimal, routing: { rules: [{ jobName: 'scan.*', downstream: 'ghost' }] } }, 'routing.rules[0].downstream'],
    [{ downstreams: [{ name: 'a', capacity: 1 }, { name: 'a', capacity: 2 }] }, 'downstreams[1].name'],
    [{ ...minimal, tenant: { idPath: 'tenantId' } }, 'tenant.idPath'],
    [{ ...minimal, queues: { ingress: 'bad:name' } }, 'queues.ingress'],
    [{ ...minimal, queues: { ingress: 'q', deadLetter: 'q' } }, 'queues.deadLetter'],
    [{ downstreams: [{ name: 'a', capacity: 1, queue: 'ingress' }] }, 'downstreams[0].queue'],
    [{ ...minimal, gate: { concurrency: 'many' } }, 'gate.concurrency'],
    [{ downstreams: [{ name: 'a', capacity: 10, policy: { kind: 'reserved', tenants: { x: { reserve: 6 }, y: { reserve: 6 } } } }] }, 'downstreams[0].policy.tenants'],
    [{ downstreams: [{ name: 'a', capacity: 10, policy: { kind: 'fifo' } }] }, 'downstreams[0].policy.kind'],
    [{ ...minimal, jobs: { costs: [{ jobName: 'x', cost: 0 }] } }, 'jobs.costs[0].cost'],
  ])('names the exact path of a bad value (%#)', (value, path) => {
    const err = configError(value);
    expect(err.code).toBe('TG_ERR_CONFIG');
    expect(err.message).toContain('cfg.json: ');
    expect(err.message).toContain(`${path}: `);
  });

  it('names the file when it is missing or not JSON', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tgcfg-'));
    expect(() => loadConfigFile(join(dir, 'absent.json'))).toThrow(/absent\.json: cannot read the config file \(ENOENT\)/);
    writeFileSync(join(dir, 'bad.json'), '{ "downstreams": [ }');
    expect(() => loadConfigFile(join(dir, 'bad.json'))).toThrow(/bad\.json: not valid JSON/);
  });
});

describe('environment', () => {
  it('uses the documented defaults', () => {
    const env = loadEnv({});
    expect(env).toMatchObject({
      redisUrl: 'redis://127.0.0.1:6379',
      databaseUrl: 'postgres://postgres@127.0.0.1:5432/postgres',
      configPath: './tollgate.config.json',
      prefix: 'tollgate',
      pgSchema: 'tollgate',
      port: 8080,
      host: '127.0.0.1',
      logLevel: 'info',
    });
  });

  it.each([
    [{ REDIS_URL: 'http://x' }, 'REDIS_URL'],
    [{ DATABASE_URL: 'mysql://x' }, 'DATABASE_URL'],
    [{ PORT: '70000' }, 'PORT'],
    [{ PORT: 'eighty' }, 'PORT'],
    [{ LOG_LEVEL: 'loud' }, 'LOG_LEVEL'],
    [{ TOLLGATE_PREFIX: 'a{b}' }, 'TOLLGATE_PREFIX'],
    [{ TOLLGATE_PG_SCHEMA: 'Acme' }, 'TOLLGATE_PG_SCHEMA'],
    [{ TOLLGATE_PG_SCHEMA: '1acme' }, 'TOLLGATE_PG_SCHEMA'],
    [{ TOLLGATE_PG_SCHEMA: 'a-b' }, 'TOLLGATE_PG_SCHEMA'],
    [{ TOLLGATE_PG_SCHEMA: 'x'.repeat(64) }, 'TOLLGATE_PG_SCHEMA'],
    [{ TOLLGATE_PG_SCHEMA: 'public' }, 'TOLLGATE_PG_SCHEMA'],
    [{ TOLLGATE_PG_SCHEMA: 'pg_tollgate' }, 'TOLLGATE_PG_SCHEMA'],
    [{ TOLLGATE_API_TOKENS: 'ops:short:admin' }, 'TOLLGATE_API_TOKENS'],
    [{ HOST: '0.0.0.0' }, 'HOST'],
  ])('stops with a message naming the bad variable (%#)', (vars, name) => {
    expect(() => loadEnv(vars)).toThrow(new RegExp(`invalid environment: ${name}: `));
  });

  it('derives the Postgres schema from the prefix as a valid identifier unless TOLLGATE_PG_SCHEMA names one', () => {
    expect(loadEnv({ TOLLGATE_PREFIX: 'Acme-prod.eu' }).pgSchema).toBe('acme_prod_eu');
    expect(loadEnv({ TOLLGATE_PREFIX: '42' }).pgSchema).toBe('tg_42');
    expect(loadEnv({ TOLLGATE_PREFIX: 'public' }).pgSchema).toBe('tg_public');
    expect(loadEnv({ TOLLGATE_PREFIX: 'pg_x' }).pgSchema).toBe('tg_pg_x');
    expect(loadEnv({ TOLLGATE_PREFIX: 'p'.repeat(64) }).pgSchema).toBe('p'.repeat(63));
    expect(loadEnv({ TOLLGATE_PREFIX: 'acme', TOLLGATE_PG_SCHEMA: 'acme_v2' }).pgSchema).toBe('acme_v2');
  });

  it('binds to all interfaces only when tokens protect the API', () => {
    expect(loadEnv({ TOLLGATE_API_TOKENS: 'ops:0123456789abcdef:admin' }).host).toBe('0.0.0.0');
  });
});

describe('API tokens', () => {
  it('parses names, scopes and tenant scopes, keeping only digests', () => {
    const tokens = parseApiTokens(`ops:0123456789abcdef:admin, dash:fedcba9876543210:read,acme:aaaaaaaaaaaaaaaa:tenant:acme`);
    expect(tokens.map((t) => [t.name, t.scopes])).toEqual([
      ['ops', [{ kind: 'admin' }]],
      ['dash', [{ kind: 'read' }]],
      ['acme', [{ kind: 'tenant', tenantId: 'acme' }]],
    ]);
    expect(JSON.stringify(tokens)).not.toContain('0123456789abcdef');
    expect(findToken(tokens, 'fedcba9876543210')?.name).toBe('dash');
    expect(findToken(tokens, 'nope-nope-nope-nope')).toBeUndefined();
  });

  it('accepts a pre-hashed secret', () => {
    const digest = sha256('a-long-enough-secret').toString('hex');
    const tokens = parseApiTokens(`ops:sha256-${digest}:admin`);
    expect(findToken(tokens, 'a-long-enough-secret')?.name).toBe('ops');
  });

  it.each([
    ['ops', /not <name>:<secret>:<scopes>/],
    ['ops:0123456789abcdef:root', /unknown scope "root"/],
    ['ops:0123456789abcdef:admin,ops:fedcba9876543210:read', /appears twice/],
    ['bad name:0123456789abcdef:read', /token name/],
  ])('refuses %s', (value, message) => {
    expect(() => parseApiTokens(value)).toThrow(message);
  });
});

describe('breaker settings that would silently switch a rule off are refused (issue 13)', () => {
  const withBreaker = (breaker: Record<string, unknown>) => ({ downstreams: [{ name: 'scanner', capacity: 5, breaker }] });

  it.each([
    [{ window: { type: 'count', size: 5 } }, /downstreams\[0\]\.breaker\.window\.size.*count window of 5 calls never holds minimumCalls \(10\)/],
    [{ window: { type: 'count', size: 5_000_000 }, minimumCalls: 10 }, /window\.size.*at most 10000 calls.*got 5000000/],
    [{ slowCallMs: 2000 }, /breaker\.slowCallRateThreshold.*needs both slowCallMs and slowCallRateThreshold/],
    [{ slowCallRateThreshold: 0.5 }, /breaker\.slowCallMs.*needs both/],
    [{ openMs: 60_000, maxOpenMs: 30_000 }, /breaker\.maxOpenMs.*maxOpenMs \(30000\) is below openMs \(60000\)/],
  ])('%j', (breaker, message) => {
    const err = configError(withBreaker(breaker));
    expect(err.code).toBe('TG_ERR_CONFIG');
    expect(`${err.message} ${JSON.stringify(err.details ?? '')}`).toMatch(message);
  });

  it('accepts a count window as large as minimumCalls, and both slow-call settings together', () => {
    const cfg = parseConfig(withBreaker({ window: { type: 'count', size: 10 }, slowCallMs: 2000, slowCallRateThreshold: 0.5 }));
    expect(cfg.downstreams[0]!.breaker).toMatchObject({ window: { type: 'count', size: 10 }, slowCallMs: 2000, halfOpenMaxMs: 60_000 });
  });
});
