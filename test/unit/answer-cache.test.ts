import { describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import { answerCacheKey, createAnswerCache, isCacheable } from '../../src/execution/answer-cache.ts';
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

describe('answer cache age', () => {
  it("gives no answer older than the reading batch's ttl_hours, though Redis keeps it longer for another batch", async () => {
    const stored = new Map<string, string>();
    const redis = { get: async (key: string) => stored.get(key) ?? null, set: async (key: string, value: string) => void stored.set(key, value) } as unknown as Redis;
    const written = createAnswerCache(redis, space, 168, () => Date.parse('2026-12-01T00:00:00Z'));
    await written.entryFor('http://h/v1', request).keep({ output: 'hi', finish_reason: 'stop', usage: { input_tokens: 1, output_tokens: 1 }, request_id: null, batch_id: 'b', row: 1, cached_at: '2026-12-01T00:00:00.000Z' });
    const twoDaysOn = () => Date.parse('2026-12-03T00:00:00Z');
    expect(await createAnswerCache(redis, space, 168, twoDaysOn).entryFor('http://h/v1', request).lookUp()).toMatchObject({ output: 'hi' });
    expect(await createAnswerCache(redis, space, 24, twoDaysOn).entryFor('http://h/v1', request).lookUp()).toBeNull();
  });
});
