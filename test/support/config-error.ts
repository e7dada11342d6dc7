/** The error a config is refused with (the test fails if it is accepted). */
import { parseConfig } from '../../src/config/file';
import type { TollgateError } from '../../src/errors';

export function configError(value: unknown): TollgateError {
  try {
    parseConfig(value, 'cfg.json');
  } catch (err) {
    return err as TollgateError;
  }
  throw new Error('expected the config to be refused');
}
