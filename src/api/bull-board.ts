/**
 * bull-board, read-only, at `/queues` (config `dashboard.bullBoard`, off by default): per-job detail of
 * ingress, the execution queues and dead-letter, in the UI BullMQ users know. Nothing can be changed
 * through it (its read-only mode); changes go through the API, where they are audited.
 *
 * Access: a read or admin token, sent as a bearer token or, since a browser cannot add headers to a
 * page it navigates to, as the password of HTTP Basic authentication (any user name). Without tokens
 * configured the API is loopback-only and open for reads, and so is this. Tenant tokens are refused:
 * the queues hold every tenant's jobs.
 *
 * Its page asks a font CDN for its typeface: the copy served here drops that line (these machines reach
 * no CDN, and the page needs nothing it cannot load from here).
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { FastifyAdapter } from '@bull-board/fastify';
import type { FastifyInstance } from 'fastify';
import { authorize } from './auth';
import type { ApiContext } from './context';

export const BULL_BOARD_PATH = '/queues';

/** The bull-board page without its CDN font link, in a directory of its own (the views path). */
function localViews(): string {
  const ui = dirname(require.resolve('@bull-board/ui/package.json'));
  const page = readFileSync(join(ui, 'dist', 'index.ejs'), 'utf8')
    .split('\n')
    .filter((line) => !/fonts\.googleapis\.com|fonts\.gstatic\.com/.test(line))
    .join('\n');
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-bull-board-'));
  writeFileSync(join(dir, 'index.ejs'), page);
  return dir;
}

/** The token of a bull-board request: a bearer header, or the password of Basic authentication. */
function bearerOf(header: string | undefined): string | undefined {
  if (!header) return undefined;
  const basic = /^Basic\s+(\S+)\s*$/i.exec(header);
  if (!basic) return header;
  const decoded = Buffer.from(basic[1]!, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  return `Bearer ${colon < 0 ? decoded : decoded.slice(colon + 1)}`;
}

export function mountBullBoard(app: FastifyInstance, ctx: ApiContext): void {
  const server = new FastifyAdapter();
  server.setBasePath(BULL_BOARD_PATH);
  createBullBoard({
    queues: ctx.topology.all().map((q) => new BullMQAdapter(q.queue, { readOnlyMode: true })),
    serverAdapter: server,
    options: { uiConfig: { boardTitle: 'tollgate' } },
  });
  server.setViewsPath(localViews());
  void app.register(async (scope) => {
    scope.addHook('onRequest', async (req, reply) => {
      try {
        const auth = authorize(bearerOf(req.headers.authorization), 'read', ctx.tokens);
        if (auth.tenantId !== undefined) throw new Error('tenant tokens cannot see every tenant\'s jobs');
      } catch (err) {
        await reply
          .code(401)
          .header('www-authenticate', 'Basic realm="tollgate bull-board: a read or admin token as the password", charset="UTF-8"')
          .send({ error: 'TG_ERR_UNAUTHORIZED', message: (err as Error).message });
      }
    });
    await scope.register(server.registerPlugin(), { prefix: BULL_BOARD_PATH });
  });
}
