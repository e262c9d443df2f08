import { MultiBar } from 'cli-progress';
import type { BatchProgress } from '../queue/batch-state.ts';
import { formatUsd } from '../models/pricing.ts';
import { formatClockTime, formatCount, formatDuration } from '../figure-text.ts';
import { FinishRate } from './finish-rate.ts';
import { barLine, wrapToWidth, type BarFigures } from './bar-line.ts';
import { sendLinesToBar } from './terminal-lines.ts';

/**
 * Shows a running batch: a bar on a terminal, a plain line every few seconds otherwise (CI logs,
 * pipes). Rates and ETA count the rows finished over the last 20 s (since the first update until
 * then; 2 s after a stall of 15 s or more ended, since its end, and no ETA in those 2 s), so the
 * caller gives the first one as the display starts (rows a resumed batch finished before then do
 * not count). When no row has finished for a while the ETA says so instead of
 * growing, and plain lines that would repeat the last one come every 30 s, not every few seconds;
 * the moment a stall begins to show (15 s) gets its line, so a log shows it as it happens.
 */
export interface ProgressDisplay {
  update(progress: BatchProgress): void;
  /**
   * The run is stopping (Ctrl-C): it says so where the ETA was, until it stops, with how long it
   * has waited once that is as long as a stall; no stall line meanwhile (rows stop finishing on purpose).
   */
  stopping(): void;
  stop(): void;
}

const RATE_WINDOW_MS = 20_000;
/**
 * No ETA from less than this much measuring: the first row's answer a fraction of a second in
 * made "1 row in 0.3 s" an ETA of ten minutes for a batch that took ten seconds.
 */
const MIN_ETA_SPAN_MS = 2000;
/** Plain output: a line with the same rows finished as the last one waits this long. */
const PLAIN_UNCHANGED_EVERY_MS = 30_000;
/** No row finished for this long: the ETA gives way to how long it has been. */
const STALLED_AFTER_MS = 15_000;

export interface ProgressDisplayOptions {
  /** Plain output: at most one line per this many ms (and one at stop). */
  plainEveryMs?: number;
  /** No model the batch may call has a price: its cost is unknown, not $0. */
  unpriced?: boolean;
  /** Plain output as JSON lines, pino's shape with the figures as fields (LOG_FORMAT=json: stderr stays one JSON object a line). */
  json?: boolean;
  /** Plain lines end with the time of day they were written (", at 02:30:15 UTC"): the CLI's, read in logs. */
  clock?: boolean;
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

interface Figures {
  rows: number | null;
  totalText: string;
  rate: number;
  etaText: string;
}

function figuresOf(progress: BatchProgress, finishRate: FinishRate, at: number): Figures {
  const { rows, text } = totalOf(progress);
  const rate = finishRate.perSecond(at);
  const idle = finishRate.idleMs(at);
  const remaining = rows === null ? NaN : rows - progress.finished;
  const eta = rate > 0 && finishRate.spanMs(at) >= MIN_ETA_SPAN_MS ? (remaining / rate) * 1000 : NaN;
  let etaText = Number.isFinite(eta) && eta >= 0 ? formatDuration(eta) : '?';
  if (idle >= STALLED_AFTER_MS && remaining !== 0) etaText = `? (no row finished for ${formatDuration(idle)})`;
  return { rows, totalText: text, rate, etaText };
}

/** A slow batch (a judge at 30 calls a minute) finishes rows well under one a second: "0.3", not "0". */
function rateText(rowsPerSecond: number): string {
  return formatCount(rowsPerSecond, rowsPerSecond < 10 ? 1 : 0);
}

export function createProgressDisplay(stream: NodeJS.WritableStream & { isTTY?: boolean }, options: ProgressDisplayOptions = {}): ProgressDisplay {
  const { plainEveryMs = 5000, now = Date.now } = options;
  const costText = (progress: BatchProgress) => formatUsd(options.unpriced ? null : progress.costUsd);
  const startedAt = now();
  let finishRate: FinishRate | null = null;
  /** When stopping() came, null before. */
  let stoppingSince: number | null = null;
  /** Where the ETA goes: done, stopping, or the ETA. */
  const etaPart = (done: boolean, etaText: string, at: number) => {
    if (done) return 'done';
    if (stoppingSince === null) return `ETA ${etaText}`;
    // A stop that waits on slow calls says for how long, so it does not look hung; the stall text would say only that no row finished, which is the point of stopping.
    const waited = at - stoppingSince;
    return `stopping: the calls in flight finish${waited >= STALLED_AFTER_MS ? ` (${formatDuration(waited)} so far)` : ''}`;
  };
  /** Every update feeds the rate; the first is where it counts from. */
  const figures = (progress: BatchProgress, at: number) => {
    if (finishRate) finishRate.observe(progress.finished, at);
    else finishRate = new FinishRate(RATE_WINDOW_MS, startedAt, progress.finished, undefined, STALLED_AFTER_MS, MIN_ETA_SPAN_MS);
    return figuresOf(progress, finishRate, at);
  };
  if (stream.isTTY) {
    // A MultiBar of one bar, for its log(): lines said while the bar is up print above it (terminal-lines.ts).
    // The line is fitted to the terminal's width at each redraw (bar-line.ts), so a resize is followed.
    const bars = new MultiBar({ format: (_options, params, payload) => barLine(params.progress, payload as BarFigures, params.maxWidth), hideCursor: true, stream, fps: 5 });
    // A terminal that reports no size (0 columns: `script`, some `docker exec -t`) gets 80, not lines cut at every word.
    const columns = () => (stream as { columns?: number }).columns || 80;
    let bar: ReturnType<MultiBar['create']> | null = null;
    return {
      update(progress) {
        const at = now();
        const { rows, totalText, rate, etaText } = figures(progress, at);
        const done = rows !== null && progress.total !== null && progress.finished >= rows;
        const payload: BarFigures = {
          rows: `${formatCount(progress.finished)}/${totalText} rows`,
          failed: `${formatCount(progress.failed)} failed`,
          eta: etaPart(done, etaText, at),
          cost: costText(progress),
          rate: `${rateText(rate)} rows/s`,
        };
        const total = rows ?? Math.max(progress.finished, 1);
        if (!bar) {
          bar = bars.create(total, progress.finished, payload);
          sendLinesToBar((text) => bars.log(wrapToWidth(text, columns())));
        } else {
          bar.setTotal(total);
          bar.update(progress.finished, payload);
        }
      },
      stopping() {
        stoppingSince ??= now();
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
  let lastLineAt = startedAt;
  let lastLineFinished: number | null = null;
  /** What the last line showed, so that stop() does not print it again (the run's last read often printed it just now). */
  let lastLine: { progress: BatchProgress; stopping: boolean } | null = null;
  let latest: BatchProgress | null = null;
  let stallShown = false;
  const print = (progress: BatchProgress, at: number) => {
    const { totalText, rate, etaText } = figures(progress, at);
    const done = progress.total !== null && progress.finished >= progress.total;
    // Done before the first reading (a short batch, a resume with little to do): no rate was measured, and "0 rows/s" would say the rows never moved.
    const ratePart = done && rate === 0 ? '' : `${rateText(rate)} rows/s, `;
    const clock = options.clock && !options.json ? `, at ${formatClockTime(at)}` : '';
    const line = `progress: ${formatCount(progress.finished)}/${totalText} rows, ${formatCount(progress.failed)} failed, ${ratePart}${etaPart(done, etaText, at)}, cost ${costText(progress)}${clock}`;
    const fields = { finished: progress.finished, total: progress.total, failed: progress.failed, rows_per_second: Math.round(rate * 10) / 10, cost_usd: options.unpriced ? null : progress.costUsd };
    stream.write(options.json ? `${JSON.stringify({ level: 30, time: at, ...fields, msg: line })}\n` : `${line}\n`);
    lastLineAt = at;
    lastLineFinished = progress.finished;
    lastLine = { progress, stopping: stoppingSince !== null };
  };
  return {
    update(progress) {
      const at = now();
      const { etaText } = figures(progress, at);
      latest = progress;
      const unchanged = progress.finished === lastLineFinished;
      // While stopping the line does not show the stall, so it gets no line of its own.
      const stalled = stoppingSince === null && etaText.startsWith('? (no row finished');
      if (!stalled) stallShown = false;
      if (stalled && !stallShown) {
        stallShown = true;
        print(progress, at);
      } else if (at - lastLineAt >= (unchanged ? PLAIN_UNCHANGED_EVERY_MS : plainEveryMs)) print(progress, at);
    },
    stopping() {
      stoppingSince ??= now();
    },
    stop() {
      if (latest && (latest !== lastLine?.progress || (stoppingSince !== null) !== lastLine.stopping)) print(latest, now());
    },
  };
}
