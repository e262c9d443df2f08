import { nanosToUsd, usdToNanos } from '../models/pricing.ts';
import { LatencyHistogram } from './latency-histogram.ts';
import { readJsonl } from './read-jsonl.ts';
import type { CallRecord, RowResult } from './records.ts';

/** Batch-wide figures. Row counts come from results.jsonl; calls, tokens and cost from costs.jsonl. */
export interface ReportTotals {
  rows: number;
  succeeded: number;
  failed: number;
  /** Every model call, failed attempts included. */
  calls: number;
  failed_calls: number;
  input_tokens: number;
  output_tokens: number;
  /** Exactly the sum of costs.jsonl's priced `cost_usd` (added as integer nano-dollars). */
  cost_usd: number;
  /** Calls whose model has no configured price (cost null): left out of `cost_usd`. */
  unpriced_calls: number;
  elapsed_ms: number;
  /** null when no time elapsed. */
  rows_per_second: number | null;
}

export interface ModelReport {
  /** Rows whose final result came from this model (results.jsonl). */
  rows: number;
  succeeded: number;
  failed: number;
  /** Calls to this model (costs.jsonl), failed attempts and fallbacks included. */
  calls: number;
  failed_calls: number;
  input_tokens: number;
  output_tokens: number;
  cost_usd: number;
  unpriced_calls: number;
  /** Latency of this model's succeeded calls (failed calls, fast 429s or slow timeouts, would blur it); null when none. */
  latency_p50_ms: number | null;
  latency_p95_ms: number | null;
}

export interface Report {
  batch_id: string;
  /** ISO 8601. */
  started_at: string;
  finished_at: string;
  totals: ReportTotals;
  /** Per model, most rows first. */
  models: Record<string, ModelReport>;
  /** Failed rows by final error code, most frequent first. */
  errors: Record<string, number>;
  /** Failed calls (retried ones included) by error code, most frequent first. */
  call_errors: Record<string, number>;
}

export interface BuildReportOptions {
  resultsPath: string;
  costsPath: string;
  batchId: string;
  startedAt: Date | string;
  finishedAt: Date | string;
  /** Reserved for A/B comparisons against a baseline model; not used yet. */
  baselineModel?: undefined;
}

interface ModelTally {
  rows: number;
  succeeded: number;
  failed: number;
  calls: number;
  failedCalls: number;
  inputTokens: number;
  outputTokens: number;
  costNanos: number;
  unpricedCalls: number;
  latency: LatencyHistogram;
}

/**
 * Builds the batch report, streaming results.jsonl and costs.jsonl once each. Memory holds one
 * tally per model (with a bounded latency histogram) and one counter per error code.
 * Nano-dollar sums are exact while below 2^53 nanos (about $9 million).
 */
export async function buildReport(options: BuildReportOptions): Promise<Report> {
  const models = new Map<string, ModelTally>();
  const tally = (model: string): ModelTally => {
    let entry = models.get(model);
    if (!entry) {
      entry = {
        rows: 0,
        succeeded: 0,
        failed: 0,
        calls: 0,
        failedCalls: 0,
        inputTokens: 0,
        outputTokens: 0,
        costNanos: 0,
        unpricedCalls: 0,
        latency: new LatencyHistogram(),
      };
      models.set(model, entry);
    }
    return entry;
  };

  const rowErrors = new Map<string, number>();
  let rows = 0;
  let succeeded = 0;
  for await (const result of readJsonl<RowResult>(options.resultsPath)) {
    const entry = tally(result.model);
    rows += 1;
    entry.rows += 1;
    if (result.status === 'succeeded') {
      succeeded += 1;
      entry.succeeded += 1;
    } else {
      entry.failed += 1;
      increment(rowErrors, result.error?.code ?? 'unknown');
    }
  }

  const callErrors = new Map<string, number>();
  for await (const call of readJsonl<CallRecord>(options.costsPath)) {
    const entry = tally(call.model);
    entry.calls += 1;
    entry.inputTokens += call.input_tokens;
    entry.outputTokens += call.output_tokens;
    if (call.cost_usd === null || call.cost_usd === undefined) entry.unpricedCalls += 1;
    else entry.costNanos += usdToNanos(call.cost_usd);
    if (call.status === 'succeeded') {
      entry.latency.record(call.latency_ms);
    } else {
      entry.failedCalls += 1;
      increment(callErrors, call.error_code ?? (call.http_status === null ? 'unknown' : `http_${call.http_status}`));
    }
  }

  const ordered = [...models.entries()].sort(
    ([nameA, a], [nameB, b]) => b.rows - a.rows || b.calls - a.calls || nameA.localeCompare(nameB),
  );
  const modelReports: Array<[string, ModelReport]> = [];
  let calls = 0;
  let failedCalls = 0;
  let inputTokens = 0;
  let outputTokens = 0;
  let costNanos = 0;
  let unpricedCalls = 0;
  for (const [name, entry] of ordered) {
    calls += entry.calls;
    failedCalls += entry.failedCalls;
    inputTokens += entry.inputTokens;
    outputTokens += entry.outputTokens;
    costNanos += entry.costNanos;
    unpricedCalls += entry.unpricedCalls;
    modelReports.push([name, {
      rows: entry.rows,
      succeeded: entry.succeeded,
      failed: entry.failed,
      calls: entry.calls,
      failed_calls: entry.failedCalls,
      input_tokens: entry.inputTokens,
      output_tokens: entry.outputTokens,
      cost_usd: nanosToUsd(entry.costNanos),
      unpriced_calls: entry.unpricedCalls,
      latency_p50_ms: roundTenth(entry.latency.quantile(0.5)),
      latency_p95_ms: roundTenth(entry.latency.quantile(0.95)),
    }]);
  }

  const startedAt = new Date(options.startedAt);
  const finishedAt = new Date(options.finishedAt);
  const elapsedMs = Math.max(0, finishedAt.getTime() - startedAt.getTime());
  return {
    batch_id: options.batchId,
    started_at: startedAt.toISOString(),
    finished_at: finishedAt.toISOString(),
    totals: {
      rows,
      succeeded,
      failed: rows - succeeded,
      calls,
      failed_calls: failedCalls,
      input_tokens: inputTokens,
      output_tokens: outputTokens,
      cost_usd: nanosToUsd(costNanos),
      unpriced_calls: unpricedCalls,
      elapsed_ms: elapsedMs,
      rows_per_second: elapsedMs > 0 ? roundTenth((rows * 1000) / elapsedMs) : null,
    },
    // fromEntries defines own properties, so a model named "__proto__" stays a plain key.
    models: Object.fromEntries(modelReports),
    errors: byCountDescending(rowErrors),
    call_errors: byCountDescending(callErrors),
  };
}

function increment(counts: Map<string, number>, key: string): void {
  counts.set(key, (counts.get(key) ?? 0) + 1);
}

function byCountDescending(counts: Map<string, number>): Record<string, number> {
  const sorted = [...counts.entries()].sort(([a, x], [b, y]) => y - x || a.localeCompare(b));
  return Object.fromEntries(sorted);
}

function roundTenth(value: number | null): number | null {
  return value === null ? null : Math.round(value * 10) / 10;
}
