/** The dashboard: one static page that reads the API with the operator's token. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { defineRoute, type RouteDef } from '../route';

const PAGE = readFileSync(join(__dirname, '..', 'dashboard.html'), 'utf8');

export function dashboardRoutes(): RouteDef[] {
  return [
    defineRoute({
      method: 'GET',
      url: '/',
      summary: 'Dashboard (HTML): places and their counts, job lookup',
      tag: 'dashboard',
      access: 'public',
      responses: { 200: { description: 'HTML page', schema: z.string(), contentType: 'text/html' } },
      handler: async ({ reply }) =>
        reply
          .header('content-type', 'text/html; charset=utf-8')
          .header('content-security-policy', "default-src 'self'; script-src 'unsafe-inline' 'self'; style-src 'unsafe-inline'")
          .send(PAGE),
    }),
  ];
}
