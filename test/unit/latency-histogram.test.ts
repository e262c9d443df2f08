import { describe, expect, it } from 'vitest';
import { mulberry32 } from '../../src/sim/prng.ts';
import { LatencyHistogram } from '../../src/output/latency-histogram.ts';

/** Deterministic, so failures are reproducible. */
const rng = mulberry32;

function nearestRank(sorted: number[], q: number): number {
  return sorted[Math.max(0, Math.ceil(q * sorted.length) - 1)]!;
}

function checkAccuracy(values: number[], tolerance: number): void {
  const histogram = new LatencyHistogram();
  for (const v of values) histogram.record(v);
  const sorted = [...values].sort((a, b) => a - b);
  for (const q of [0.5, 0.9, 0.95, 0.99]) {
    const truth = nearestRank(sorted, q);
    const estimate = histogram.quantile(q)!;
    expect(Math.abs(estimate - truth) / truth, `q=${q} truth=${truth} estimate=${estimate}`).toBeLessThanOrEqual(tolerance);
  }
}

describe('LatencyHistogram', () => {
  it('is within 1% on a log-normal latency distribution', () => {
    const random = rng(1);
    const values = Array.from({ length: 50_000 }, () => {
      const normal = Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random());
      return Math.exp(6.5 + 0.6 * normal); // median ~665 ms, long tail
    });
    checkAccuracy(values, 0.01);
  });

  it('is within 1% on uniform and bimodal distributions', () => {
    const random = rng(2);
    checkAccuracy(Array.from({ length: 20_000 }, () => 5 + random() * 3000), 0.01);
    checkAccuracy(
      Array.from({ length: 20_000 }, () => (random() < 0.8 ? 50 + random() * 20 : 20_000 + random() * 40_000)),
      0.01,
    );
  });

  it('keeps a fixed size whatever the number of values', () => {
    const histogram = new LatencyHistogram();
    for (let i = 0; i < 200_000; i += 1) histogram.record((i % 997) + 0.5);
    expect(histogram.count).toBe(200_000);
    expect(histogram.quantile(0.5)).toBeGreaterThan(0);
  });

  it('handles empty, single, zero and out-of-range values', () => {
    const histogram = new LatencyHistogram({ maxMs: 10_000 });
    expect(histogram.quantile(0.5)).toBeNull();
    histogram.record(42);
    expect(histogram.quantile(0.5)).toBe(42);
    expect(histogram.quantile(0.95)).toBe(42);
    histogram.record(0);
    histogram.record(1e9); // above maxMs: clamped bucket, still the exact max
    histogram.record(Number.NaN);
    histogram.record(-1);
    expect(histogram.count).toBe(3);
    expect(histogram.quantile(0)).toBe(0);
    expect(histogram.quantile(1)).toBe(1e9);
    // values at or below minMs (0.01 ms) are told apart only to within minMs
    expect(histogram.quantile(0.1)).toBeLessThanOrEqual(0.01);
  });
});
