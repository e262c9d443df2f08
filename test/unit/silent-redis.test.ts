import type { Redis } from 'ioredis';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { silentAfterFromEnv, watchForSilence } from '../../src/queue/silent-redis.ts';

/** A connection whose PINGs are answered (or failed) when the test says. */
function fakeConnection() {
  const pending: Array<{ resolve: (reply: string) => void; reject: (error: Error) => void }> = [];
  const connection = {
    status: 'ready',
    ping: () => new Promise<string>((resolve, reject) => pending.push({ resolve, reject })),
  };
  return { connection, redis: connection as unknown as Redis, pending };
}

describe('watchForSilence', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('asks every 5 s while Redis answers, and says nothing', async () => {
    const { redis, pending } = fakeConnection();
    const silent = vi.fn();
    const stop = watchForSilence(redis, { onSilent: silent, onAnswer: () => undefined, now: Date.now });
    for (let i = 0; i < 4; i++) {
      await vi.advanceTimersByTimeAsync(5_000);
      pending.shift()?.resolve('PONG');
    }
    expect(pending).toHaveLength(0);
    expect(silent).not.toHaveBeenCalled();
    stop();
  });

  it('says once that a PING went unanswered for 10 s, and that it was answered', async () => {
    const { redis, pending } = fakeConnection();
    const silent = vi.fn();
    const answer = vi.fn();
    const stop = watchForSilence(redis, { onSilent: silent, onAnswer: answer, now: Date.now });
    await vi.advanceTimersByTimeAsync(5_000);
    expect(pending).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(9_000);
    expect(silent).not.toHaveBeenCalled();
    await vi.advanceTimersByTimeAsync(30_000);
    expect(silent).toHaveBeenCalledTimes(1);
    expect(silent.mock.calls[0]![0]).toBeGreaterThanOrEqual(10_000);
    expect(pending).toHaveLength(1); // no second PING while the first waits
    pending.shift()!.resolve('PONG');
    await vi.advanceTimersByTimeAsync(0);
    expect(answer).toHaveBeenCalledTimes(1);
    stop();
  });

  it('leaves a PING that failed with its connection to that connection\'s own errors', async () => {
    const { redis, pending } = fakeConnection();
    const answer = vi.fn();
    const stop = watchForSilence(redis, { onSilent: () => undefined, onAnswer: answer, now: Date.now });
    await vi.advanceTimersByTimeAsync(16_000);
    pending.shift()!.reject(new Error('Connection is closed.'));
    await vi.advanceTimersByTimeAsync(0);
    expect(answer).not.toHaveBeenCalled();
    stop();
  });

  it('does not ask a connection that is down (reconnecting)', async () => {
    const { connection, redis, pending } = fakeConnection();
    connection.status = 'reconnecting';
    const stop = watchForSilence(redis, { onSilent: () => undefined, onAnswer: () => undefined, now: Date.now });
    await vi.advanceTimersByTimeAsync(30_000);
    expect(pending).toHaveLength(0);
    stop();
  });

  it('asks at least twice within a shorter limit, and says so once the PING has waited that long', async () => {
    const { redis, pending } = fakeConnection();
    const silent = vi.fn();
    const stop = watchForSilence(redis, { silentAfterMs: 2_000, onSilent: silent, onAnswer: () => undefined, now: Date.now });
    await vi.advanceTimersByTimeAsync(1_000);
    expect(pending).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1_000);
    expect(silent).not.toHaveBeenCalled();
    await vi.advanceTimersByTimeAsync(1_000);
    await vi.advanceTimersByTimeAsync(1); // judged after one more turn of the event loop (setImmediate)
    expect(silent).toHaveBeenCalledTimes(1);
    expect(silent.mock.calls[0]![0]).toBeGreaterThanOrEqual(2_000);
    stop();
  });

  it('reads the limit from SWITCHYARD_REDIS_SILENT_S, 10 s unless set', () => {
    expect(silentAfterFromEnv({})).toBe(10_000);
    expect(silentAfterFromEnv({ SWITCHYARD_REDIS_SILENT_S: ' 3 ' })).toBe(3_000);
    expect(silentAfterFromEnv({ SWITCHYARD_REDIS_SILENT_S: '-1' })).toBeNull();
    expect(silentAfterFromEnv({ SWITCHYARD_REDIS_SILENT_S: 'ten' })).toBeNull();
  });
});
