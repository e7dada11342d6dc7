/**
 * Period quota windows: calendar windows in UTC (this hour, this day, this month), not rolling ones.
 * A calendar window resets at a known instant, which a waiting job can be scheduled for, and matches
 * how usage is usually billed. The gate computes the windows for `now` and passes them to Redis.
 */
export const PERIODS = ['hour', 'day', 'month'] as const;
export type Period = (typeof PERIODS)[number];

export interface Window {
  start: number;
  end: number;
}

export function windowOf(period: Period, now: number): Window {
  const d = new Date(now);
  if (period === 'hour') {
    const start = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate(), d.getUTCHours());
    return { start, end: start + 3_600_000 };
  }
  if (period === 'day') {
    const start = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate());
    return { start, end: start + 86_400_000 };
  }
  return { start: Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1), end: Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1) };
}

export type Windows = Record<Period, Window>;

export function windowsAt(now: number): Windows {
  return { hour: windowOf('hour', now), day: windowOf('day', now), month: windowOf('month', now) };
}
