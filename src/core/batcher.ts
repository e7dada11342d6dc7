/**
 * Collects calls made in the same tick (per key) and runs them as one batch, so N concurrent gate
 * decisions cost one Redis script call instead of N. A batch runs at the end of the current tick, or
 * at once when it reaches `maxBatch`. Each caller gets its own item's result (or the batch's error).
 */
interface Pending<In, Out> {
  item: In;
  resolve: (out: Out) => void;
  reject: (err: unknown) => void;
}

export class MicroBatcher<In, Out> {
  private readonly queues = new Map<string, Array<Pending<In, Out>>>();
  private scheduled = false;

  constructor(
    private readonly run: (key: string, items: In[]) => Promise<Out[]>,
    private readonly maxBatch: number,
  ) {}

  submit(key: string, item: In): Promise<Out> {
    return new Promise<Out>((resolve, reject) => {
      let q = this.queues.get(key);
      if (!q) this.queues.set(key, (q = []));
      q.push({ item, resolve, reject });
      if (q.length >= this.maxBatch) {
        this.queues.delete(key);
        void this.execute(key, q);
      } else if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  private flush(): void {
    this.scheduled = false;
    const all = [...this.queues];
    this.queues.clear();
    for (const [key, q] of all) void this.execute(key, q);
  }

  private async execute(key: string, batch: Array<Pending<In, Out>>): Promise<void> {
    try {
      const out = await this.run(
        key,
        batch.map((p) => p.item),
      );
      if (out.length !== batch.length) throw new Error(`batch for ${key} returned ${out.length} results for ${batch.length} items`);
      batch.forEach((p, i) => p.resolve(out[i]!));
    } catch (err) {
      for (const p of batch) p.reject(err);
    }
  }
}
