/**
 * Process entry shared by workers/*.ts: parse env and config (a bad value exits 1 with a message
 * naming it), start the roles, and shut down gracefully on SIGTERM / SIGINT: in-flight promotions
 * finish, nothing is left active; past the grace period the process exits 1.
 */
import { loadEnv } from './config/env';
import { checkClusterQueueNames, loadConfigFile } from './config/file';
import { TollgateError } from './errors';
import { createLogger } from './observability/log';
import { startTollgate, type Role } from './runtime';

export async function runProcess(roles: readonly Role[]): Promise<void> {
  let env;
  let config;
  try {
    env = loadEnv();
    config = loadConfigFile(env.configPath);
    if (env.redisClusterNodes) checkClusterQueueNames(config, env.configPath);
  } catch (err) {
    const e = err as TollgateError;
    // Before the logger exists: one structured line on stderr, then exit.
    process.stderr.write(`${JSON.stringify({ level: 'fatal', code: e.code ?? 'TG_ERR_INTERNAL', msg: e.message })}\n`);
    process.exit(1);
  }
  const log = createLogger(env.logLevel, roles.join('+'));
  // Signal handlers first: a SIGTERM that arrives while the roles are still starting is honoured (the
  // process shuts down cleanly once they are up) instead of killing it mid-start.
  let tollgate: Awaited<ReturnType<typeof startTollgate>> | undefined;
  let requested: string | undefined;
  let stopping = false;
  let exitCode = 0;
  const stop = (signal: string) => {
    if (!tollgate) {
      requested ??= signal;
      return;
    }
    if (stopping) return;
    stopping = true;
    const running = tollgate;
    log.info({ signal, graceMs: env.shutdownGraceMs }, 'shutting down: finishing in-flight work');
    const timer = setTimeout(() => {
      log.error({ graceMs: env.shutdownGraceMs }, 'shutdown grace period exceeded; exiting with work unfinished (it will be retried)');
      process.exit(1);
    }, env.shutdownGraceMs);
    timer.unref();
    running.close().then(
      () => {
        log.info('shut down cleanly');
        process.exit(exitCode);
      },
      (err: unknown) => {
        log.error({ err }, 'error during shutdown');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  try {
    tollgate = await startTollgate({ roles, env, config, log });
  } catch (err) {
    log.fatal({ err }, 'tollgate could not start');
    process.exit(1);
  }
  if (requested) stop(requested);
  // A start-up error no retry can fix (the Postgres schema is another deployment's): stop, exit 1.
  void tollgate.fatal.then(() => {
    exitCode = 1;
    stop('fatal start-up error');
  });
}
