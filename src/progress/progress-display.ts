import { MultiBar, Presets } from 'cli-progress';
import type { BatchProgress } from '../queue/batch-state.ts';
import { formatUsd } from '../models/pricing.ts';
import { formatCount, formatDuration } from '../output/report-markdown.ts';
import { sendLinesToBar } from './terminal-lines.ts';

/**
 * Shows a running batch: a bar on a terminal, a plain line every few seconds otherwise (CI logs,
 * pipes). Rates and ETA count the rows finished since the first update, so the caller gives the
 * first one as the display starts (rows a resumed batch finished before then do not count).
 */
export interface ProgressDisplay {
  update(progress: BatchProgress): void;
  stop(): void;
}

/** An ETA: '?' until there is a rate to go by. */
function formatEta(ms: number): string {
  return Number.isFinite(ms) && ms >= 0 ? formatDuration(ms) : '?';
}

export interface ProgressDisplayOptions {
  /** Plain output: at most one line per this many ms (and one at stop). */
  plainEveryMs?: number;
  now?: () => number;
}

/** The row count, or the producer's estimate of it ("~") while the file is still being read. */
export function totalOf(progress: BatchProgress): { rows: number | null; text: string } {
  if (progress.total !== null) return { rows: progress.total, text: formatCount(progress.total) };
  if (progress.estimatedTotal !== null) {
    const rows = Math.max(progress.estimatedTotal, progress.finished);
    return { rows, text: `~${formatCount(rows)}` };
  }
  return { rows: null, text: '?' };
}

function rateAndEta(progress: BatchProgress, total: number | null, elapsed: number, firstFinished: number) {
  // Never below 0: a resumed batch clears the finished bits of the failed rows it runs again.
  const doneHere = Math.max(0, progress.finished - firstFinished);
  const rate = elapsed > 0 ? (doneHere * 1000) / elapsed : 0;
  const remaining = total === null ? NaN : total - progress.finished;
  return { rate, eta: rate > 0 ? (remaining / rate) * 1000 : NaN };
}

export function createProgressDisplay(stream: NodeJS.WritableStream & { isTTY?: boolean }, options: ProgressDisplayOptions = {}): ProgressDisplay {
  const { plainEveryMs = 5000, now = Date.now } = options;
  const startedAt = now();
  let firstFinished: number | null = null;
  if (stream.isTTY) {
    // A MultiBar of one bar, for its log(): lines said while the bar is up print above it (terminal-lines.ts).
    const bars = new MultiBar(
      { format: ' {bar} {done_text}/{total_text} rows | {failed} failed | {rate} rows/s | ETA {eta_text} | {cost}', hideCursor: true, stream, fps: 5 },
      Presets.shades_classic,
    );
    let bar: ReturnType<MultiBar['create']> | null = null;
    return {
      update(progress) {
        firstFinished ??= progress.finished;
        const { rows, text } = totalOf(progress);
        const { rate, eta } = rateAndEta(progress, rows, now() - startedAt, firstFinished);
        const payload = { done_text: formatCount(progress.finished), failed: formatCount(progress.failed), rate: formatCount(rate), eta_text: formatEta(eta), cost: formatUsd(progress.costUsd), total_text: text };
        const total = rows ?? Math.max(progress.finished, 1);
        if (!bar) {
          bar = bars.create(total, progress.finished, payload);
          sendLinesToBar((text) => bars.log(text));
        } else {
          bar.setTotal(total);
          bar.update(progress.finished, payload);
        }
      },
      stop() {
        if (!bar) return;
        sendLinesToBar(null);
        bars.update(); // prints lines logged since the last redraw
        bars.stop();
      },
    };
  }
  // The first line comes after one interval, when the rate means something; the last at stop().
  let lastLine = startedAt;
  let latest: BatchProgress | null = null;
  const print = (progress: BatchProgress) => {
    const total = totalOf(progress);
    const { rate, eta } = rateAndEta(progress, total.rows, now() - startedAt, firstFinished ?? 0);
    const done = progress.total !== null && progress.finished >= progress.total;
    stream.write(`progress: ${formatCount(progress.finished)}/${total.text} rows, ${formatCount(progress.failed)} failed, ${formatCount(rate)} rows/s, ${done ? 'done' : `ETA ${formatEta(eta)}`}, cost ${formatUsd(progress.costUsd)}\n`);
  };
  return {
    update(progress) {
      firstFinished ??= progress.finished;
      latest = progress;
      const at = now();
      if (at - lastLine < plainEveryMs) return;
      lastLine = at;
      print(progress);
    },
    stop() {
      if (latest) print(latest);
    },
  };
}
