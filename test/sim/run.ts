/** `npm run simulate`: replays the scripted workloads and prints each tenant's allocation. */
import { simulate } from '../../src/core/simulate';
import { WORKLOADS } from './workloads';

for (const w of WORKLOADS) {
  const r = simulate(w.policy, w.tenants, w.durationMs);
  process.stdout.write(`\n${w.name}: ${w.what}\n  policy ${w.policy.kind}, capacity ${w.policy.capacity}, ${w.durationMs / 1000} s; Jain's index ${r.jain.toFixed(4)}\n`);
  process.stdout.write('  tenant        admitted    share  entitled   wait p50   wait p99\n');
  for (const [id, t] of Object.entries(r.tenants)) {
    const ms = (v: number | null) => (v === null ? '-' : `${v} ms`);
    process.stdout.write(
      `  ${id.padEnd(12)} ${String(t.admitted).padStart(9)} ${(t.share * 100).toFixed(1).padStart(7)}% ${(t.entitlement * 100).toFixed(1).padStart(7)}% ${ms(t.waitP50Ms).padStart(10)} ${ms(t.waitP99Ms).padStart(10)}\n`,
    );
  }
}
