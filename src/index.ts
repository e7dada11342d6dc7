/**
 * The package's main entry (`tollgate`, dist/index.js): run tollgate from code (tests, embedding) and
 * everything of the producer entry. Producers and execution workers should import `tollgate/client`
 * (src/client.ts) instead: it has the same helpers without the server's dependencies (pg, drizzle-orm,
 * fastify, prom-client, pino). Producers need neither to add jobs: they add to `ingress` with plain BullMQ.
 */
export { startTollgate, type Role, type StartOptions, type Tollgate } from './runtime';
export { loadEnv, type Env } from './config/env';
export { loadConfigFile, parseConfig, type Config, type ConfigInput, type DownstreamConfig } from './config/file';
export { execJobId, ingressIdOf } from './redis/keys';
export { ERRORS, TollgateError, type ErrorCode } from './errors';
export type { DeadLetterData } from './queues/gate';
export type { JobLocation, Place } from './queues/locate';
export { waitForExecution, type WaitForExecutionOptions } from './wait';
export { checkBackpressure, createBackpressureClient, type BackpressureCheck, type BackpressureClient, type BackpressureLevel } from './client';
