import { describe, expect, it } from 'vitest';
import { RateLimiter } from '../../src/sim/rate-limit.ts';
import { SlidingWindow } from '../../src/sim/sliding-window.ts';

const T0 = 1_800_000_000_000; // a bucket boundary

describe('SlidingWindow', () => {
  it('keeps amounts for one window, then forgets them', () => {
    const window = new SlidingWindow(60_000, 100);
    window.add(T0, 5);
    window.add(T0 + 30_000, 3);
    expect(window.total(T0 + 59_999)).toBe(8);
    expect(window.total(T0 + 60_000)).toBe(3);
    expect(window.total(T0 + 90_000)).toBe(0);
    window.add(T0 + 200_000, 1);
    expect(window.total(T0 + 200_050)).toBe(1);
  });

  it('says how long until an amount fits', () => {
    const window = new SlidingWindow(60_000, 100);
    window.add(T0, 2);
    window.add(T0 + 10_000, 2);
    expect(window.waitMs(T0 + 20_000, 1, 5)).toBe(0);
    expect(window.waitMs(T0 + 20_000, 2, 5)).toBe(40_000); // the bucket at T0 leaves at T0 + 60 s
    expect(window.waitMs(T0 + 20_000, 4, 5)).toBe(50_000); // needs the T0 + 10 s bucket gone too
    expect(window.waitMs(T0 + 20_000, 6, 5)).toBe(Number.POSITIVE_INFINITY);
  });

  it('clears', () => {
    const window = new SlidingWindow();
    window.add(T0, 10);
    window.clear();
    expect(window.total(T0)).toBe(0);
  });
});

describe('RateLimiter', () => {
  it('admits everything and sends no headers for a model without limits', () => {
    const limiter = new RateLimiter();
    for (let i = 0; i < 1000; i++) expect(limiter.take('free', {}, 100, T0)).toEqual({ ok: true, headers: {} });
  });

  it('refuses the request past rpm with the time until a slot frees', () => {
    const limiter = new RateLimiter();
    for (let i = 0; i < 3; i++) {
      const decision = limiter.take('m', { rpm: 3 }, 10, T0 + i * 1000);
      expect(decision.ok).toBe(true);
      expect(decision.headers['x-ratelimit-remaining-requests']).toBe(String(2 - i));
      expect(decision.headers['x-ratelimit-limit-requests']).toBe('3');
      expect(decision.headers['x-ratelimit-limit-tokens']).toBeUndefined();
    }
    const refused = limiter.take('m', { rpm: 3 }, 10, T0 + 5000);
    expect(refused.ok).toBe(false);
    if (refused.ok) return;
    expect(refused.kind).toBe('requests');
    expect(refused.retryAfterMs).toBe(55_000);
    expect(refused.message).toMatch(/requests per min \(RPM\): Limit 3, Used 3/);
    // Other models have their own windows; refusals use no capacity.
    expect(limiter.take('other', { rpm: 3 }, 10, T0 + 5000).ok).toBe(true);
    expect(limiter.take('m', { rpm: 3 }, 10, T0 + 60_000).ok).toBe(true);
  });

  it('refuses on tokens per minute, and marks a request that can never fit', () => {
    const limiter = new RateLimiter();
    expect(limiter.take('m', { tpm: 1000 }, 600, T0).ok).toBe(true);
    const refused = limiter.take('m', { tpm: 1000 }, 600, T0 + 100);
    expect(refused).toMatchObject({ ok: false, kind: 'tokens', retryAfterMs: 59_900 });
    expect(refused.headers['x-ratelimit-remaining-tokens']).toBe('400');
    expect(limiter.take('m', { tpm: 1000 }, 400, T0 + 200).ok).toBe(true);
    const tooLarge = limiter.take('m', { tpm: 1000 }, 5000, T0 + 300);
    expect(tooLarge).toMatchObject({ ok: false, kind: 'tokens', retryAfterMs: undefined });
    if (!tooLarge.ok) expect(tooLarge.message).toMatch(/Request too large/);
  });

  it('forgets everything on reset', () => {
    const limiter = new RateLimiter();
    expect(limiter.take('m', { rpm: 1 }, 1, T0).ok).toBe(true);
    expect(limiter.take('m', { rpm: 1 }, 1, T0).ok).toBe(false);
    limiter.reset();
    expect(limiter.take('m', { rpm: 1 }, 1, T0).ok).toBe(true);
  });
});
