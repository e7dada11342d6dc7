/** Maps every error an API request can meet to `{error, message, details}` with the right status. */
import type { FastifyError, FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { TollgateError } from '../errors';

const UNAVAILABLE =
  /Connection is closed|Stream isn't writeable|Command timed out|ECONNREFUSED|ECONNRESET|ETIMEDOUT|EHOSTUNREACH|timeout exceeded when trying to connect|Connection terminated|terminating connection|the database system is|Reached the max retries per request|Client was closed/i;

/** True when the error means Redis or Postgres did not answer, not that the request was wrong. */
export function isUnavailable(err: unknown): boolean {
  const e = err as { message?: string; code?: string; name?: string; cause?: unknown };
  if (e?.name === 'MaxRetriesPerRequestError' || UNAVAILABLE.test(String(e?.message ?? '')) || UNAVAILABLE.test(String(e?.code ?? ''))) return true;
  // drizzle wraps the driver's error ("Failed query: ...") and keeps it as the cause.
  return e?.cause !== undefined && e.cause !== err && isUnavailable(e.cause);
}

export function installErrorHandling(app: FastifyInstance, log: Logger): void {
  app.setErrorHandler((err: FastifyError | TollgateError | Error, req, reply) => {
    if (err instanceof TollgateError) {
      return reply.status(err.status).send({ error: err.code, message: err.message, details: err.details });
    }
    const fe = err as FastifyError;
    if (typeof fe.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500) {
      // Fastify's own request errors: malformed JSON, body too large, bad content type.
      return reply.status(fe.statusCode === 413 ? 413 : 400).send({ error: 'TG_ERR_VALIDATION', message: fe.message, details: { code: fe.code } });
    }
    if (isUnavailable(err)) {
      log.warn({ err: err.message, reqId: req.id, url: req.url }, 'API dependency unavailable');
      return reply.status(503).send({ error: 'TG_ERR_UNAVAILABLE', message: `a backing service did not answer: ${err.message}` });
    }
    log.error({ err, reqId: req.id, url: req.url }, 'API request failed');
    return reply.status(500).send({ error: 'TG_ERR_INTERNAL', message: `internal error (request ${req.id})` });
  });
  app.setNotFoundHandler((req, reply) =>
    reply.status(404).send({ error: 'TG_ERR_NOT_FOUND', message: `no route ${req.method} ${req.url.split('?')[0]}` }),
  );
}
