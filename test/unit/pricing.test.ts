import { describe, expect, it } from 'vitest';
import { callCostNanos, formatUsd, nanosToUsd, sumUsd, usdToNanos } from '../../src/models/pricing.ts';

describe('pricing', () => {
  it('prices a call from tokens and USD per million tokens, in whole nano-dollars', () => {
    // 1,000 input at $0.14/M + 500 output at $0.28/M = $0.00014 + $0.00014
    expect(callCostNanos({ input_per_mtok: 0.14, output_per_mtok: 0.28 }, { input_tokens: 1000, output_tokens: 500 })).toBe(280_000);
    expect(nanosToUsd(280_000)).toBe(0.00028);
    expect(callCostNanos(undefined, { input_tokens: 1, output_tokens: 1 })).toBeNull();
  });

  it('adds amounts exactly, whatever the order, and null makes the sum unknown', () => {
    const amounts = Array.from({ length: 1000 }, (_, i) => nanosToUsd(137 + i * 7919));
    const forward = sumUsd(amounts);
    const backward = sumUsd([...amounts].reverse());
    expect(forward).toBe(backward);
    expect(usdToNanos(forward!)).toBe(amounts.reduce((sum, usd) => sum + usdToNanos(usd), 0));
    expect(sumUsd([0.1, null])).toBeNull();
  });

  it('formats tiny and large amounts readably', () => {
    expect(formatUsd(0.000571)).toBe('$0.000571');
    expect(formatUsd(12.345)).toBe('$12.35');
    expect(formatUsd(null)).toMatch(/no price/);
  });
});
