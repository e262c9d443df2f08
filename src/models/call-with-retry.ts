import type { RetryConfig } from '../config/schema.ts';
import { callModel, type ModelAnswer, type ModelRequest } from './call-model.ts';
import { ModelCallError } from './model-error.ts';
import type { ProviderClient } from './provider-clients.ts';
import { canRetry, retryDelayMs } from './retry-policy.ts';

/** What one HTTP call cost and how it ended; the job turns these into cost records. */
export interface CallAttempt {
  attempt: number;
  startedAt: string;
  latencyMs: number;
  answer?: ModelAnswer;
  error?: ModelCallError;
}

export type RetryOutcome = { ok: true; answer: ModelAnswer; attempts: CallAttempt[] } | { ok: false; error: ModelCallError; attempts: CallAttempt[] };

export interface RetryDeps {
  sleep: (ms: number) => Promise<void>;
  now?: () => number;
}

/** Calls one model until it answers, a non-retryable error occurs, or attempts run out. */
export async function callWithRetry(provider: ProviderClient, request: ModelRequest, retry: RetryConfig, deps: RetryDeps): Promise<RetryOutcome> {
  const now = deps.now ?? Date.now;
  const attempts: CallAttempt[] = [];
  for (let attempt = 1; ; attempt++) {
    const started = now();
    const startedAt = new Date(started).toISOString();
    try {
      const answer = await callModel(provider, request);
      attempts.push({ attempt, startedAt, latencyMs: now() - started, answer });
      return { ok: true, answer, attempts };
    } catch (thrown) {
      const error = thrown instanceof ModelCallError ? thrown : new ModelCallError({ code: 'unexpected_error', model: request.model, message: String(thrown) });
      attempts.push({ attempt, startedAt, latencyMs: now() - started, error });
      if (!error.retryable || !canRetry(attempt, retry)) return { ok: false, error, attempts };
      await deps.sleep(retryDelayMs(attempt, retry, error.retryAfterMs));
    }
  }
}
