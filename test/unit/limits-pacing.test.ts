import { describe, expect, it } from 'vitest';
import { parseResetDuration, requestIntervalUs, tokenCapacity, tokenSpanUs, windowTokens, WINDOW_US } from '../../src/limits/pacing.ts';
import { RateLimiter } from '../../src/sim/rate-limit.ts';

/** Most starts in any half-open window [t, t + WINDOW) of sorted times, in us. */
function peakInWindow(startsUs: readonly number[]): number {
  let peak = 0;
  let first = 0;
  for (let last = 0; last < startsUs.length; last++) {
    while ((startsUs[first] ?? 0) <= (startsUs[last] ?? 0) - WINDOW_US) first++;
    peak = Math.max(peak, last - first + 1);
  }
  return peak;
}

describe('request pacing', () => {
  it('spaces starts 60 s / (rpm x headroom) apart, rounded up to a microsecond', () => {
    expect(requestIntervalUs(600, 1)).toBe(100_000);
    expect(requestIntervalUs(600, 0.98)).toBe(102_041);
    expect(requestIntervalUs(1, 1)).toBe(60_000_000);
    expect(requestIntervalUs(7, 0.9)).toBe(Math.ceil(60_000_000 / 6.3));
  });

  it('never puts more than ceil(rpm x headroom) <= rpm starts in a 60 s window, for any rpm', () => {
    for (const rpm of [1, 2, 3, 7, 59, 60, 61, 100, 588, 600, 999, 10_000]) {
      for (const headroom of [0.5, 0.9, 0.98, 1]) {
        const interval = requestIntervalUs(rpm, headroom);
        const starts = Array.from({ length: Math.ceil(rpm * 2.5) + 2 }, (_, i) => 1_800_000_000_000_000 + i * interval);
        const peak = peakInWindow(starts);
        expect(peak).toBeLessThanOrEqual(Math.ceil(rpm * headroom));
        expect(peak).toBeLessThanOrEqual(rpm);
      }
    }
  });

  it('keeps the simulator (a rolling 60 s window in 100 ms buckets) from ever answering 429', () => {
    for (const rpm of [3, 60, 600]) {
      const limiter = new RateLimiter();
      const interval = requestIntervalUs(rpm, 1) / 1000;
      const t0 = 1_800_000_000_037; // not on a bucket boundary
      for (let i = 0; i < rpm * 3; i++) expect(limiter.take('m', { rpm }, 1, Math.floor(t0 + i * interval)).ok).toBe(true);
    }
  });
});

describe('token pacing', () => {
  it('uses floor(tpm x headroom) per window and charges a request at most all of it', () => {
    expect(tokenCapacity(10_000, 0.98)).toBe(9800);
    expect(tokenCapacity(1, 0.5)).toBe(1);
    expect(windowTokens(1500, 9800)).toBe(1500);
    expect(windowTokens(1500.2, 9800)).toBe(1501);
    expect(windowTokens(20_000, 9800)).toBe(9800);
    expect(tokenSpanUs(4900, 9800)).toBe(30_000_000);
    expect(tokenSpanUs(1, 3)).toBe(20_000_000);
  });

  it('rejects nonsense', () => {
    expect(() => requestIntervalUs(0, 1)).toThrow(RangeError);
    expect(() => tokenCapacity(100, 1.5)).toThrow(/headroom/);
    expect(() => windowTokens(-1, 10)).toThrow(RangeError);
  });
});

describe('parseResetDuration', () => {
  it('reads x-ratelimit-reset-* values', () => {
    expect(parseResetDuration('1s')).toBe(1000);
    expect(parseResetDuration('6m0s')).toBe(360_000);
    expect(parseResetDuration('20ms')).toBe(20);
    expect(parseResetDuration('1h2m3.5s')).toBe(3_723_500);
    expect(parseResetDuration('0.5')).toBe(500);
    expect(parseResetDuration('')).toBeNull();
    expect(parseResetDuration('soon')).toBeNull();
    expect(parseResetDuration('5x')).toBeNull();
  });
});
