import type { RetryConfig } from '../config/schema.ts';

/**
 * How long to wait before the next call to the same model: exponential backoff with full jitter
 * (so many workers hitting one limit spread out), never shorter than the server's retry-after.
 */
export function retryDelayMs(attempt: number, retry: RetryConfig, retryAfterMs: number | null, random = Math.random): number {
  const ceiling = Math.min(retry.max_delay_ms, retry.base_delay_ms * 2 ** (attempt - 1));
  const backoff = Math.round(ceiling * random());
  if (retryAfterMs === null) return backoff;
  // A small jitter on top of retry-after keeps waiting workers from returning in lockstep.
  return retryAfterMs + Math.round(Math.min(backoff, retryAfterMs * 0.2 + 50) * random());
}

