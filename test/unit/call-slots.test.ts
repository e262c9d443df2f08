import { describe, expect, it } from 'vitest';
import { CallsStopped, createCallSlots } from '../../src/execution/call-slots.ts';

/** Whether a promise has settled by the time the microtasks queued now have run. */
async function settledNow(promise: Promise<unknown>): Promise<boolean> {
  let settled = false;
  void promise.then(() => (settled = true));
  await new Promise((resolve) => setImmediate(resolve));
  return settled;
}

describe('call slots', () => {
  it('tell whoever waits for calls to start that none will once the process stops (QA: a Ctrl-C as a run queued its first rows took 1.2 s to exit, 1 s of it waiting for calls that could not start)', async () => {
    const slots = createCallSlots(2);
    const firstCalls = slots.started(2);
    await slots.slot(async () => 'one');
    expect(await settledNow(firstCalls)).toBe(false);
    slots.stop();
    expect(await settledNow(firstCalls)).toBe(true);
    expect(await settledNow(slots.started(5))).toBe(true);
    await expect(slots.slot(async () => 'two')).rejects.toBeInstanceOf(CallsStopped);
  });

  it('resolve the wait once the calls asked for have started', async () => {
    const slots = createCallSlots(4);
    const firstCalls = slots.started(2);
    await Promise.all([slots.slot(async () => 1), slots.slot(async () => 2)]);
    expect(await settledNow(firstCalls)).toBe(true);
  });
});
