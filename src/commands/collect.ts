import { stat } from 'node:fs/promises';
import type { Logger } from 'pino';
import { counted } from '../figure-text.ts';
import { readWrittenReport } from '../output/write-report.ts';
import { batchExitCode, reportModels } from '../output/report.ts';
import { isFinishedStatus, type BatchMeta } from '../queue/batch-state.ts';
import { LostOutputError, refuseLostCollectedFiles } from '../output/collected-files.ts';
import { rewriteMissingOutputs } from '../output/finalize-batch.ts';
import { outputPaths, type OutputPaths } from '../output/paths.ts';
import { appendLateCalls, lateEventCount } from '../output/late-calls.ts';
import { exitCodeForSignal, UsageError } from '../errors.ts';
import { collectAndReport } from '../batch/collect-and-report.ts';
import { noBatchMessage, openSession, type Session } from '../queue/session.ts';
import { acquireBatchLease, type BatchLease } from '../queue/batch-lease.ts';
import { limitHeapGrowth } from '../heap-growth.ts';
import { endEarlyStop } from '../early-stop.ts';
import { exitWhenRedisStaysAway } from '../queue/redis-stays-away.ts';
import { connectedWorkerCount, watchConnectedWorkers, workersConnectedText } from '../queue/connected-workers.ts';

/** How often a waiting collect looks whether workers came or went. */
const WORKER_CHECK_MS = 5_000;
const START_WORKER = 'start "switchyard worker" here or on another machine, with the same REDIS_URL and SWITCHYARD_PREFIX';

/**
 * A finished batch: its outputs are left as they are, those missing written again (see
 * rewriteMissingOutputs); a collected file lost for good stops it with what that means (exit 2).
 */
async function checkFinishedOutputs(session: Session, meta: BatchMeta, say: (line: string) => void): Promise<number> {
  const config = (await session.store.loadConfig(meta.batch_id))?.config;
  const baselineModel = config?.report.baseline_model;
  const baselinePrice = baselineModel ? config?.models[baselineModel]?.price : undefined;
  const paths = outputPaths(meta.out_dir);
  const late = await addLateCalls(session, meta, paths);
  const found = await rewriteMissingOutputs({ store: session.store, meta, paths, outDir: meta.out_dir, baseline: baselineModel && baselinePrice ? { model: baselineModel, price: baselinePrice } : undefined, reportModels: reportModels(config) });
  if (late > 0) {
    found.rewritten = found.rewritten.filter((name) => !name.startsWith('report.'));
    say(`Added to costs.jsonl: ${counted(late, 'call')} of rows finished again after the outputs were written (a worker paused past queue.lock_ms while another did them); report.json and report.md count them now.`);
  }
  const written = await readWrittenReport(meta.out_dir, meta.batch_id);
  const status = meta.status.replaceAll('_', ' ');
  // With a file lost, "its outputs are in" would be contradicted by the error that follows.
  if (written && found.lost.length > 0) say(`${meta.batch_id} is already ${status}: ${written.totals.succeeded} of ${written.totals.rows} rows succeeded, but its outputs in ${meta.out_dir} are not whole (see below).`);
  else if (written) say(`${meta.batch_id} is already ${status}: ${written.totals.succeeded} of ${written.totals.rows} rows succeeded. Its outputs are in ${meta.out_dir} (report.md for the summary).`);
  else say(`${meta.batch_id} is already ${status}. Its outputs are in ${meta.out_dir}, but report.json is missing and cannot be made again without the files below.`);
  if (found.rewritten.length > 0) say(`Written again, as they were missing: ${found.rewritten.join(', ')}.`);
  for (const note of found.notes) say(note);
  if (found.lost.length > 0) {
    const again = `"switchyard collect ${meta.batch_id}" writes the outputs made from ${found.lost.length === 1 ? 'it' : 'them'} again`;
    throw new LostOutputError(meta, found.lost, again, `batch ${meta.batch_id}'s outputs are not whole`);
  }
  return written ? batchExitCode(written, meta.invalid_rows) : 1;
}

/** The calls of rows finished after the outputs were written (late-calls.ts), added when costs.jsonl is whole; how many. */
async function addLateCalls(session: Session, meta: BatchMeta, paths: OutputPaths): Promise<number> {
  if ((await lateEventCount(session.store, meta.batch_id)) === 0) return 0;
  const collected = await session.redis.hget(session.store.keys(meta.batch_id).checkpoint, 'costs_bytes');
  if (collected === null) return 0;
  const collectedBytes = Number(collected);
  // A costs.jsonl shorter than collected has lost records (rewriteMissingOutputs says so): nothing is added to it.
  if (((await stat(paths.costs).catch(() => null))?.size ?? -1) < collectedBytes) return 0;
  return appendLateCalls(session.store, meta.batch_id, paths);
}

/**
 * A batch started without --detach whose run is gone (collect holds its lease): its rows left came
 * off the queue with its run, or wait for a resume, so no worker would finish them while collect waited.
 */
function stoppedRunText(batchId: string, rowsLeft: number | null, total: number | null): string {
  const left = rowsLeft === null ? 'before its file was read to the end' : `with ${rowsLeft} of its ${total} rows not done`;
  return (
    `batch ${batchId} was started by "switchyard run" (not --detach), and its run stopped ${left}: those rows are left for its resume, not for workers, so collect would wait for ever. ` +
    `"switchyard run --resume ${batchId}" finishes it and writes its outputs (add --detach to leave its rows to workers, then collect it).`
  );
}

/** `switchyard collect <batch id>`: writes a detached batch's outputs once its workers finish it. */
export async function runCollectCommand(batchId: string, logger: Logger, say: (line: string) => void): Promise<number> {
  limitHeapGrowth();
  const session = await openSession(logger, say);
  const stop = new AbortController();
  const drain = new AbortController();
  let stoppedBy: NodeJS.Signals | null = null;
  // Ctrl-C or SIGTERM: write the outputs of the rows finished so far, then stop.
  let stopWatchingRedis = () => {};
  const onSignal = (signal: NodeJS.Signals) => {
    stoppedBy = signal;
    drain.abort();
    session.outages.stopping(signal);
    stopWatchingRedis = exitWhenRedisStaysAway(session, signal, `The outputs of the rows finished so far are not written; "switchyard collect ${batchId}" goes on once Redis is back.`);
  };
  // In the tick its own handling is installed: no signal comes between the two.
  endEarlyStop();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  let lease: BatchLease | null = null;
  let stopWatching = () => {};
  const queue = session.openPromptQueue();
  try {
    const state = await session.store.loadWithProgress(batchId);
    if (!state) throw new UsageError(noBatchMessage(session, batchId));
    const { meta, progress } = state;
    lease = await acquireBatchLease(session.redis, session.store.keys(batchId).lease, batchId);
    // Written already: left as it is (collecting again would only retime its report to now);
    // outputs deleted since are written again, as far as the files they are made from are whole.
    if (isFinishedStatus(meta.status)) return await checkFinishedOutputs(session, meta, say);
    lease.lost.addEventListener('abort', () => stop.abort());
    // Before saying what it waits for: results or call records collected before and lost since stop it (exit 2).
    await refuseLostCollectedFiles(session.store, meta, outputPaths(meta.out_dir), 'run the same command again');
    const rowsLeft = progress.total === null ? null : progress.total - progress.finished;
    if (rowsLeft !== 0 && !meta.detached) throw new UsageError(stoppedRunText(batchId, rowsLeft, progress.total));
    if (rowsLeft !== 0) {
      const left = rowsLeft === null ? 'its rows are still being enqueued' : `${rowsLeft} of its ${progress.total} rows are not done yet`;
      const workers = await connectedWorkerCount(queue);
      if (workers === null) say(`Collecting ${batchId}: ${left}. The outputs are written once workers ("switchyard worker", here or elsewhere) have finished them.`);
      else if (workers === 0) say(`Collecting ${batchId}: ${left}, and no worker is connected to this Redis: rows finish only while one runs, so ${START_WORKER}. The outputs are written once every row is done.`);
      else say(`Collecting ${batchId}: ${left}; ${workersConnectedText(workers)}. The outputs are written once they have finished them.`);
      // Workers that stop (or start) while we wait are said once, not left to a silent progress line.
      stopWatching = watchConnectedWorkers(queue, workers, WORKER_CHECK_MS, (now) =>
        say(now === 0 ? `No worker is connected any more: the rows left wait until one runs; ${START_WORKER}.` : `${workersConnectedText(now)} now: rows are being taken.`),
      );
    }
    const report = await collectAndReport({ session, batchId, startedAt: new Date(meta.started_at ?? meta.created_at), say, signal: stop.signal, drain: drain.signal, endsAtLastRow: true });
    if (!report || report.totals.unfinished_rows !== 0) {
      const soFar = report ? ` The outputs above hold the ${counted(report.totals.rows, 'row')} finished so far.` : '';
      say(`\nStopped.${soFar} Nothing is lost: "switchyard collect ${batchId}" goes on from here${report ? ' and writes them whole' : ''}.`);
      return exitCodeForSignal(stoppedBy);
    }
    return batchExitCode(report, meta.invalid_rows);
  } finally {
    stopWatching();
    stopWatchingRedis();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await lease?.release();
    await session.close();
  }
}
