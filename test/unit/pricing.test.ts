import { describe, expect, it } from 'vitest';
import { callCostNanos, formatUsd, nanosToUsd, usdToNanos } from '../../src/models/pricing.ts';

describe('pricing', () => {
  it('prices a call from tokens and USD per million tokens, in whole nano-dollars', () => {
    // 1,000 input at $0.14/M + 500 output at $0.28/M = $0.00014 + $0.00014
    expect(callCostNanos({ input_per_mtok: 0.14, output_per_mtok: 0.28 }, { input_tokens: 1000, output_tokens: 500 })).toBe(280_000);
    expect(nanosToUsd(280_000)).toBe(0.00028);
    expect(callCostNanos(undefined, { input_tokens: 1, output_tokens: 1 })).toBeNull();
  });

  it('turns the USD amounts written to the files back into the same whole nano-dollars', () => {
    // Sums are made in nano-dollars from what costs.jsonl says in USD: the round trip must be exact.
    for (let i = 0; i < 1000; i++) expect(usdToNanos(nanosToUsd(137 + i * 7919))).toBe(137 + i * 7919);
  });

  it('formats tiny and large amounts readably', () => {
    expect(formatUsd(0.000571)).toBe('$0.000571');
    expect(formatUsd(12.345)).toBe('$12.35');
    expect(formatUsd(1e-10)).toBe('$0.000000000100');
    expect(formatUsd(7.7e-8)).toBe('$0.0000000770');
    expect(formatUsd(null)).toMatch(/no price/);
  });
});
