import { describe, expect, it } from 'vitest';
import { answerCacheKey, isCacheable } from '../../src/execution/answer-cache.ts';
import type { ModelRequest } from '../../src/models/call-model.ts';

const space = { prefix: 'sy' };
const request: ModelRequest = { model: 'flash', upstream: 'deepseek-chat', messages: [{ role: 'user', content: 'Hi' }], temperature: 0, maxTokens: 100, params: { top_p: 0.9, stop: ['\n'] } };
const key = (baseUrl: string, changes: Partial<ModelRequest> = {}) => answerCacheKey(space, baseUrl, { ...request, ...changes });

describe('answer cache key', () => {
  it('is the same for the same request to the same endpoint, whatever the config calls the model or the order of body fields', () => {
    const base = key('https://api.example.com/v1');
    expect(base).toMatch(/^sy:answer-cache:[\w-]{43}$/);
    expect(key('https://api.example.com/v1/')).toBe(base);
    expect(key('https://api.example.com/v1', { model: 'another-name', stream: true })).toBe(base);
    expect(key('https://api.example.com/v1', { params: { stop: ['\n'], top_p: 0.9 } })).toBe(base);
  });

  it('differs with anything that changes the answer: endpoint, upstream model, messages, temperature, max_tokens, body fields', () => {
    const base = key('https://api.example.com/v1');
    for (const other of [
      key('https://other.example.com/v1'),
      key('https://api.example.com/v1', { upstream: 'deepseek-reasoner' }),
      key('https://api.example.com/v1', { messages: [{ role: 'system', content: 'Be brief' }, { role: 'user', content: 'Hi' }] }),
      key('https://api.example.com/v1', { temperature: 0.7 }),
      key('https://api.example.com/v1', { maxTokens: 101 }),
      key('https://api.example.com/v1', { params: { top_p: 1, stop: ['\n'] } }),
      key('https://api.example.com/v1', { params: undefined }),
    ]) expect(other).not.toBe(base);
  });

  it('keeps only answers the model finished itself', () => {
    expect(isCacheable({ output: 'Hello', finishReason: 'stop' })).toBe(true);
    expect(isCacheable({ output: 'Hel', finishReason: 'length' })).toBe(false);
    expect(isCacheable({ output: 'Hello', finishReason: 'content_filter' })).toBe(false);
    expect(isCacheable({ output: ' ', finishReason: 'stop' })).toBe(false);
  });
});
