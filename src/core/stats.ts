/** Small statistics shared by the read models and the simulator. */

/** The nearest-rank `q` quantile (0 < q ≤ 1) of `values`, or null for none. */
export function percentile(values: readonly number[], q: number): number | null {
  return percentileOfSorted([...values].sort((a, b) => a - b), q);
}

/** As percentile, for values already sorted ascending (no copy, no sort). */
export function percentileOfSorted(sorted: readonly number[], q: number): number | null {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!;
}
