import { SlidingWindow } from './sliding-window.ts';

/** What the simulator saw, per model, so tests and benchmarks can check a client's behaviour. */

export interface ModelStats {
  /** Requests that named this model (after the body was valid), whatever their answer. */
  requests: number;
  /** Answers by HTTP status: { "200": 950, "429": 50 }. */
  by_status: Record<string, number>;
  /** Tokens served in 200 answers. */
  prompt_tokens: number;
  completion_tokens: number;
  /** Most requests received in any rolling 60 s window (100 ms resolution), 429s included. */
  peak_rpm: number;
  /** Most rate-limit tokens (as tpm counts them: prompt + max_tokens, or + usage) received in any rolling 60 s window. */
  peak_tpm: number;
  first_request_at: number | null;
  last_request_at: number | null;
}

export interface SimStats {
  /** Every request, including bad bodies, unknown routes and 401s that name no model. */
  requests: number;
  by_status: Record<string, number>;
  /** Most chat-completion requests in flight at once (received, answer not yet sent): a client's real concurrency. */
  peak_in_flight: number;
  models: Record<string, ModelStats>;
}

interface ModelCounters {
  stats: ModelStats;
  requestWindow: SlidingWindow;
  tokenWindow: SlidingWindow;
}

function bump(counts: Record<string, number>, status: number): void {
  counts[status] = (counts[status] ?? 0) + 1;
}

export class StatsCollector {
  #requests = 0;
  #byStatus: Record<string, number> = {};
  #inFlight = 0;
  #peakInFlight = 0;
  readonly #models = new Map<string, ModelCounters>();

  #model(model: string): ModelCounters {
    let counters = this.#models.get(model);
    if (!counters) {
      counters = {
        stats: {
          requests: 0,
          by_status: {},
          prompt_tokens: 0,
          completion_tokens: 0,
          peak_rpm: 0,
          peak_tpm: 0,
          first_request_at: null,
          last_request_at: null,
        },
        requestWindow: new SlidingWindow(),
        tokenWindow: new SlidingWindow(),
      };
      this.#models.set(model, counters);
    }
    return counters;
  }

  /** A chat request arrived (+1) or its answer left (-1); keeps the peak of requests in flight. */
  inFlight(change: 1 | -1): void {
    this.#inFlight += change;
    this.#peakInFlight = Math.max(this.#peakInFlight, this.#inFlight);
  }

  /** A valid request for `model` arrived, worth `limitTokens` rate-limit tokens. */
  received(model: string, limitTokens: number, now: number): void {
    const { stats, requestWindow, tokenWindow } = this.#model(model);
    stats.requests++;
    stats.first_request_at ??= now;
    stats.last_request_at = now;
    requestWindow.add(now, 1);
    tokenWindow.add(now, limitTokens);
    stats.peak_rpm = Math.max(stats.peak_rpm, requestWindow.total(now));
    stats.peak_tpm = Math.max(stats.peak_tpm, tokenWindow.total(now));
  }

  /** An answer left with `status`; `model` when the request named one, tokens for 200s. */
  answered(status: number, model?: string, usage?: { prompt: number; completion: number }): void {
    this.#requests++;
    bump(this.#byStatus, status);
    if (model === undefined) return;
    const { stats } = this.#model(model);
    bump(stats.by_status, status);
    if (usage) {
      stats.prompt_tokens += usage.prompt;
      stats.completion_tokens += usage.completion;
    }
  }

  snapshot(): SimStats {
    const models: Record<string, ModelStats> = {};
    for (const [name, { stats }] of this.#models) models[name] = { ...stats, by_status: { ...stats.by_status } };
    return { requests: this.#requests, by_status: { ...this.#byStatus }, peak_in_flight: this.#peakInFlight, models };
  }

  reset(): void {
    this.#requests = 0;
    this.#byStatus = {};
    this.#peakInFlight = this.#inFlight;
    this.#models.clear();
  }
}
