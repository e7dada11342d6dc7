import { parseFailpoints } from '../../src/failpoints';

describe('failpoints', () => {
  it('are inert when unset', async () => {
    const fp = parseFailpoints(undefined);
    expect(fp.armed).toBe(false);
    await fp.hit('gate.after-exec-add');
  });

  it('delay the named step only', async () => {
    const fp = parseFailpoints('gate.after-decision=delay:30');
    const t0 = Date.now();
    await fp.hit('gate.after-exec-add');
    expect(Date.now() - t0).toBeLessThan(25);
    await fp.hit('gate.after-decision');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(25);
  });

  it('refuse unknown names and actions at start', () => {
    expect(() => parseFailpoints('gate.nowhere=kill')).toThrow(/unknown failpoint "gate.nowhere"/);
    expect(() => parseFailpoints('gate.after-decision=explode')).toThrow(/unknown action "explode"/);
  });
});
