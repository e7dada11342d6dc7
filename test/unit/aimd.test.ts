import { nextCapacity, type AimdConfig, type Outcome } from '../../src/core/aimd';

const cfg: AimdConfig = { floor: 2, ceiling: 20, targetLatencyMs: 200, maxFailureRate: 0.2, decreaseFactor: 0.5, increaseStep: 1, minSamples: 5 };
const fast = (n: number, failed = 0): Outcome[] => Array.from({ length: n }, (_, i) => ({ latencyMs: 50, failed: i < failed }));
const slow = (n: number): Outcome[] => Array.from({ length: n }, () => ({ latencyMs: 500, failed: false }));

describe('adaptive capacity (AIMD)', () => {
  it('raises by a step while fast, clean and used, up to the ceiling', () => {
    expect(nextCapacity(10, fast(20), 10, cfg)).toMatchObject({ capacity: 11, reason: 'increase' });
    expect(nextCapacity(20, fast(20), 20, cfg)).toMatchObject({ capacity: 20 });
  });

  it('holds when the capacity is not pressed (nothing to learn from)', () => {
    expect(nextCapacity(10, fast(20), 3, cfg)).toMatchObject({ capacity: 10, reason: 'hold' });
  });

  it('cuts by the factor when p90 latency passes the target, down to the floor', () => {
    expect(nextCapacity(10, slow(20), 10, cfg)).toMatchObject({ capacity: 5, reason: 'latency', p90: 500 });
    expect(nextCapacity(3, slow(20), 3, cfg)).toMatchObject({ capacity: 2 });
    // 10 % slow outliers stay under p90.
    expect(nextCapacity(10, [...fast(18), ...slow(2)], 10, cfg).reason).toBe('increase');
  });

  it('cuts on failures', () => {
    expect(nextCapacity(10, fast(10, 3), 10, cfg)).toMatchObject({ capacity: 5, reason: 'failures', failureRate: 0.3 });
  });

  it('decides nothing on too few outcomes', () => {
    expect(nextCapacity(10, slow(3), 10, cfg)).toMatchObject({ capacity: 10, reason: 'too-few-samples' });
  });

  it('converges: repeated slow intervals reach the floor, fast ones climb back linearly', () => {
    let c = 20;
    for (let i = 0; i < 10; i++) c = nextCapacity(c, slow(10), c, cfg).capacity;
    expect(c).toBe(2);
    for (let i = 0; i < 5; i++) c = nextCapacity(c, fast(10), c, cfg).capacity;
    expect(c).toBe(7);
  });
});
