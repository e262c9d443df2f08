import type { FinishedRowKind } from '../../jobs/prompt.ts';
import { formatUsd, nanosToUsd } from '../models/pricing.ts';
import { counted, formatClockTime, formatCount } from '../figure-text.ts';

/** What one finished row tells the tally (see jobs/prompt.ts). */
export interface FinishedRow {
  batchId: string;
  row: FinishedRowKind;
  costNanos: number;
}

interface Counts {
  rows: number;
  failed: number;
  costNanos: number;
  batches: Set<string>;
}

/** A line names the batches it counts up to this many. */
const NAMED_BATCHES = 3;

/**
 * The batches a tally tells apart, at most: past this many the line says "10,000+ batches". A
 * worker runs for months, and the tally of its whole run kept every batch id it ever saw (about
 * 110 bytes each, never freed: 11 MB after 100,000 batches).
 */
export const MAX_COUNTED_BATCHES = 10_000;

const emptyCounts = (): Counts => ({ rows: 0, failed: 0, costNanos: 0, batches: new Set() });

/**
 * What a standalone `switchyard worker` has done: a line per reporting period while rows come
 * (a worker can run for hours with nothing else on its terminal), and a summary when it stops.
 * Rows that had already succeeded before a re-delivery are not counted: nothing was done for them.
 * A superseded job's calls count in the cost, but not as a row (the row's new job is the one), as
 * do those of a row whose claim this worker lost to another (the other finishes it).
 */
export function createWorkerActivity(now: () => number = Date.now) {
  const startedAt = now();
  let periodStartedAt = startedAt;
  let period = emptyCounts();
  const total = emptyCounts();

  const describe = (counts: Counts, ms: number) => {
    const rate = ms > 0 ? (counts.rows * 1000) / ms : 0;
    // Named when few: an operator reading the log looks for the batch it is waiting on.
    const names = counts.batches.size <= NAMED_BATCHES ? ` (${[...counts.batches].join(', ')})` : '';
    const more = counts.batches.size >= MAX_COUNTED_BATCHES ? '+' : '';
    const batches = (counts.batches.size === 1 ? '1 batch' : `${formatCount(counts.batches.size)}${more} batches`) + names;
    return `${counted(counts.rows, 'row')} (${formatCount(counts.failed)} failed) of ${batches}, ${rate.toFixed(1)} rows/s, ${formatUsd(nanosToUsd(counts.costNanos))}`;
  };

  return {
    rowFinished(finished: FinishedRow): void {
      if (finished.row === 'already-succeeded') return;
      for (const counts of [period, total]) {
        counts.costNanos += finished.costNanos;
        if (finished.row === 'superseded' || finished.row === 'withdrawn' || finished.row === 'handed-over') continue;
        counts.rows++;
        if (finished.row === 'failed') counts.failed++;
        if (counts.batches.size < MAX_COUNTED_BATCHES) counts.batches.add(finished.batchId);
      }
    },
    /** The line for the period since the last call, or null when no row finished in it. */
    periodLine(): string | null {
      const at = now();
      // When, as run's plain progress lines say it: a worker's log runs for days.
      const line = period.rows === 0 ? null : `worker: ${describe(period, at - periodStartedAt)} in the last ${seconds(at - periodStartedAt)}, at ${formatClockTime(at)}`;
      period = emptyCounts();
      periodStartedAt = at;
      return line;
    },
    summaryLine(): string {
      const ms = now() - startedAt;
      return total.rows === 0 ? `Worker stopped after ${seconds(ms)}; it finished no rows.` : `Worker stopped after ${seconds(ms)}: ${describe(total, ms)}.`;
    },
  };
}

function seconds(ms: number): string {
  const s = Math.round(ms / 1000);
  return s < 120 ? `${s} s` : `${Math.floor(s / 60)} min ${s % 60} s`;
}
