import { SlidingWindow } from './sliding-window.ts';

/**
 * Per-model requests-per-minute and tokens-per-minute limits over a rolling 60 s window kept in
 * 100 ms buckets (see sliding-window.ts). The caller says what a request's tokens are: by default
 * its prompt tokens plus the max_tokens it asked for (as OpenAI reserves them), or plus its answer's
 * tokens when it set none or when the model meters usage (`tpm_counts: usage`, see options.ts).
 * Only accepted requests use capacity; a 429 costs nothing.
 */

export interface Limits {
  rpm?: number | undefined;
  tpm?: number | undefined;
}

export type LimitDecision =
  | { ok: true; headers: Record<string, string> }
  | {
      ok: false;
      kind: 'requests' | 'tokens';
      message: string;
      /** Undefined when the request can never fit (it alone is over the tokens limit). */
      retryAfterMs: number | undefined;
      headers: Record<string, string>;
    };

interface ModelWindows {
  requests: SlidingWindow;
  tokens: SlidingWindow;
}

function formatSeconds(ms: number): string {
  return `${(ms / 1000).toFixed(3).replace(/\.?0+$/, '')}s`;
}

export class RateLimiter {
  readonly #models = new Map<string, ModelWindows>();

  #windows(model: string): ModelWindows {
    let windows = this.#models.get(model);
    if (!windows) {
      windows = { requests: new SlidingWindow(), tokens: new SlidingWindow() };
      this.#models.set(model, windows);
    }
    return windows;
  }

  /** Admits (and counts) one request of `tokens` tokens, or says which limit it hit and for how long. */
  take(model: string, limits: Limits, tokens: number, now: number): LimitDecision {
    const { rpm, tpm } = limits;
    if (rpm === undefined && tpm === undefined) return { ok: true, headers: {} };
    const windows = this.#windows(model);
    if (rpm !== undefined) {
      const wait = windows.requests.waitMs(now, 1, rpm);
      if (wait > 0) {
        const used = windows.requests.total(now);
        return {
          ok: false,
          kind: 'requests',
          retryAfterMs: wait,
          message: `Rate limit reached for ${model} on requests per min (RPM): Limit ${rpm}, Used ${used}, Requested 1. Please try again in ${formatSeconds(wait)}.`,
          headers: this.#headers(windows, limits, now),
        };
      }
    }
    if (tpm !== undefined) {
      const wait = windows.tokens.waitMs(now, tokens, tpm);
      if (wait > 0) {
        const used = windows.tokens.total(now);
        const tooLarge = !Number.isFinite(wait);
        return {
          ok: false,
          kind: 'tokens',
          retryAfterMs: tooLarge ? undefined : wait,
          message: tooLarge
            ? `Request too large for ${model} on tokens per min (TPM): Limit ${tpm}, Requested ${tokens}. The input or output tokens must be reduced in order to run successfully.`
            : `Rate limit reached for ${model} on tokens per min (TPM): Limit ${tpm}, Used ${used}, Requested ${tokens}. Please try again in ${formatSeconds(wait)}.`,
          headers: this.#headers(windows, limits, now),
        };
      }
    }
    windows.requests.add(now, 1);
    windows.tokens.add(now, tokens);
    return { ok: true, headers: this.#headers(windows, limits, now) };
  }

  #headers(windows: ModelWindows, limits: Limits, now: number): Record<string, string> {
    const headers: Record<string, string> = {};
    if (limits.rpm !== undefined) {
      headers['x-ratelimit-limit-requests'] = String(limits.rpm);
      headers['x-ratelimit-remaining-requests'] = String(Math.max(0, limits.rpm - windows.requests.total(now)));
    }
    if (limits.tpm !== undefined) {
      headers['x-ratelimit-limit-tokens'] = String(limits.tpm);
      headers['x-ratelimit-remaining-tokens'] = String(Math.max(0, limits.tpm - windows.tokens.total(now)));
    }
    return headers;
  }

  reset(): void {
    this.#models.clear();
  }
}
