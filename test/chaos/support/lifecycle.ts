/**
 * Small helpers for the fault scenarios about process lifecycle (7, 8, 10, 11): log levels of a child's
 * pino lines, an admin API client for a spawned `api`/`all` role, and readiness waits.
 */
import type { Child } from '../../support/processes';
import { waitFor } from '../../support/services';

const LEVELS: Record<string, number> = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60 };

/** Numeric pino level of a log line (pino writes numbers; the pre-logger fatal line writes a label). */
export function levelOf(line: Record<string, unknown>): number {
  const l = line.level;
  if (typeof l === 'number') return l;
  if (typeof l === 'string') return LEVELS[l] ?? Number(l);
  return 0;
}

/** Lines at error level or above (raw, non-JSON lines on stderr count too: a crash prints one). */
export function errorLines(child: Child): Array<Record<string, unknown>> {
  return child.logs.filter((l) => levelOf(l) >= 50 || ('raw' in l && /error|exception|unhandled/i.test(String(l.raw))));
}

export interface ApiClient {
  readonly base: string;
  get(path: string): Promise<{ status: number; body: any }>;
  post(path: string, body?: unknown, reason?: string): Promise<{ status: number; body: any }>;
}

export function apiClient(port: number, token: string): ApiClient {
  const base = `http://127.0.0.1:${port}`;
  const call = async (method: string, path: string, body?: unknown, reason?: string) => {
    const headers: Record<string, string> = { authorization: `Bearer ${token}` };
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (reason) headers['x-operator-reason'] = reason;
    const res = await fetch(`${base}${path}`, { method, headers, ...(body !== undefined ? { body: JSON.stringify(body) } : {}), signal: AbortSignal.timeout(5000) });
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      // not JSON: keep the text
    }
    return { status: res.status, body: parsed as any };
  };
  return {
    base,
    get: (path) => call('GET', path),
    post: (path, body, reason) => call('POST', path, body, reason),
  };
}

/** Waits until GET /readyz answers 200 on the port. */
export async function waitReady(port: number, timeoutMs = 20_000): Promise<void> {
  await waitFor(
    async () => {
      try {
        return (await fetch(`http://127.0.0.1:${port}/readyz`, { signal: AbortSignal.timeout(1000) })).status === 200;
      } catch {
        return false;
      }
    },
    `tollgate on port ${port} to be ready`,
    timeoutMs,
    100,
  );
}

/** Waits until the child has logged a line with this message; returns it. */
export async function waitForLog(child: Child, msg: string, timeoutMs = 20_000): Promise<Record<string, unknown>> {
  return waitFor(() => child.logs.find((l) => l.msg === msg), `a log line "${msg}"`, timeoutMs, 50);
}
