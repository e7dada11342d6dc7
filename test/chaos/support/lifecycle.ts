/**
 * Small helpers for the fault scenarios about process lifecycle (7, 8, 10, 11): log levels of a child's
 * pino lines and waits for a log line. (The API client and readiness wait are in ops.ts.)
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

/** Waits until the child has logged a line with this message; returns it. */
export async function waitForLog(child: Child, msg: string, timeoutMs = 20_000): Promise<Record<string, unknown>> {
  return waitFor(() => child.logs.find((l) => l.msg === msg), `a log line "${msg}"`, timeoutMs, 50);
}
