import { MicroBatcher } from '../../src/core/batcher';

describe('MicroBatcher', () => {
  it('runs the calls of one tick as one batch per key, in order', async () => {
    const calls: Array<[string, number[]]> = [];
    const b = new MicroBatcher<number, number>(async (key, items) => {
      calls.push([key, items]);
      return items.map((i) => i * 10);
    }, 100);
    const results = await Promise.all([b.submit('a', 1), b.submit('b', 2), b.submit('a', 3)]);
    expect(results).toEqual([10, 20, 30]);
    expect(calls).toEqual([
      ['a', [1, 3]],
      ['b', [2]],
    ]);
  });

  it('starts a batch as soon as it reaches maxBatch', async () => {
    const sizes: number[] = [];
    const b = new MicroBatcher<number, number>(async (_k, items) => {
      sizes.push(items.length);
      return items;
    }, 3);
    await Promise.all([1, 2, 3, 4, 5, 6, 7].map((i) => b.submit('k', i)));
    expect(sizes).toEqual([3, 3, 1]);
  });

  it('rejects every caller of a failed batch, and only those', async () => {
    const b = new MicroBatcher<number, number>(async (key, items) => {
      if (key === 'bad') throw new Error('redis down');
      return items;
    }, 10);
    const results = await Promise.allSettled([b.submit('bad', 1), b.submit('good', 2), b.submit('bad', 3)]);
    expect(results.map((r) => r.status)).toEqual(['rejected', 'fulfilled', 'rejected']);
  });

  it('rejects when the batch returns the wrong number of results', async () => {
    const b = new MicroBatcher<number, number>(async () => [1], 10);
    await expect(Promise.all([b.submit('k', 1), b.submit('k', 2)])).rejects.toThrow(/returned 1 results for 2 items/);
  });
});
