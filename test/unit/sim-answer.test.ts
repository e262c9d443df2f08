import { describe, expect, it } from 'vitest';
import { composeAnswer, type AnswerInput } from '../../src/sim/answer.ts';
import { SchemaError } from '../../src/sim/schema-value.ts';
import { estimateTokens } from '../../src/sim/tokens.ts';
import { schemaProblems } from '../helpers/json-schema-check.ts';

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

const verdict = {
  type: 'object',
  properties: {
    label: { type: 'string', enum: ['positive', 'negative', 'neutral'] },
    confidence: { type: 'number', minimum: 0, maximum: 1 },
    reasons: { type: 'array', items: { type: 'string' }, minItems: 1, maxItems: 3 },
    reviewed_at: { type: ['string', 'null'], format: 'date-time' },
  },
  required: ['label', 'confidence', 'reasons', 'reviewed_at'],
  additionalProperties: false,
};

describe('simulator answers to a response_format, stop and seed', () => {
  it('answers json_object with a small JSON object, deterministic from the prompt', () => {
    const answer = composeAnswer({ ...base, format: { type: 'json_object' } });
    expect(answer).toEqual(composeAnswer({ ...structuredClone(base), format: { type: 'json_object' } }));
    const parsed: unknown = JSON.parse(answer.content);
    expect(parsed).toEqual({ answer: expect.stringMatching(/^[A-Z][a-z]+ .*\.$/), model: 'deepseek-v4-flash', question: 'What is the capital of France? Answer in...' });
    expect(answer).toMatchObject({ finishReason: 'stop', json: true, completionTokens: estimateTokens(answer.content) });
    expect(composeAnswer(base).json).toBe(false);
    for (let i = 0; i < 100; i++) {
      const other = composeAnswer({ ...base, messages: [{ role: 'user', text: `question number ${i}` }], format: { type: 'json_object' } });
      expect(JSON.parse(other.content)).toMatchObject({ question: `question number ${i}` });
      expect(other.completionTokens).toBeLessThanOrEqual(120 + 5); // about the text answers' range
    }
    // A json_schema without a schema is answered as json_object.
    expect(composeAnswer({ ...base, format: { type: 'json_schema', schema: undefined } }).content).toBe(answer.content);
  });

  it('answers json_schema with JSON that validates against it, a different value per prompt', () => {
    const contents = new Set<string>();
    for (let i = 0; i < 100; i++) {
      const answer = composeAnswer({ ...base, messages: [{ role: 'user', text: `review ${i}` }], format: { type: 'json_schema', schema: verdict } });
      expect(schemaProblems(verdict, JSON.parse(answer.content)), answer.content).toEqual([]);
      expect(answer).toMatchObject({ finishReason: 'stop', json: true, completionTokens: estimateTokens(answer.content) });
      contents.add(answer.content);
    }
    expect(contents.size).toBe(100);
  });

  it('throws a SchemaError for a schema outside its subset', () => {
    expect(() => composeAnswer({ ...base, format: { type: 'json_schema', schema: { type: 'string', pattern: 'x' } } })).toThrow(SchemaError);
  });

  it('cuts JSON at max_tokens with finish_reason "length", no longer valid, as a provider does', () => {
    const full = composeAnswer({ ...base, format: { type: 'json_schema', schema: verdict } });
    const cut = composeAnswer({ ...base, format: { type: 'json_schema', schema: verdict }, maxTokens: 5 });
    expect(cut.finishReason).toBe('length');
    expect(cut.completionTokens).toBeLessThanOrEqual(5);
    expect(full.content.startsWith(cut.content)).toBe(true);
    expect(() => JSON.parse(cut.content)).toThrow();
  });

  it('ends before the first stop sequence it contains, with finish_reason "stop"', () => {
    const full = composeAnswer(base).content;
    const words = full.slice(full.indexOf('": ') + 3).split(' ');
    const [second, fourth] = [words[1]!, words[3]!];
    const cut = composeAnswer({ ...base, stop: [` ${fourth}`, ` ${second}`, ''] });
    expect(cut.content).toBe(full.slice(0, full.indexOf(` ${second}`)));
    expect(cut).toMatchObject({ finishReason: 'stop', completionTokens: estimateTokens(cut.content) });
    expect(composeAnswer({ ...base, stop: ['no such text'] })).toEqual(composeAnswer(base));
    const json = composeAnswer({ ...base, format: { type: 'json_object' }, stop: ['","model"'] });
    expect(json.content).toMatch(/^\{"answer":"[^"]+$/);
    // The stop comes first: an answer cut before max_tokens is reached ends with "stop".
    expect(composeAnswer({ ...base, stop: ['"'], maxTokens: 10 })).toMatchObject({ content: '[deepseek-v4-flash] Answer to ', finishReason: 'stop' });
  });

  it('gives another answer for another seed, the same one for the same seed', () => {
    const plain = composeAnswer(base).content;
    const seeded = composeAnswer({ ...base, seed: 7 }).content;
    expect(seeded).not.toBe(plain);
    expect(composeAnswer({ ...base, seed: 7 }).content).toBe(seeded);
    expect(composeAnswer({ ...base, seed: 8 }).content).not.toBe(seeded);
    const schema = { type: 'json_schema' as const, schema: verdict };
    expect(composeAnswer({ ...base, format: schema, seed: 7 }).content).not.toBe(composeAnswer({ ...base, format: schema }).content);
  });
});
