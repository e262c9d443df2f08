import { nanosToUsd, usdToNanos } from '../models/pricing.ts';
import type { CallRecord } from '../output/records.ts';
import type { HistogramSample, MetricFamily, Sample } from './exposition.ts';

/**
 * The model calls this process made, counted in memory as each cost record is made (row-runner.ts,
 * row-planner.ts): a few map lookups and additions per call, nothing written to Redis. The figures
 * are this process's since it started (a `serve`'s own workers; a `switchyard worker` has no
 * /metrics), and start again from 0 when it restarts, as Prometheus counters may.
 */

/** Call latency buckets in seconds: simulated calls take milliseconds, a long reasoning answer minutes. */
export const CALL_SECONDS_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300] as const;

interface ModelTally {
  /** By "outcome code" (succeeded 200, failed 429, failed none...). */
  calls: Map<string, { outcome: CallRecord['status']; code: string; count: number }>;
  retries: number;
  fallbackCalls: number;
  costNanos: number;
  /** Non-cumulative counts per bucket of CALL_SECONDS_BUCKETS, the last one past them all. */
  latencyBuckets: number[];
  /** In ms, as the records give it: summed in seconds, 0.04 + 0.003 + ... showed as 1.1949999999999998. */
  latencyMs: number;
  latencyCount: number;
}

export class ProcessCallMetrics {
  readonly #models = new Map<string, ModelTally>();

  /** One call this process made (its cost record), whatever became of its row. */
  record(call: CallRecord): void {
    let tally = this.#models.get(call.model);
    if (!tally) {
      tally = { calls: new Map(), retries: 0, fallbackCalls: 0, costNanos: 0, latencyBuckets: new Array<number>(CALL_SECONDS_BUCKETS.length + 1).fill(0), latencyMs: 0, latencyCount: 0 };
      this.#models.set(call.model, tally);
    }
    // No HTTP answer (a timeout, a refused connection) is its own code, so a dead provider shows apart from its 5xx.
    const code = call.http_status === null ? 'none' : String(call.http_status);
    const key = `${call.status} ${code}`;
    const counted = tally.calls.get(key);
    if (counted) counted.count++;
    else tally.calls.set(key, { outcome: call.status, code, count: 1 });
    if (call.attempt > 1) tally.retries++;
    if (call.chain_position !== null && call.chain_position > 0) tally.fallbackCalls++;
    // Summed in nano-dollars (pricing.ts): floating-point USD drifts after millions of additions.
    if (call.cost_usd !== null) tally.costNanos += usdToNanos(call.cost_usd);
    const ms = Math.max(0, call.latency_ms);
    const bucket = CALL_SECONDS_BUCKETS.findIndex((bound) => ms <= bound * 1000);
    tally.latencyBuckets[bucket === -1 ? CALL_SECONDS_BUCKETS.length : bucket]!++;
    tally.latencyMs += ms;
    tally.latencyCount++;
  }

  families(): MetricFamily[] {
    const calls: Sample[] = [];
    const retries: Sample[] = [];
    const fallbacks: Sample[] = [];
    const cost: Sample[] = [];
    const latency: HistogramSample[] = [];
    for (const [model, tally] of [...this.#models].sort(([a], [b]) => a.localeCompare(b))) {
      for (const { outcome, code, count } of tally.calls.values()) calls.push({ labels: { model, outcome, code }, value: count });
      retries.push({ labels: { model }, value: tally.retries });
      fallbacks.push({ labels: { model }, value: tally.fallbackCalls });
      cost.push({ labels: { model }, value: nanosToUsd(tally.costNanos) });
      let running = 0;
      const cumulativeCounts = CALL_SECONDS_BUCKETS.map((_, i) => (running += tally.latencyBuckets[i]!));
      latency.push({ labels: { model }, buckets: CALL_SECONDS_BUCKETS, cumulativeCounts, count: tally.latencyCount, sum: tally.latencyMs / 1000 });
    }
    const perProcess = 'by this process since it started (each server counts its own workers\' calls)';
    return [
      { name: 'switchyard_process_model_calls_total', type: 'counter', help: `Model calls made ${perProcess}, by model, outcome (succeeded, failed) and HTTP status (code "none": no HTTP answer, a timeout or a refused connection; 429: rate limited).`, samples: calls },
      { name: 'switchyard_process_model_retries_total', type: 'counter', help: `Model calls that repeated a call to the same model for the same row (its attempt 2 or later), ${perProcess}.`, samples: retries },
      { name: 'switchyard_process_model_fallback_calls_total', type: 'counter', help: `Model calls made to a row's fallback model (not its first choice), ${perProcess}.`, samples: fallbacks },
      { name: 'switchyard_process_model_cost_usd_total', type: 'counter', help: `What the model calls made ${perProcess} cost, in USD (models without a price count 0).`, samples: cost },
      { name: 'switchyard_process_model_call_duration_seconds', type: 'histogram', help: `How long the model calls made ${perProcess} took, in seconds.`, samples: latency },
    ];
  }
}

/** This process's tally: one per process, as its calls are (the row runners of every batch add to it). */
export const processCallMetrics = new ProcessCallMetrics();
