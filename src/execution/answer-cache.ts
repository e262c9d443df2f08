import { createHash } from 'node:crypto';
import { withSortedKeys } from '../sorted-keys.ts';
import type { Redis } from 'ioredis';
import { z } from 'zod';
import type { SwitchyardConfig } from '../config/schema.ts';
import type { ModelRequest } from '../models/call-model.ts';
import type { KeySpace } from '../queue/keys.ts';

/**
 * Answers kept in Redis (config `cache`), so the same request to the same endpoint is answered once
 * and not paid for again: by a nightly job that sends yesterday's prompts again, a batch run a
 * second time under a new id, a file with repeated rows. Shared by every batch and worker on the
 * key prefix, for `ttl_hours`. A request is the same when its endpoint (provider URL and upstream
 * model), messages, temperature, max_tokens and other body fields are; the API key is not part
 * of it. Only a finished answer (`finish_reason: stop`) is kept: one cut at max_tokens, or a
 * failure, is asked again.
 */
export interface AnswerCache {
  /** The cache's entry for one request (its key hashed once, for every look and the keep). */
  entryFor(baseUrl: string, request: ModelRequest): CacheEntry;
}

export interface CacheEntry {
  lookUp(): Promise<CachedAnswer | null>;
  keep(answer: CachedAnswer): Promise<void>;
}

/** The config as a batch run with --no-cache sees it (its meta's `cache_off`): no answer cache. */
export function withoutAnswerCache(config: SwitchyardConfig): SwitchyardConfig {
  const { cache: _off, ...uncached } = config;
  return uncached;
}

const cachedAnswerSchema = z.object({
  output: z.string(),
  finish_reason: z.string().nullable(),
  usage: z.object({ input_tokens: z.number(), output_tokens: z.number() }),
  request_id: z.string().nullable(),
  /** The row whose call gave the answer, and when. */
  batch_id: z.string(),
  row: z.number(),
  cached_at: z.string(),
});

export type CachedAnswer = z.infer<typeof cachedAnswerSchema>;

/** Only an answer the model ended itself is worth giving again. */
export function isCacheable(answer: { output: string; finishReason: string | null }): boolean {
  return answer.finishReason === 'stop' && answer.output.trim() !== '';
}

export function answerCacheKey(space: KeySpace, baseUrl: string, request: ModelRequest): string {
  const identity = [baseUrl.replace(/\/+$/, ''), request.upstream, request.messages, request.temperature, request.maxTokens, withSortedKeys(request.params ?? {})];
  return `${space.prefix}:answer-cache:${createHash('sha256').update(JSON.stringify(identity)).digest('base64url')}`;
}

export function createAnswerCache(redis: Redis, space: KeySpace, ttlHours: number, now: () => number = Date.now): AnswerCache {
  const ttlSeconds = Math.max(1, Math.round(ttlHours * 3600));
  return {
    entryFor(baseUrl, request) {
      const key = answerCacheKey(space, baseUrl, request);
      return { lookUp: () => lookUp(key), keep: (answer) => keep(key, answer) };
    },
  };

  async function lookUp(key: string): Promise<CachedAnswer | null> {
    const text = await redis.get(key);
    if (text === null) return null;
    // An entry this version cannot read (written by another one) is a miss: the call is made, and its answer replaces it.
    let entry: CachedAnswer;
    try {
      const parsed = cachedAnswerSchema.safeParse(JSON.parse(text));
      if (!parsed.success) return null;
      entry = parsed.data;
    } catch {
      return null;
    }
    // The reading batch's ttl_hours bounds the age it takes: a config that lowered it (answers went stale) gets no older one,
    // though an entry written under a longer one lives on in Redis.
    return now() - Date.parse(entry.cached_at) <= ttlHours * 3_600_000 ? entry : null;
  }

  async function keep(key: string, answer: CachedAnswer): Promise<void> {
    // Best effort: the row has its answer, paid for; a write Redis refuses (its memory full) must not fail the row and pay again.
    await redis.set(key, JSON.stringify(answer), 'EX', ttlSeconds).catch(() => undefined);
  }
}
