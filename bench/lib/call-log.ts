import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import { median } from './stats.ts';

/**
 * Reads a run's costs.jsonl (one line per model call) and works out what a provider with a rolling
 * 60 s window saw: accepted calls and their tokens over time, 429s and when they came. The
 * simulator's own counters live in its process, so this is how the limit benchmarks count.
 * Times are the calls' `started_at` (the worker's clock just before the SDK call, ms precision).
 */

export interface LoggedCall {
  atMs: number;
  row: number;
  model: string;
  attempt: number;
  httpStatus: number | null;
  inputTokens: number;
  outputTokens: number;
}

interface CostLine {
  row: number;
  model: string;
  attempt: number;
  http_status: number | null;
  input_tokens: number;
  output_tokens: number;
  started_at: string;
}

/** Every call in costs.jsonl, sorted by start time; an absent file gives []. */
export async function readCalls(file: string): Promise<LoggedCall[]> {
  const calls: LoggedCall[] = [];
  try {
    const lines = createInterface({ input: createReadStream(file), crlfDelay: Number.POSITIVE_INFINITY });
    for await (const line of lines) {
      if (line.trim() === '') continue;
      const c = JSON.parse(line) as CostLine;
      calls.push({ atMs: Date.parse(c.started_at), row: c.row, model: c.model, attempt: c.attempt, httpStatus: c.http_status, inputTokens: c.input_tokens, outputTokens: c.output_tokens });
    }
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  return calls.sort((a, b) => a.atMs - b.atMs);
}

/** Amount per minute over the span from the first to the last start (the last one's amount is not in the span). */
export function ratePerMinute(times: readonly number[], amounts: readonly number[]): number {
  if (times.length < 2) return Number.NaN;
  const span = (times.at(-1) as number) - (times[0] as number);
  let total = 0;
  for (let i = 0; i < amounts.length - 1; i++) total += amounts[i] as number;
  return span > 0 ? (total * 60_000) / span : Number.NaN;
}

/** The largest sum of `amounts` whose times fall in one window [t, t + windowMs) (times sorted). */
export function busiestWindow(times: readonly number[], amounts: readonly number[], windowMs = 60_000): { sum: number; fromMs: number } {
  let best = { sum: 0, fromMs: times[0] ?? 0 };
  let sum = 0;
  let lo = 0;
  for (let hi = 0; hi < times.length; hi++) {
    sum += amounts[hi] as number;
    while ((times[hi] as number) - (times[lo] as number) >= windowMs) sum -= amounts[lo++] as number;
    if (sum > best.sum) best = { sum, fromMs: times[lo] as number };
  }
  return best;
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] as number;
}

export interface PacingStats {
  /** Accepted calls started in each whole second after the first start (the last, partial second left out). */
  perSecond: { median: number; min: number; max: number; p10: number; p90: number };
  /** Gaps between consecutive accepted starts, ms. */
  gaps: { p50: number; p99: number; max: number; maxAtS: number };
}

export function pacing(times: readonly number[]): PacingStats {
  const t0 = times[0] ?? 0;
  const seconds = times.length === 0 ? 0 : Math.floor(((times.at(-1) as number) - t0) / 1000);
  const counts = new Array<number>(Math.max(0, seconds)).fill(0);
  for (const t of times) {
    const s = Math.floor((t - t0) / 1000);
    if (s < seconds) counts[s] = (counts[s] ?? 0) + 1;
  }
  const sortedCounts = [...counts].sort((a, b) => a - b);
  const gaps: number[] = [];
  let maxGap = 0;
  let maxAt = 0;
  for (let i = 1; i < times.length; i++) {
    const gap = (times[i] as number) - (times[i - 1] as number);
    gaps.push(gap);
    if (gap > maxGap) [maxGap, maxAt] = [gap, ((times[i - 1] as number) - t0) / 1000];
  }
  gaps.sort((a, b) => a - b);
  return {
    perSecond: { median: median(counts), min: sortedCounts[0] ?? Number.NaN, max: sortedCounts.at(-1) ?? Number.NaN, p10: percentile(sortedCounts, 0.1), p90: percentile(sortedCounts, 0.9) },
    gaps: { p50: percentile(gaps, 0.5), p99: percentile(gaps, 0.99), max: maxGap, maxAtS: maxAt },
  };
}

export interface TimelineBin {
  fromS: number;
  accepted: number;
  rejected: number;
  /** Tokens of accepted calls as `counted` counts them. */
  tokens: number;
}

/** Calls per bin of `binS` seconds from the first call: accepted, answered 429, counted tokens. */
export function timeline(calls: readonly LoggedCall[], binS: number, counted: (call: LoggedCall) => number): TimelineBin[] {
  const t0 = calls[0]?.atMs ?? 0;
  const bins: TimelineBin[] = [];
  for (const call of calls) {
    const index = Math.floor((call.atMs - t0) / 1000 / binS);
    while (bins.length <= index) bins.push({ fromS: bins.length * binS, accepted: 0, rejected: 0, tokens: 0 });
    const bin = bins[index] as TimelineBin;
    if (call.httpStatus === 429) bin.rejected++;
    else {
      bin.accepted++;
      bin.tokens += counted(call);
    }
  }
  return bins;
}

/** One line per bin, several bins a line: "  0s 490/0 ..." (accepted/429; tokens when asked). */
export function formatTimeline(bins: readonly TimelineBin[], withTokens: boolean, perLine = 6): string[] {
  const cells = bins.map((b) => `${String(b.fromS).padStart(4)}s ${b.accepted}/${b.rejected}${withTokens ? ` ${(b.tokens / 1000).toFixed(1)}k` : ''}`);
  const lines: string[] = [];
  for (let i = 0; i < cells.length; i += perLine) lines.push(cells.slice(i, i + perLine).join('  '));
  return lines;
}
