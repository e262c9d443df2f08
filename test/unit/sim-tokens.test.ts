import { describe, expect, it } from 'vitest';
import { estimateTokens, MESSAGE_OVERHEAD_TOKENS, promptTokens, REQUEST_OVERHEAD_TOKENS, truncateToTokens } from '../../src/sim/tokens.ts';

describe('simulator token estimate', () => {
  it('counts about four Latin characters per token, rounded up, at least one', () => {
    expect(estimateTokens('')).toBe(1);
    expect(estimateTokens('abc')).toBe(1);
    expect(estimateTokens('abcd')).toBe(1);
    expect(estimateTokens('abcde')).toBe(2);
    expect(estimateTokens('x'.repeat(400))).toBe(100);
  });

  it('counts one token per CJK character', () => {
    expect(estimateTokens('你好世界')).toBe(4);
    expect(estimateTokens('こんにちは')).toBe(5);
    expect(estimateTokens('안녕')).toBe(2);
    expect(estimateTokens('你好 abcd')).toBe(2 + 2); // 2 CJK + ceil(5 / 4)
  });

  it('adds per-message and per-request overhead for prompts', () => {
    expect(promptTokens(['abcd', 'abcdefgh'])).toBe(REQUEST_OVERHEAD_TOKENS + 1 + 2 + 2 * MESSAGE_OVERHEAD_TOKENS);
    expect(promptTokens([])).toBe(REQUEST_OVERHEAD_TOKENS);
  });

  it('truncates to the longest prefix within a token budget', () => {
    const text = 'abcdefghijklmnopqrstuvwxyz';
    expect(truncateToTokens(text, 2)).toBe('abcdefgh');
    expect(truncateToTokens(text, 100)).toBe(text);
    expect(truncateToTokens('你好世界', 3)).toBe('你好世');
    for (let budget = 1; budget < 8; budget++) expect(estimateTokens(truncateToTokens(text, budget))).toBeLessThanOrEqual(budget);
  });

  it('never splits a surrogate pair', () => {
    const cut = truncateToTokens('abc😀defgh', 1);
    expect(cut).toBe('abc');
  });
});
