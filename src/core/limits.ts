/**
 * The ranges of the numbers operators and producers give tollgate: rates, weights, durations, times.
 * The API and the config file refuse values outside them (src/contracts/), so every time computed from
 * them (a token due, a virtual time, a deadline) is a finite instant a JavaScript Date can hold.
 * src/redis/lua/includes/base.lua clamps definitions stored before these checks existed to
 * the same bounds (test/unit/limits.test.ts keeps the two copies equal).
 */

/** Slowest rate, in jobs (cost units) per second: one unit per 11.6 days. */
export const MIN_RATE = 1e-6;
export const MAX_RATE = 1_000_000;
/** Smallest and largest allocation weight. */
export const MIN_WEIGHT = 1e-3;
export const MAX_WEIGHT = 1_000_000;
/** Longest duration (ms) a setting may name (aging, TTLs): ten years. */
export const MAX_DURATION_MS = 10 * 365 * 86_400_000;
/** Latest time a job may name (its deadline): the end of year 9999 (ms since the epoch). */
export const MAX_TIME_MS = Date.UTC(9999, 11, 31, 23, 59, 59, 999);
/** Largest capacity of a downstream, in cost units. */
export const MAX_CAPACITY = 10_000_000;
