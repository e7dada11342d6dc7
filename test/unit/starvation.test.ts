import { isStarving } from '../../src/core/starvation';

describe('the starvation rule (the observer warning and the starvation alert share it)', () => {
  it('holds once a queued tenant went the bound without an admission, not a moment before', () => {
    expect(isStarving(1_000, 30_999, 30_000)).toBe(false);
    expect(isStarving(1_000, 31_000, 30_000)).toBe(true);
    expect(isStarving(1_000, 90_000, 30_000)).toBe(true);
  });
  it('does not hold for a tenant served just now (or at a clock slightly behind)', () => {
    expect(isStarving(5_000, 5_000, 30_000)).toBe(false);
    expect(isStarving(5_000, 4_000, 30_000)).toBe(false);
  });
});
