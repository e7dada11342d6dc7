/**
 * tollgate as a package: `npm run build` (scripts/build.ts) into a staging copy of the package, `npm pack`
 * of it, the tarball unpacked into a project's node_modules (its dependencies linked from this
 * repository's, so nothing is downloaded), and then, from that project: the exports map, the producer
 * entry's module graph, and the compiled CLI (the Docker image's command) running all three roles with
 * its Lua scripts, migrations and dashboard found beside dist/, answering the Dockerfile's HEALTHCHECK.
 * Runs in the serial phase of `npm test`: the build is a full tsc run (CPU for ~15-25 s on 2 cores).
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { Queue } from 'bullmq';
import { execJobId } from '../../src/redis/keys';
import { moduleGraph, SERVER_PACKAGES } from '../support/module-graph';
import { freePort } from '../support/net';
import { writeConfigFile } from '../support/processes';
import { cleanupPrefix, createTestDatabase, REDIS_URL, testConfigInput, testRedis, uniquePrefix, waitFor } from '../support/services';

jest.setTimeout(120_000);

const ROOT = join(__dirname, '..', '..');
const TMP = mkdtempSync(join(tmpdir(), 'tollgate-package-'));
const STAGE = join(TMP, 'stage');
const APP = join(TMP, 'app');
const INSTALLED = join(APP, 'node_modules', 'tollgate');
const offline = { ...process.env, npm_config_offline: 'true', npm_config_audit: 'false', npm_config_fund: 'false', NODE_OPTIONS: '' };

let packed: string[] = [];

/** Every file under `dir`, relative to `base`, with forward slashes. */
const filesUnder = (dir: string, base = dir): string[] =>
  readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? filesUnder(join(dir, e.name), base) : [relative(base, join(dir, e.name)).split('\\').join('/')]));

beforeAll(() => {
  mkdirSync(STAGE);
  for (const f of ['package.json', 'README.md', 'drizzle']) cpSync(join(ROOT, f), join(STAGE, f), { recursive: true });
  const started = Date.now();
  execFileSync(process.execPath, ['--import', 'tsx', join(ROOT, 'scripts', 'build.ts'), '--out-dir', join(STAGE, 'dist')], { cwd: ROOT, stdio: 'pipe', env: offline });
  process.stdout.write(`npm run build: ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
  // --ignore-scripts: prepack would build again; the staging copy is built already.
  const [info] = JSON.parse(execFileSync('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', TMP], { cwd: STAGE, encoding: 'utf8', env: offline })) as Array<{
    filename: string;
    files: Array<{ path: string }>;
  }>;
  packed = info!.files.map((f) => f.path);
  mkdirSync(INSTALLED, { recursive: true });
  execFileSync('tar', ['-xzf', join(TMP, info!.filename), '-C', INSTALLED, '--strip-components=1']);
  writeFileSync(join(APP, 'package.json'), JSON.stringify({ name: 'producer-app', private: true }));
  for (const dep of readdirSync(join(ROOT, 'node_modules'))) {
    if (dep.startsWith('.') || dep === 'tollgate') continue;
    symlinkSync(join(ROOT, 'node_modules', dep), join(APP, 'node_modules', dep));
  }
}, 180_000);

afterAll(() => rmSync(TMP, { recursive: true, force: true }));

describe('the tarball', () => {
  it('holds the compiled entries with their types, the Lua scripts, the dashboard and the migrations', () => {
    expect(packed).toEqual(expect.arrayContaining(['package.json', 'README.md', 'dist/index.js', 'dist/index.d.ts', 'dist/client.js', 'dist/client.d.ts', 'dist/wait.d.ts', 'dist/cli.js']));
    const runtimeFiles = filesUnder(join(ROOT, 'src')).filter((f) => !f.endsWith('.ts'));
    expect(runtimeFiles).toEqual(expect.arrayContaining(['redis/lua/intake-1.lua', 'redis/lua/includes/quota.lua', 'api/dashboard/index.html', 'api/dashboard/dashboard.js']));
    expect(packed).toEqual(expect.arrayContaining(runtimeFiles.map((f) => `dist/${f}`)));
    const migrations = readdirSync(join(ROOT, 'drizzle')).filter((f) => f.endsWith('.sql'));
    expect(packed).toEqual(expect.arrayContaining([...migrations.map((f) => `drizzle/${f}`), 'drizzle/meta/_journal.json']));
  });

  it('depends on no build or test tool at run time (tsx, esbuild, typescript, jest stay dev dependencies)', () => {
    const manifest = JSON.parse(readFileSync(join(INSTALLED, 'package.json'), 'utf8')) as { dependencies?: Record<string, string> };
    const runtime = Object.keys(manifest.dependencies ?? {});
    expect(runtime.filter((d) => ['tsx', 'esbuild', 'typescript', 'jest', 'ts-node', '@swc/core'].includes(d))).toEqual([]);
    expect(packed.filter((f) => f.endsWith('.js')).filter((f) => /require\("(tsx|esbuild)/.test(readFileSync(join(INSTALLED, f), 'utf8')))).toEqual([]);
  });

  it('holds no sources, tests, source maps or drizzle snapshots', () => {
    expect(packed.filter((p) => !p.startsWith('dist/') && !p.startsWith('drizzle/') && p !== 'package.json' && p !== 'README.md')).toEqual([]);
    expect(packed.filter((p) => (p.endsWith('.ts') && !p.endsWith('.d.ts')) || p.endsWith('.map') || (p.startsWith('drizzle/meta/') && p !== 'drizzle/meta/_journal.json'))).toEqual([]);
  });
});

describe('installed into a project', () => {
  const resolveFrom = (spec: string) => execFileSync(process.execPath, ['-p', `require.resolve(${JSON.stringify(spec)})`], { cwd: APP, encoding: 'utf8', env: offline }).trim();

  it('resolves `tollgate` and `tollgate/client` through the exports map, and nothing else inside', () => {
    expect(resolveFrom('tollgate')).toBe(join(INSTALLED, 'dist', 'index.js'));
    expect(resolveFrom('tollgate/client')).toBe(join(INSTALLED, 'dist', 'client.js'));
    expect(() => execFileSync(process.execPath, ['-e', "require('tollgate/dist/db/client')"], { cwd: APP, stdio: 'pipe', env: offline })).toThrow(/ERR_PACKAGE_PATH_NOT_EXPORTED/);
    const pkg = JSON.parse(readFileSync(join(INSTALLED, 'package.json'), 'utf8'));
    expect(existsSync(join(INSTALLED, pkg.types))).toBe(true);
    expect(existsSync(join(INSTALLED, pkg.exports['./client'].types))).toBe(true);
  });

  it('tollgate/client loads bullmq, ioredis and zod and no server dependency', () => {
    const client = moduleGraph('tollgate/client', { cwd: APP });
    expect(client.packages.filter((p) => SERVER_PACKAGES.includes(p))).toEqual([]);
    expect(client.packages).toEqual(expect.arrayContaining(['bullmq', 'ioredis', 'zod']));
    expect(client.exports).toMatchObject({ checkBackpressure: 'function', createBackpressureClient: 'function', waitForExecution: 'function', TollgateError: 'function' });
  });

  it('tollgate (the main entry) loads from dist with the server API', () => {
    const main = moduleGraph('tollgate', { cwd: APP });
    expect(main.packages).toEqual(expect.arrayContaining(['pg', 'drizzle-orm', 'fastify']));
    expect(main.exports).toMatchObject({ startTollgate: 'function', loadEnv: 'function', waitForExecution: 'function', checkBackpressure: 'function' });
  });
});

/** The HEALTHCHECK of the Dockerfile, as the exec-form array it declares. */
function dockerHealthcheck(): string[] {
  const dockerfile = readFileSync(join(ROOT, 'Dockerfile'), 'utf8').replace(/\\\n\s*/g, '');
  const line = dockerfile.split('\n').find((l) => l.startsWith('HEALTHCHECK '));
  return JSON.parse(/CMD (\[.*\])\s*$/.exec(line!)![1]!) as string[];
}

/** Runs the Dockerfile's HEALTHCHECK command with `env`; its exit code. */
function healthcheck(env: Record<string, string>): number {
  const [bin, ...args] = dockerHealthcheck();
  expect(bin).toBe('node');
  try {
    execFileSync(process.execPath, args, { env: { PATH: process.env.PATH, ...env }, stdio: 'pipe', timeout: 10_000 });
    return 0;
  } catch (err) {
    return (err as { status: number }).status;
  }
}

describe('the compiled CLI (dist/cli.js, the Docker command)', () => {
  it('runs gate, observer and API from the installed package, passes the HEALTHCHECK and stops cleanly on SIGTERM', async () => {
    const db = await createTestDatabase('package');
    const prefix = uniquePrefix('package');
    const port = await freePort();
    const redis = testRedis();
    const env = {
      ...offline,
      REDIS_URL,
      DATABASE_URL: db.url,
      TOLLGATE_PREFIX: prefix,
      TOLLGATE_CONFIG: writeConfigFile(testConfigInput()),
      PORT: String(port),
      LOG_LEVEL: 'warn',
    };
    const child: ChildProcess = spawn(process.execPath, [join(INSTALLED, 'dist', 'cli.js'), 'gate', 'observer', 'api'], { cwd: APP, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout!.on('data', (c: Buffer) => (output += c.toString()));
    child.stderr!.on('data', (c: Buffer) => (output += c.toString()));
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
    const base = `http://127.0.0.1:${port}`;
    try {
      // Ready: migrations applied from drizzle/ beside dist/, Redis scripts loaded from dist/redis/lua.
      await waitFor(async () => (await fetch(`${base}/readyz`)).status === 200, `/readyz (output: ${output})`, 30_000, 100);
      expect(healthcheck({ PORT: String(port) })).toBe(0);
      const page = await fetch(`${base}/`);
      expect(page.status).toBe(200);
      expect(await page.text()).toContain('<script type="importmap">');
      expect((await fetch(`${base}/assets/dashboard.js`)).status).toBe(200);
      expect((await fetch(`${base}/assets/preact.mjs`)).status).toBe(200);
      // The gate's Lua works: a job is promoted to its execution queue.
      const ingress = new Queue('ingress', { connection: redis, prefix });
      const exec = new Queue('exec.scanner', { connection: redis, prefix });
      const job = await ingress.add('scan.image', { tenantId: 'acme' });
      await waitFor(async () => (await exec.getJobState(execJobId(job.id!))) === 'waiting' || undefined, 'promotion by the compiled gate');
      await ingress.close();
      await exec.close();
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
      // Nothing listens any more: the same check fails.
      expect(healthcheck({ PORT: String(port) })).toBe(1);
    } finally {
      child.kill('SIGKILL');
      await exited;
      await cleanupPrefix(redis, prefix);
      redis.disconnect();
      await db.drop();
    }
  });

  it('refuses an unknown role with exit code 2, naming it', () => {
    let failure: { status: number; stderr: string } | undefined;
    try {
      execFileSync(process.execPath, [join(INSTALLED, 'dist', 'cli.js'), 'gate', 'gatee'], { cwd: APP, stdio: 'pipe', encoding: 'utf8', env: offline });
    } catch (err) {
      failure = err as { status: number; stderr: string };
    }
    expect(failure?.status).toBe(2);
    expect(failure?.stderr).toContain('unknown role "gatee"');
  });
});

describe('the Dockerfile', () => {
  it('copies only files that exist and that .dockerignore lets into the build context', () => {
    const ignore = readFileSync(join(ROOT, '.dockerignore'), 'utf8').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
    expect(ignore[0]).toBe('*');
    const allowed = ignore.filter((l) => l.startsWith('!')).map((l) => l.slice(1));
    const sources = readFileSync(join(ROOT, 'Dockerfile'), 'utf8')
      .split('\n')
      .filter((l) => l.startsWith('COPY ') && !l.includes('--from='))
      .flatMap((l) => l.split(/\s+/).slice(1, -1));
    expect(sources.length).toBeGreaterThan(5);
    for (const s of sources) {
      expect({ source: s, exists: existsSync(join(ROOT, s)), inContext: allowed.some((a) => s === a || s.startsWith(`${a}/`)) }).toEqual({ source: s, exists: true, inContext: true });
    }
    for (const never of ['node_modules', '.git', '.env', 'dist', 'test', 'bench']) expect(allowed).not.toContain(never);
  });
});
