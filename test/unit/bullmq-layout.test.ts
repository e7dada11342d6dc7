import { checkBullmqLayout, installedBullmqVersion, VERIFIED_BULLMQ } from '../../src/queues/bullmq-layout';

describe('the BullMQ layout check', () => {
  it('accepts the installed BullMQ, a verified version', () => {
    expect(VERIFIED_BULLMQ).toContain(installedBullmqVersion().split('.').slice(0, 2).join('.'));
    expect(() => checkBullmqLayout()).not.toThrow();
    expect(() => checkBullmqLayout('6.7.12')).not.toThrow();
  });

  it.each(['6.8.0', '7.0.0', '5.66.0', 'not-a-version'])('refuses %s, naming it and the verified versions', (v) => {
    expect(() => checkBullmqLayout(v)).toThrow(expect.objectContaining({ code: 'TG_ERR_BULLMQ_VERSION', message: expect.stringContaining(`BullMQ ${v} is installed`) }));
    expect(() => checkBullmqLayout(v)).toThrow(/verified against BullMQ 6\.7\.x/);
  });
});
