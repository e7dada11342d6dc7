/** The notification targets the config names: each webhook (with its filters) and the notifications queue. */
import type { Config } from '../config/file';
import type { Target } from '../db/alerts';

export function notificationTargets(config: Config): Target[] {
  const out: Target[] = config.notifier.webhooks.map((w) => ({
    name: `webhook:${w.name}`,
    ...(w.kinds ? { kinds: w.kinds } : {}),
    ...(w.tenants ? { tenants: w.tenants } : {}),
  }));
  if (config.notifier.queue.enabled) out.push({ name: `queue:${config.notifier.queue.name}` });
  return out;
}
