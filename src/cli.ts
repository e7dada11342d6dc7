#!/usr/bin/env node
/**
 * The compiled entry point (`dist/cli.js`, the package's `tollgate` bin, the Docker image's command):
 * runs the roles named on the command line in one process, as workers/*.ts do from source.
 * `tollgate` alone runs gate, observer and API; `tollgate gate` one role per process.
 */
import type { Role } from './runtime';

const ROLES: readonly Role[] = ['gate', 'observer', 'api'];
const args = process.argv.slice(2);
const unknown = args.filter((a) => !(ROLES as readonly string[]).includes(a));
if (unknown.length > 0) {
  process.stderr.write(`tollgate: unknown role ${unknown.map((a) => JSON.stringify(a)).join(', ')}: the roles are ${ROLES.join(', ')}\n`);
  process.exit(2);
}
// Loaded after the arguments are checked: a typo is answered without loading the server.
void import('./process').then(({ runProcess }) => runProcess(args.length > 0 ? [...new Set(args as Role[])] : ROLES));
