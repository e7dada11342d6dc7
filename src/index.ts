/**
 * The package's public surface: run tollgate from code (tests, embedding) and the helpers producers
 * and execution workers may use. Producers need none of it: they add to `ingress` with plain BullMQ.
 */
export { startTollgate, type Role, type StartOptions, type Tollgate } from './runtime';
export { loadEnv, type Env } from './config/env';
export { loadConfigFile, parseConfig, type Config, type ConfigInput, type DownstreamConfig } from './config/file';
export { execJobId, ingressIdOf } from './redis/keys';
export { ERRORS, TollgateError, type ErrorCode } from './errors';
export type { DeadLetterData } from './queues/gate';
export type { JobLocation, Place } from './queues/locate';
export { waitForExecution, type WaitForExecutionOptions } from './wait';
export { checkBackpressure, createBackpressureClient, type BackpressureCheck, type BackpressureClient } from './client';
