/**
 * tollgate's intake reads and writes BullMQ's own keys (claimIngress-8.lua, finishIngress-6.lua, which
 * also include BullMQ's Lua functions) and decodes job hashes with BullMQ's decoder. That layout is
 * internal to BullMQ, so tollgate refuses to start with a version it was not verified against.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { TollgateError } from '../errors';

/** BullMQ releases (major.minor) whose key layout the intake scripts were verified against. */
export const VERIFIED_BULLMQ = ['6.7'] as const;

export function installedBullmqVersion(): string {
  const pkg = join(require.resolve('bullmq'), '..', '..', '..', 'package.json');
  return (JSON.parse(readFileSync(pkg, 'utf8')) as { version: string }).version;
}

/** Throws TG_ERR_BULLMQ_VERSION, naming the installed and the verified versions, when they differ. */
export function checkBullmqLayout(version = installedBullmqVersion()): void {
  const minor = /^(\d+\.\d+)\./.exec(version)?.[1];
  if (minor === undefined || !(VERIFIED_BULLMQ as readonly string[]).includes(minor)) {
    throw new TollgateError(
      'TG_ERR_BULLMQ_VERSION',
      `BullMQ ${version} is installed; tollgate's intake reads BullMQ's key layout and was verified against BullMQ ${VERIFIED_BULLMQ.map((v) => `${v}.x`).join(', ')} only. Install one of those (npm install bullmq@${VERIFIED_BULLMQ[VERIFIED_BULLMQ.length - 1]}).`,
    );
  }
}
