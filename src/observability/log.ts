/** pino loggers. Components take a child logger bound to their role (and downstream / tenant / job). */
import pino, { type Logger } from 'pino';

export type { Logger };

export function createLogger(level: string, role: string): Logger {
  return pino({ level, base: { service: 'tollgate', role, pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime });
}
