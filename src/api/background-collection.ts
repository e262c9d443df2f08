import type { SwitchyardConfig } from '../config/schema.ts';
import { collectAndReport } from '../batch/collect-and-report.ts';
import { LostOutputError, shortFileText } from '../output/collected-files.ts';
import { RedisWentBackError } from '../output/collector.ts';
import type { Session } from '../queue/session.ts';
import { DamagedBatchError } from '../queue/batch-state.ts';
import { formatUsd } from '../models/pricing.ts';
import { counted, formatClockSpan, formatClockTime, formatCount, formatDuration } from '../figure-text.ts';
import type { Report } from '../output/report-json.ts';
import type { BatchLease } from '../queue/batch-lease.ts';
import { apiCancellingBatchesKey, apiOpenBatchesKey } from '../queue/keys.ts';
import { totalOf } from '../progress/progress-display.ts';
import { connectedWorkerCount } from '../queue/connected-workers.ts';
import { batchWaitingNow, batchWaitingText, waitingKind } from '../queue/batch-waiting.ts';

/**
 * The collectors a server runs, one per submitted batch, side by side: each is the batch's one
 * writer (it holds the batch's lease) and writes its outputs once every row is done. Stopped, a
 * collector leaves its checkpoint in Redis and the batch in the open set, and the next server to
 * start goes on from there.
 */
export interface BackgroundCollection {
  /** Collects a batch whose lease this process holds; the lease is released when it ends. */
  start(batchId: string, lease: BatchLease, batch: CollectedBatch): void;
  isCollecting(batchId: string): boolean;
  /** Resolves once the batch's collector (if any) has ended and let its lease go. */
  whenCollected(batchId: string): Promise<void>;
  /**
   * Writes a batch's outputs now, for the rows finished so far (the report counts the rest as not
   * run), and ends its collector. The report, or null when it was not being collected here.
   * `closeEarly` gets the report when rows are left unfinished, before the collector lets go of the
   * batch's lease: what it writes is done before the batch can be posted again (one posted at the
   * first sight of the status it writes would otherwise have its writes after the new run's).
   */
  finishEarly(batchId: string, closeEarly: (report: Report) => Promise<void>): Promise<Report | null>;
  /** Ends a batch's collector without writing outputs (its file could not be read to the end). */
  abandon(batchId: string): Promise<void>;
  /** Stops every collector, without writing outputs for the rows done so far. */
  stop(): Promise<void>;
  /** Told of a batch whose Redis state went back in time while collected (its lease released): the rows Redis forgot must be queued again. */
  onRolledBack(handler: (batchId: string) => void): void;
}

export interface CollectedBatch {
  outDir: string;
  /** When the run being collected started (the report's clock). */
  startedAt: Date;
  /** The batch's config when the caller has it; otherwise it is read from Redis. */
  config?: SwitchyardConfig;
}

/** How often the server says how far each batch it collects has got (when it moved), with the time of day. */
const PROGRESS_EVERY_MS = 30_000;

export function createBackgroundCollection(session: Session, say: (line: string) => void, progressEveryMs = PROGRESS_EVERY_MS): BackgroundCollection {
  const stopAll = new AbortController();
  const running = new Map<string, { drain: AbortController; abandon: AbortController; done: Promise<Report | null>; saidFinished: number | null; closeEarly?: (report: Report) => Promise<void> }>();

  // Long batches show progress: one line per batch whose rows moved since the last one. A batch
  // whose rows do not move while no worker is connected (serve --no-worker) says why, once.
  let queue: ReturnType<Session['openPromptQueue']> | null = null;
  const toldNoWorker = new Set<string>();
  // The reason (its kind: figures left out) last said of each batch whose rows did not move.
  const toldWaiting = new Map<string, string>();
  const progressTick = async () => {
    const stalled: string[] = [];
    for (const [batchId, collector] of running) {
      const progress = await session.store.progress(batchId).catch(() => null); // Redis away: the outage is said once elsewhere
      if (!progress || collector.drain.signal.aborted) continue;
      // Why its rows wait, which the workers (maybe on other machines) keep on the batch: the log says it too.
      const waiting = await batchWaitingNow(session.redis, session.store.keys(batchId), progress.finished).catch(() => null); // advice only
      const because = waiting ? `; ${batchWaitingText(waiting)}` : '';
      // Nothing said yet: a batch with no row done has not moved.
      if (progress.finished === (collector.saidFinished ?? 0)) {
        if (progress.total === null || progress.finished < progress.total) stalled.push(batchId);
        // Not moving while it waits: said once per reason, not every tick.
        if (waiting && toldWaiting.get(batchId) !== waitingKind(waiting.reason)) {
          toldWaiting.set(batchId, waitingKind(waiting.reason));
          const total = progress.total === null ? '' : ` of ${formatCount(progress.total)}`;
          say(`[${batchId}] ${formatCount(progress.finished)}${total} rows done, at ${formatClockTime(Date.now())}${because}`);
        }
        continue;
      }
      if (waiting) toldWaiting.set(batchId, waitingKind(waiting.reason));
      else toldWaiting.delete(batchId);
      const before = collector.saidFinished;
      collector.saidFinished = progress.finished;
      // "~N" while the file is still being read: the producer's estimate from the bytes read so far.
      const { rows, text } = totalOf(progress);
      const total = rows === null ? '' : ` of ${text}`;
      const failed = progress.failed > 0 ? ` (${formatCount(progress.failed)} failed)` : '';
      const perSecond = before === null ? null : ((progress.finished - before) * 1000) / progressEveryMs;
      // A slow batch (a row every few seconds) reads "0.2 rows/s", not "0 rows/s".
      const rate = perSecond === null ? '' : `, ${formatCount(perSecond, perSecond < 10 ? 1 : 0)} rows/s`;
      // When, as run's plain progress lines say it: a server's log runs for days, its batches side by side.
      say(`[${batchId}] ${formatCount(progress.finished)}${total} rows done${failed}, ${formatUsd(progress.costUsd)} so far${rate}, at ${formatClockTime(Date.now())}${because}`);
    }
    if (stalled.length === 0) return;
    const workers = await connectedWorkerCount((queue ??= session.openPromptQueue()));
    if (workers !== 0) {
      toldNoWorker.clear();
      return;
    }
    for (const batchId of stalled) {
      if (toldNoWorker.has(batchId)) continue;
      toldNoWorker.add(batchId);
      say(`[${batchId}] No worker is connected to this Redis: its rows wait until one runs ("switchyard worker" with the same REDIS_URL and SWITCHYARD_PREFIX).`);
    }
  };
  let ticking = false;
  const progressLines = setInterval(() => {
    if (ticking) return;
    ticking = true;
    void progressTick().finally(() => (ticking = false));
  }, progressEveryMs);
  progressLines.unref();

  async function collect(batchId: string, lease: BatchLease, drain: AbortSignal, abandon: AbortSignal, { outDir, startedAt, config }: CollectedBatch): Promise<Report | null> {
    let rolledBack = false;
    try {
      const report = await collectAndReport({
        session,
        batchId,
        startedAt,
        // The run's multi-line summary is for a terminal; a server taking many batches says one line each.
        say: () => undefined,
        signal: AbortSignal.any([stopAll.signal, lease.lost, abandon]),
        drain,
        // Only a cancel drains a batch here (finishEarly): its report says it was cancelled.
        drainIsCancel: true,
        progressStream: null,
        resumeHint: 'api',
        ...(config ? { config } : {}),
      });
      if (report && report.totals.unfinished_rows === 0) {
        // A cancel that came as its last rows finished is over too: cleared while the lease is held, a post of the batch at once is not taken for it.
        await session.redis.multi().srem(apiOpenBatchesKey(session.space), batchId).srem(apiCancellingBatchesKey(session.space), batchId).exec();
        say(`[${batchId}] ${finishedLine('Finished', report, outDir)}`);
      } else if (lease.lost.aborted) say(`[${batchId}] Another process took over this batch's outputs while Redis was unreachable; it writes them.`);
      else if (report) await running.get(batchId)?.closeEarly?.(report);
      return report;
    } catch (error) {
      if (error instanceof RedisWentBackError) {
        rolledBack = true;
        say(`[${batchId}] Redis came back with older data than it had (${error.finishedBefore} rows finished before, ${error.finishedNow} now): queuing the rows it forgot again from the batch's file (those it had answered are paid for again). Keep every write with appendonly yes and appendfsync always.`);
        return null;
      }
      // The batch stays open: once the files are back, the next server to start collects it again.
      if (error instanceof LostOutputError) {
        say(`[${batchId}] Writing the outputs stopped: ${error.short.map(shortFileText).join(' ')} Put ${error.short.length === 1 ? 'it' : 'them'} back, then restart the server; or post the file again as a new batch.`);
        return null;
      }
      // No restart brings back what Redis lost (QA: the log said "Restart the server to try again" after the
      // message that says to post the file as a new batch).
      if (error instanceof DamagedBatchError) {
        say(`[${batchId}] Stopped: ${error.forApi()}`);
        return null;
      }
      // The batch stays open: the next server to start collects it again.
      say(`[${batchId}] Writing the outputs stopped: ${error instanceof Error ? error.message : String(error)}. Restart the server to try again; nothing written is lost.`);
      return null;
    } finally {
      await lease.release();
      running.delete(batchId);
      toldNoWorker.delete(batchId); // a --no-worker server that never sees a worker kept every batch's id
      toldWaiting.delete(batchId);
      if (rolledBack) rolledBackHandler?.(batchId);
    }
  }

  let rolledBackHandler: ((batchId: string) => void) | null = null;
  return {
    onRolledBack(handler) {
      rolledBackHandler = handler;
    },
    start(batchId, lease, batch) {
      const drain = new AbortController();
      const abandon = new AbortController();
      running.set(batchId, { drain, abandon, done: collect(batchId, lease, drain.signal, abandon.signal, batch), saidFinished: null });
    },
    isCollecting: (batchId) => running.has(batchId),
    async whenCollected(batchId) {
      await running.get(batchId)?.done;
    },
    async finishEarly(batchId, closeEarly) {
      const collector = running.get(batchId);
      if (!collector) return null;
      collector.closeEarly = closeEarly;
      collector.drain.abort();
      return collector.done;
    },
    async abandon(batchId) {
      const collector = running.get(batchId);
      collector?.abandon.abort();
      await collector?.done;
    },
    async stop() {
      clearInterval(progressLines);
      stopAll.abort();
      await Promise.all([...running.values()].map((collector) => collector.done));
    },
  };
}

/**
 * "Finished: 24 of 24 rows succeeded, 26 calls, $0.00110, in 557 ms (2026-12-05 02:30:01 to 02:30:02 UTC); outputs in out/t1."
 * (", 3 of them run by this post" when posted again): when, as run's summary says it on its Time line.
 */
export function finishedLine(what: string, report: Report, outDir: string): string {
  const { totals } = report;
  // The budget is the usual reason for many failures at once, and the one re-posting with a higher `budget` fixes.
  const overBudget = report.errors.budget_exceeded ?? 0;
  const failed = totals.failed > 0 ? ` (${formatCount(totals.failed)} failed${overBudget > 0 ? `, ${formatCount(overBudget)} of them at the budget: posting the file again with a higher budget finishes them` : ''})` : '';
  // Rows refused as the file was read: "2 of 2 rows succeeded" alone read as a batch with nothing wrong (QA).
  const invalid = totals.invalid_rows > 0 ? `, ${counted(totals.invalid_rows, 'invalid row')} not run` : '';
  // null: stopped while its file was still being read, so how many rows are left is not known.
  const notRun = totals.unfinished_rows === null ? ', the rest of its file not run' : totals.unfinished_rows > 0 ? `, ${counted(totals.unfinished_rows, 'row')} not run` : '';
  // Posted again, the totals are the batch's and the time this post's: say how many rows it ran.
  const thisPost = totals.rows_this_run < totals.rows ? `, ${formatCount(totals.rows_this_run)} of them run by this post` : '';
  const span = formatClockSpan(report.started_at, report.finished_at);
  const rows = totals.rows === 0 ? 'no row finished' : `${formatCount(totals.succeeded)} of ${counted(totals.rows, 'row')} succeeded`;
  return `${what}: ${rows}${failed}${notRun}${thisPost}${invalid}, ${counted(totals.calls, 'call')}, ${formatUsd(totals.cost_usd)}, in ${formatDuration(totals.elapsed_ms)}${span ? ` (${span})` : ''}; outputs in ${outDir}.`;
}
