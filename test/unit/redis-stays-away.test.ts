import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { stopWaitForRedisMs, stopWaitText, whenRedisStaysAway } from '../../src/queue/redis-stays-away.ts';
import { redisStayedAwayText } from '../../src/batch/run-messages.ts';
import type { BatchProgress } from '../../src/queue/batch-state.ts';

describe('whenRedisStaysAway', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('gives up once Redis has not answered for the limit, once', async () => {
    const away: number[] = [];
    whenRedisStaysAway({ ping: async () => false, limitMs: 30_000, onAway: (ms) => away.push(ms), now: Date.now });
    await vi.advanceTimersByTimeAsync(29_000);
    expect(away).toEqual([]);
    await vi.advanceTimersByTimeAsync(2_000);
    expect(away).toHaveLength(1);
    expect(away[0]).toBeGreaterThanOrEqual(30_000);
    await vi.advanceTimersByTimeAsync(60_000);
    expect(away).toHaveLength(1);
  });

  it('counts from the last answer: a Redis that comes back and goes again gets the whole limit anew', async () => {
    let answering = false;
    const away: number[] = [];
    whenRedisStaysAway({ ping: async () => answering, limitMs: 30_000, onAway: (ms) => away.push(ms), now: Date.now });
    await vi.advanceTimersByTimeAsync(20_000);
    answering = true;
    await vi.advanceTimersByTimeAsync(5_000);
    answering = false;
    await vi.advanceTimersByTimeAsync(25_000);
    expect(away).toEqual([]);
    await vi.advanceTimersByTimeAsync(6_000);
    expect(away).toHaveLength(1);
  });

  it('counts from `since` when Redis was silent before it was told (a paused server)', async () => {
    const away: number[] = [];
    whenRedisStaysAway({ ping: async () => false, limitMs: 30_000, since: Date.now() - 10_000, onAway: (ms) => away.push(ms), now: Date.now });
    await vi.advanceTimersByTimeAsync(19_000);
    expect(away).toEqual([]);
    await vi.advanceTimersByTimeAsync(2_000);
    expect(away).toHaveLength(1);
    expect(away[0]).toBeGreaterThanOrEqual(30_000);
  });

  it('does nothing once stopped (the stop completed)', async () => {
    const away: number[] = [];
    const stop = whenRedisStaysAway({ ping: async () => false, limitMs: 5_000, onAway: (ms) => away.push(ms), now: Date.now });
    await vi.advanceTimersByTimeAsync(3_000);
    stop();
    await vi.advanceTimersByTimeAsync(60_000);
    expect(away).toEqual([]);
  });

  it('asks again only once the last question is answered (a frozen Redis answers nothing for a while)', async () => {
    let asked = 0;
    whenRedisStaysAway({ ping: (timeoutMs) => ((asked += 1), new Promise((resolve) => setTimeout(() => resolve(false), timeoutMs * 3))), limitMs: 60_000, onAway: () => undefined, now: Date.now });
    await vi.advanceTimersByTimeAsync(10_000);
    expect(asked).toBeLessThanOrEqual(4);
  });

  it("reads a stop's wait from SWITCHYARD_STOP_WAIT_S, 30 s unless set, and names it in the message", () => {
    expect(stopWaitForRedisMs({})).toBe(30_000);
    expect(stopWaitForRedisMs({ SWITCHYARD_STOP_WAIT_S: '' })).toBe(30_000);
    expect(stopWaitForRedisMs({ SWITCHYARD_STOP_WAIT_S: ' 20 ' })).toBe(20_000);
    expect(stopWaitForRedisMs({ SWITCHYARD_STOP_WAIT_S: '0.5' })).toBe(500);
    expect(stopWaitForRedisMs({ SWITCHYARD_STOP_WAIT_S: '0' })).toBeNull();
    expect(stopWaitForRedisMs({ SWITCHYARD_STOP_WAIT_S: 'ten' })).toBeNull();
    expect(stopWaitText('SIGTERM', 30_000)).toBe('SIGTERM; a stop waits 30 s for it: SWITCHYARD_STOP_WAIT_S');
  });
});

describe("a run's message when it gives up on Redis (exit 3)", () => {
  it("says that a worker or server on this Redis runs its queued rows meanwhile, and what that costs (QA: a serve ran a stopped night's rows, unsaid)", () => {
    const text = redisStayedAwayText('redis://127.0.0.1:6421', 'nightly-tdown', 'of the stop (SIGTERM; a stop waits 5 s for it: SWITCHYARD_STOP_WAIT_S)', 6000, { finished: 33, total: 300, failed: 0, costUsd: 0.0012 } as BatchProgress);
    expect(text).toContain("the batch's rows still queued stay in the queue (the next `switchyard run` on this Redis takes them off, this run being gone). Until then, a `switchyard worker` or `switchyard serve` on this Redis (and prefix) runs them if one is running: their answers are kept for the resume, which writes them without paying again, and what they cost counts toward the month's spend (budget.monthly_usd).\n");
    expect(text).toMatch(/\nOnce Redis is back \(check that it is running and reachable\): switchyard run --resume nightly-tdown runs the rest and writes the outputs whole\.$/);
  });
});
