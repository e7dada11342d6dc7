/**
 * Every error an API request can meet, whoever raises it, as `{error, message, details}` with a
 * TG_ERR_* code and that code's status: a route's TollgateError, Fastify's body parser and router
 * (bad JSON, 413, 415, 414, a malformed URL), Node's HTTP parser (431, 400, 408: written on the
 * socket, before Fastify sees a request), a shutdown in progress, and a dependency that does not
 * answer (503 with Retry-After).
 */
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import { ERRORS, TollgateError, type ErrorCode } from '../errors';
import { WWW_AUTHENTICATE } from './auth';

/** Seconds a client should wait before retrying a 503: about Redis's reconnect backoff and pg's connect timeout. */
export const RETRY_AFTER_SECONDS = 5;

const UNAVAILABLE_MESSAGE =
  /Connection is closed|Stream isn't writeable|Command timed out|ECONNREFUSED|ECONNRESET|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH|timeout exceeded when trying to connect|Connection terminated|terminating connection|the database system is|Reached the max retries per request|Client was closed|Client has encountered a connection error|Cannot use a pool after calling end|Query read timeout|^(LOADING|READONLY|MASTERDOWN|OOM|BUSY|TRYAGAIN|CLUSTERDOWN) /i;
const UNAVAILABLE_ERRNO = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'EPIPE', 'ECONNABORTED']);
/**
 * Postgres SQLSTATEs that mean the store is not usable now, not that the request was wrong:
 * connection exceptions (08), shutdown or not accepting connections (57P01-57P03), a statement
 * timeout (57014), too many connections or no resources (53), refused credentials (28), and a
 * database, schema or table that is gone (3D000, 3F000, 42P01: dropped under a running process).
 */
const UNAVAILABLE_SQLSTATE = /^(08...|57P0[1-3]|57014|53...|28...|3D000|3F000|42P01)$/;
/** numeric_value_out_of_range: a number the request carried is past what its column holds. */
const OUT_OF_RANGE_SQLSTATE = '22003';

type Cause = { message?: string; code?: unknown; name?: string; cause?: unknown; errors?: unknown };

/** The error and everything it wraps (drizzle keeps the driver's error as `cause`; Node's connect an AggregateError). */
function chain(err: unknown, depth = 0): Cause[] {
  const e = err as Cause | undefined;
  if (!e || typeof e !== 'object' || depth > 5) return [];
  const nested = [...(e.cause !== undefined && e.cause !== err ? chain(e.cause, depth + 1) : []), ...(Array.isArray(e.errors) ? e.errors.flatMap((x) => chain(x, depth + 1)) : [])];
  return [e, ...nested];
}

/** True when the error means Redis or Postgres did not answer, not that the request was wrong. */
export function isUnavailable(err: unknown): boolean {
  return chain(err).some((e) => {
    const code = typeof e.code === 'string' ? e.code : '';
    return (
      e.name === 'MaxRetriesPerRequestError' ||
      UNAVAILABLE_ERRNO.has(code) ||
      (/^[0-9A-Z]{5}$/.test(code) && UNAVAILABLE_SQLSTATE.test(code)) ||
      UNAVAILABLE_MESSAGE.test(String(e.message ?? ''))
    );
  });
}

function isOutOfRange(err: unknown): boolean {
  return chain(err).some((e) => e.code === OUT_OF_RANGE_SQLSTATE);
}

/** The headers an error answer carries besides its body: how to authenticate, when to retry. */
function errorHeaders(status: number): Record<string, string> {
  if (status === 401) return { 'www-authenticate': WWW_AUTHENTICATE };
  if (status === 503) return { 'retry-after': String(RETRY_AFTER_SECONDS) };
  return {};
}

function send(reply: FastifyReply, code: ErrorCode, message: string, details?: unknown): FastifyReply {
  const status = ERRORS[code].status;
  return reply
    .status(status)
    .headers(errorHeaders(status))
    .send({ error: code, message, ...(details !== undefined ? { details } : {}) });
}

/** The TG_ERR code of a 4xx Fastify (or a plugin) raised itself, by status; any other 4xx is a bad request. */
const BY_STATUS: Record<number, ErrorCode> = {
  401: 'TG_ERR_UNAUTHORIZED',
  403: 'TG_ERR_FORBIDDEN',
  404: 'TG_ERR_NOT_FOUND',
  408: 'TG_ERR_REQUEST_TIMEOUT',
  413: 'TG_ERR_BODY_TOO_LARGE',
  414: 'TG_ERR_URI_TOO_LONG',
  415: 'TG_ERR_UNSUPPORTED_MEDIA_TYPE',
  431: 'TG_ERR_HEADERS_TOO_LARGE',
  503: 'TG_ERR_UNAVAILABLE',
};
/** Fastify's body errors: the body is what is wrong, so they are validation errors naming it. */
const BODY_ERRORS = new Set(['FST_ERR_CTP_INVALID_JSON_BODY', 'FST_ERR_CTP_EMPTY_JSON_BODY', 'FST_ERR_CTP_INVALID_CONTENT_LENGTH', 'FST_ERR_CTP_INVALID_TYPE']);

function sendFastifyError(reply: FastifyReply, fe: FastifyError): FastifyReply {
  if (BODY_ERRORS.has(fe.code) || fe instanceof SyntaxError) {
    const message = `not a JSON body: ${fe.message}`;
    return send(reply, 'TG_ERR_VALIDATION', `invalid body: ${message}`, [{ field: 'body', message }]);
  }
  const code = BY_STATUS[fe.statusCode ?? 400] ?? 'TG_ERR_BAD_REQUEST';
  return send(reply, code, fe.message, { fastifyCode: fe.code });
}

/**
 * What a driver's (or any non-Tollgate) error means for the request: a dependency that did not answer
 * (503), a number its column cannot hold, which the schemas let through (400: the request's fault),
 * or a bug (500).
 */
export function driverErrorCode(err: unknown): 'TG_ERR_UNAVAILABLE' | 'TG_ERR_VALIDATION' | 'TG_ERR_INTERNAL' {
  if (isUnavailable(err)) return 'TG_ERR_UNAVAILABLE';
  if (isOutOfRange(err)) return 'TG_ERR_VALIDATION';
  return 'TG_ERR_INTERNAL';
}

export function sendError(err: unknown, req: FastifyRequest, reply: FastifyReply, log: Logger): FastifyReply {
  if (err instanceof TollgateError) return send(reply, err.code, err.message, err.details);
  const fe = err as FastifyError;
  if (typeof fe.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500) return sendFastifyError(reply, fe);
  const code = driverErrorCode(err);
  const message = (err as Error)?.message;
  if (code === 'TG_ERR_UNAVAILABLE') {
    log.warn({ err: message, reqId: req.id, url: req.url }, 'API dependency unavailable');
    return send(reply, code, `a backing service did not answer: ${message}; retry in ${RETRY_AFTER_SECONDS} s`);
  }
  if (code === 'TG_ERR_VALIDATION') return send(reply, code, `invalid request: a number in it is out of range (${message})`, [{ field: 'request', message: 'out of range' }]);
  log.error({ err, reqId: req.id, url: req.url }, 'API request failed');
  return send(reply, 'TG_ERR_INTERNAL', `internal error (request ${req.id})`);
}

export function installErrorHandling(app: FastifyInstance, log: Logger): void {
  app.setErrorHandler((err, req, reply) => sendError(err, req, reply, log));
  app.setNotFoundHandler((req, reply) => send(reply, 'TG_ERR_NOT_FOUND', `no route ${req.method} ${req.url.split('?')[0]}`));
  // While closing, requests still arriving on kept-alive connections get a coded 503 (Fastify's own
  // return503OnClosing answers in its format; it is off, see server.ts).
  let closing = false;
  app.addHook('preClose', async () => {
    closing = true;
  });
  app.addHook('onRequest', async (_req, reply) => {
    if (!closing) return;
    reply.header('connection', 'close');
    return send(reply, 'TG_ERR_UNAVAILABLE', `this process is shutting down; retry in ${RETRY_AFTER_SECONDS} s (another replica answers)`);
  });
}

/** Fastify's router errors (a malformed URL, a path parameter over maxParamLength), in the TG_ERR body. */
export function frameworkErrors(log: Logger) {
  return (err: FastifyError, req: FastifyRequest, reply: FastifyReply): void => {
    void sendError(err, req, reply, log);
  };
}

/** A request line that fills this much of a header overflow is a URI too long, not headers too large. */
const LONG_REQUEST_LINE = 8192;

/**
 * Errors of Node's HTTP parser, before any request exists (headers over 16 KiB, a URI too long to
 * parse, bytes that are not HTTP, a request that arrived too slowly), written on the socket.
 */
export function clientErrorHandler(err: Error & { code?: string; rawPacket?: unknown }, socket: Socket): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  let code: ErrorCode = 'TG_ERR_BAD_REQUEST';
  let message = `not a well-formed HTTP request (${err.code ?? err.message})`;
  if (err.code === 'HPE_HEADER_OVERFLOW') {
    // Node hands over the bytes it choked on: a first line that long is the request line.
    const packet = Buffer.isBuffer(err.rawPacket) ? err.rawPacket : undefined;
    const line = packet ? packet.indexOf('\r\n') : -1;
    const lineLength = line === -1 ? (packet?.length ?? 0) : line;
    if (lineLength >= LONG_REQUEST_LINE) {
      code = 'TG_ERR_URI_TOO_LONG';
      message = `the request line is over ${LONG_REQUEST_LINE} bytes`;
    } else {
      code = 'TG_ERR_HEADERS_TOO_LARGE';
      message = 'the request headers are over 16 KiB';
    }
  } else if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') {
    code = 'TG_ERR_REQUEST_TIMEOUT';
    message = 'the request did not arrive completely in time';
  }
  const status = ERRORS[code].status;
  const body = JSON.stringify({ error: code, message });
  if (socket.writable) {
    socket.write(
      `HTTP/1.1 ${status} ${STATUS_TEXT[status]}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
  }
  socket.destroy();
}

const STATUS_TEXT: Record<number, string> = { 400: 'Bad Request', 408: 'Request Timeout', 414: 'URI Too Long', 431: 'Request Header Fields Too Large' };
