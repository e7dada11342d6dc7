/**
 * Small helpers for the fault scenarios: an operator's HTTP client for a tollgate API child, the
 * readiness wait, Postgres reads straight from the private server, and process liveness checks.
 */
import { Client } from 'pg';
import type { Child } from '../../support/processes';
import { freePort } from '../../support/net';
import { waitFor } from '../../support/services';

export const ADMIN_SECRET = 'chaos-admin-secret-0123456789';
/** TOLLGATE_API_TOKENS for an admin token; HOST stays loopback. */
export const ADMIN_TOKENS = `ops:${ADMIN_SECRET}:admin`;

export interface HttpResult {
  status: number;
  body: any;
  /** Wall time of the request, ms. */
  ms: number;
}

export interface ApiClient {
  readonly port: number;
  readonly base: string;
  /** Env for `c.spawn('api' | 'all', ...)`: port, loopback host, the admin token. */
  readonly env: Record<string, string>;
  get(path: string, timeoutMs?: number): Promise<HttpResult>;
  /** A mutation as an operator (admin token, X-Operator-Reason). */
  send(method: 'POST' | 'PUT' | 'PATCH' | 'DELETE', path: string, body?: unknown, reason?: string): Promise<HttpResult>;
}

export async function apiClient(): Promise<ApiClient> {
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const call = async (method: string, path: string, body?: unknown, reason?: string, timeoutMs = 10_000): Promise<HttpResult> => {
    const headers: Record<string, string> = { authorization: `Bearer ${ADMIN_SECRET}` };
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (method !== 'GET') headers['x-operator-reason'] = reason ?? 'chaos scenario';
    const t0 = performance.now();
    const res = await fetch(`${base}${path}`, {
      method,
      headers,
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      signal: AbortSignal.timeout(timeoutMs),
    });
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      /* not JSON */
    }
    return { status: res.status, body: parsed, ms: performance.now() - t0 };
  };
  return {
    port,
    base,
    env: { PORT: String(port), HOST: '127.0.0.1', TOLLGATE_API_TOKENS: ADMIN_TOKENS },
    get: (path, timeoutMs) => call('GET', path, undefined, undefined, timeoutMs),
    send: (method, path, body, reason) => call(method, path, body, reason),
  };
}

/** Waits until GET /readyz on the port (API or METRICS_PORT) answers 200. */
export async function waitReady(port: number, what = 'tollgate', timeoutMs = 20_000): Promise<void> {
  await waitFor(
    async () => {
      try {
        return (await fetch(`http://127.0.0.1:${port}/readyz`, { signal: AbortSignal.timeout(1000) })).status === 200;
      } catch {
        return false;
      }
    },
    `${what} ready on :${port}`,
    timeoutMs,
    100,
  );
}

/** One query on the private Postgres (a fresh connection each time: it may have been restarted). */
export async function pgQuery<T = Record<string, unknown>>(url: string, sql: string, params: unknown[] = []): Promise<T[]> {
  const c = new Client({ connectionString: url, connectionTimeoutMillis: 2000 });
  c.on('error', () => undefined);
  await c.connect();
  try {
    return (await c.query(sql, params)).rows as T[];
  } finally {
    await c.end().catch(() => undefined);
  }
}

/** True while the child has not exited (no crash, no restart). */
export function alive(child: Child): boolean {
  return child.proc.exitCode === null && child.proc.signalCode === null;
}

/** Log lines of a child at warn level or above whose message matches. */
export function logsMatching(child: Child, pattern: RegExp): Array<Record<string, unknown>> {
  return child.logs.filter((l) => pattern.test(String(l.msg ?? l.raw ?? '')));
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
