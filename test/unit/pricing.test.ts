import { describe, expect, it } from 'vitest';
import { callCostNanos, formatUsd, nanosToUsd, usdToNanos } from '../../src/models/pricing.ts';

describe('pricing', () => {
  it('prices a call from tokens and USD per million tokens, in whole nano-dollars', () => {
    // 1,000 input at $0.14/M + 500 output at $0.28/M = $0.00014 + $0.00014
    expect(callCostNanos({ input_per_mtok: 0.14, output_per_mtok: 0.28 }, { input_tokens: 1000, output_tokens: 500 })).toBe(280_000);
    expect(nanosToUsd(280_000)).toBe(0.00028);
    expect(callCostNanos(undefined, { input_tokens: 1, output_tokens: 1 })).toBeNull();
  });

  it('rounds half a nano-dollar up, exactly, whatever floating point makes of the product (QA: 83.49999999999999)', () => {
    // 17 x 0.0003 + 112 x 0.0007 = 0.0835 USD per million = 83.5 nano-dollars.
    expect(callCostNanos({ input_per_mtok: 0.0003, output_per_mtok: 0.0007 }, { input_tokens: 17, output_tokens: 112 })).toBe(84);
    expect(callCostNanos({ input_per_mtok: 0.0001, output_per_mtok: 0 }, { input_tokens: 5, output_tokens: 0 })).toBe(1);
    expect(callCostNanos({ input_per_mtok: 0.0001, output_per_mtok: 0 }, { input_tokens: 4, output_tokens: 0 })).toBe(0);
    expect(callCostNanos({ input_per_mtok: 1e-7, output_per_mtok: 1234.5678 }, { input_tokens: 10_000_000, output_tokens: 3 })).toBe(3_704_703); // 1,000 + 3,703,703.4
    expect(callCostNanos({ input_per_mtok: 15, output_per_mtok: 60 }, { input_tokens: 128_000, output_tokens: 32_768 })).toBe(128_000 * 15_000 + 32_768 * 60_000);
    expect(callCostNanos({ input_per_mtok: 0.14, output_per_mtok: 0.28 }, { input_tokens: 0, output_tokens: 0 })).toBe(0);
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
