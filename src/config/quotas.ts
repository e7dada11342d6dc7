/** The default quota of the config file as a quota definition. */
import type { QuotaDef } from '../core/quota';
import type { Config } from './file';

export function defaultQuota(config: Config): QuotaDef {
  return { id: 'default', ...config.quotas.default };
}
