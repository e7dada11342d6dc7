/**
 * The dashboard: a page, its script and styles, and the browser builds of the libraries it uses
 * (Preact, htm, uPlot), all served from here: nothing comes from a CDN. No build step: the page loads
 * ES modules through an import map. The page reads the API with the operator's token.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { z } from 'zod';
import { TollgateError } from '../../errors';
import { defineRoute, type RouteDef } from '../route';

const DIR = join(__dirname, '..', 'dashboard');
const PAGE = readFileSync(join(DIR, 'index.html'), 'utf8');
/** A file beside a package's main entry (some packages do not export their package.json). */
const beside = (spec: string, file: string) => join(dirname(require.resolve(spec)), file);

/** Every asset the page may load, by name: no path from the request ever reaches the file system. */
const ASSETS: Record<string, { file: string; type: string }> = {
  'dashboard.js': { file: join(DIR, 'dashboard.js'), type: 'text/javascript' },
  'common.js': { file: join(DIR, 'common.js'), type: 'text/javascript' },
  'panels.js': { file: join(DIR, 'panels.js'), type: 'text/javascript' },
  'places.js': { file: join(DIR, 'places.js'), type: 'text/javascript' },
  'dashboard.css': { file: join(DIR, 'dashboard.css'), type: 'text/css' },
  'preact.mjs': { file: beside('preact', 'preact.mjs'), type: 'text/javascript' },
  'hooks.mjs': { file: beside('preact/hooks', 'hooks.mjs'), type: 'text/javascript' },
  'htm.mjs': { file: beside('htm', 'htm.mjs'), type: 'text/javascript' },
  'uplot.mjs': { file: beside('uplot', 'uPlot.esm.js'), type: 'text/javascript' },
  'uplot.css': { file: beside('uplot', 'uPlot.min.css'), type: 'text/css' },
};
for (const [name, a] of Object.entries(ASSETS)) {
  if (!existsSync(a.file)) throw new Error(`dashboard asset ${name} not found at ${a.file}: run npm ci`);
}
const loaded = new Map<string, Buffer>();
const assetBody = (name: string): Buffer => {
  let b = loaded.get(name);
  if (!b) {
    b = readFileSync(ASSETS[name]!.file);
    loaded.set(name, b);
  }
  return b;
};

/** The page's only inline script is its import map: allowed by its hash, nothing else inline runs. */
const IMPORT_MAP = /<script type="importmap">([\s\S]*?)<\/script>/.exec(PAGE)![1]!;
const CSP = [
  "default-src 'self'",
  `script-src 'self' 'sha256-${createHash('sha256').update(IMPORT_MAP).digest('base64')}'`,
  "style-src 'self' 'unsafe-inline'",
  "img-src 'self' data:",
  "object-src 'none'",
  "base-uri 'none'",
  "frame-ancestors 'none'",
].join('; ');

export function dashboardRoutes(): RouteDef[] {
  return [
    defineRoute({
      method: 'GET',
      url: '/',
      summary: 'Dashboard (HTML): breakers, tenants, places, job lookup',
      tag: 'dashboard',
      access: 'public',
      responses: { 200: { description: 'HTML page', schema: z.string(), contentType: 'text/html' } },
      handler: async ({ reply }) => reply.header('content-type', 'text/html; charset=utf-8').header('content-security-policy', CSP).send(PAGE),
    }),
    defineRoute({
      method: 'GET',
      url: '/assets/:name',
      summary: "The dashboard's script, styles and libraries",
      tag: 'dashboard',
      access: 'public',
      params: z.strictObject({ name: z.string().max(64) }),
      responses: { 200: { description: 'The asset', schema: z.string(), contentType: 'text/javascript' }, 404: { description: 'No such asset', schema: z.unknown() } },
      handler: async ({ params, reply }) => {
        const asset = Object.hasOwn(ASSETS, params.name) ? ASSETS[params.name] : undefined;
        if (!asset) throw new TollgateError('TG_ERR_NOT_FOUND', `no asset ${params.name}`);
        return reply.header('content-type', `${asset.type}; charset=utf-8`).header('cache-control', 'no-cache').send(assetBody(params.name));
      },
    }),
  ];
}
