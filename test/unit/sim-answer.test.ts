import { describe, expect, it } from 'vitest';
import { composeAnswer, type AnswerInput } from '../../src/sim/answer.ts';
import { estimateTokens } from '../../src/sim/tokens.ts';

const base: AnswerInput = {
  model: 'deepseek-v4-flash',
  messages: [
    { role: 'system', text: 'You are terse.' },
    { role: 'user', text: 'What is the capital of France? Answer in one word please, thanks a lot.' },
  ],
  outputTokens: { min: 20, max: 120 },
};

describe('simulator answers', () => {
  it('is deterministic: the same model and messages give the same answer', () => {
    expect(composeAnswer(base)).toEqual(composeAnswer(structuredClone(base)));
  });

  it('names the model and echoes the start of the last user message', () => {
    const { content, finishReason } = composeAnswer(base);
    expect(content.startsWith('[deepseek-v4-flash] Answer to "What is the capital of France? Answer in...":')).toBe(true);
    expect(finishReason).toBe('stop');
  });

  it('changes with the model or the prompt', () => {
    const answer = composeAnswer(base).content;
    expect(composeAnswer({ ...base, model: 'glm-4' }).content).not.toBe(answer);
    const other = composeAnswer({ ...base, messages: [{ role: 'user', text: 'Something else entirely' }] }).content;
    expect(other).not.toBe(answer);
    expect(other).toContain('"Something else entirely"');
  });

  it('keeps completion tokens inside the configured range and reports them', () => {
    const lengths = new Set<number>();
    for (let i = 0; i < 200; i++) {
      const answer = composeAnswer({ ...base, messages: [{ role: 'user', text: `question number ${i}` }] });
      expect(answer.completionTokens).toBe(estimateTokens(answer.content));
      expect(answer.completionTokens).toBeGreaterThanOrEqual(20);
      expect(answer.completionTokens).toBeLessThanOrEqual(120);
      lengths.add(answer.completionTokens);
    }
    expect(lengths.size).toBeGreaterThan(30); // lengths spread over the range
  });

  it('stays within a tiny range even when the header is longer than the answer may be', () => {
    const answer = composeAnswer({ ...base, outputTokens: { min: 3, max: 3 } });
    expect(answer.completionTokens).toBeLessThanOrEqual(3);
    expect(answer.finishReason).toBe('stop');
  });

  it('stops at max_tokens with finish_reason "length"', () => {
    const full = composeAnswer(base);
    const cut = composeAnswer({ ...base, maxTokens: 8 });
    expect(cut.finishReason).toBe('length');
    expect(cut.completionTokens).toBeLessThanOrEqual(8);
    expect(full.content.startsWith(cut.content)).toBe(true);
    const roomy = composeAnswer({ ...base, maxTokens: 10_000 });
    expect(roomy).toEqual(full);
  });

  it('ends with a full stop and is made of sentences', () => {
    const { content } = composeAnswer(base);
    expect(content.endsWith('.')).toBe(true);
    const body = content.slice(content.indexOf('": ') + 3);
    expect(body).not.toMatch(/\.\./);
    expect(content).toMatch(/": [A-Z][a-z]+ /);
  });
});
