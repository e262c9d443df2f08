import type { Logger } from 'pino';
import { formatUsd, noModelPriced } from '../models/pricing.ts';
import { postAgainWayOut, SERVER_MONTH_CAP } from '../limits/budget-way-out.ts';
import { formatAbSplit } from '../routing/ab-split.ts';
import { counted, formatCount } from '../figure-text.ts';
import { UsageError } from '../errors.ts';
import { jsonWithControlsEscaped } from '../control-characters.ts';
import { DamagedBatchError, isFinishedStatus, type BatchMeta, type BatchProgress, type BatchStatus } from '../queue/batch-state.ts';
import { noBatchMessage, openSession, type Session } from '../queue/session.ts';
import { apiCancellingBatchesKey } from '../queue/keys.ts';
import { holderName, leaseHolderAlive } from '../queue/batch-lease.ts';
import { totalOf } from '../progress/progress-display.ts';
import { connectedWorkerCount, workersConnectedText } from '../queue/connected-workers.ts';
import { workerProcesses } from '../queue/worker-registry.ts';
import { readWrittenReport } from '../output/write-report.ts';
import { batchView } from '../api/batch-view.ts';
import { lateCallsText, lateEventCount } from '../output/late-calls.ts';
import { batchWaitingNow, batchWaitingText, type BatchWaiting } from '../queue/batch-waiting.ts';

const RECENT = 10;

interface BatchState {
  meta: BatchMeta;
  progress: BatchProgress;
  /** "host pid N" of the process collecting it now (its lease), if any; only read for one batch. */
  runBy?: string | null;
  /** Worker processes connected to the queue (null: Redis does not say); only read for one unfinished batch. */
  workers?: number | null;
  /** "host pid N" of the worker processes on record (worker-registry.ts); only read for one unfinished batch. */
  workerNames?: string[];
  /** Rows in the outputs a stopped run wrote before the batch finished (report.json); only read for one unfinished batch. */
  rowsWrittenSoFar?: number | null;
  /** Rows whose answers an earlier run kept for a resume (carried-rows.ts); only read for one batch. */
  keptAnswers?: number;
  /** Submitted over the HTTP API (`switchyard serve` goes on with it); only read for one batch. */
  overApi?: boolean;
  /** No model of its config has a price: its cost is unknown, not $0. */
  unpriced?: boolean;
  /** A cancel over the HTTP API is under way (its rows in hand finishing); only read for one batch. */
  cancelling?: boolean;
  /** Rows' events published after a finished batch's outputs were written (late-calls.ts); only read for one finished batch. */
  lateEvents?: number;
  /** Why its rows wait, as a worker last said it, while current (batch-waiting.ts); only read for one unfinished batch. */
  waiting?: BatchWaiting | null;
}

/** `switchyard status [batch id]`: one batch in detail, or a table of the most recent ones. */
export async function runStatusCommand(batchId: string | undefined, logger: Logger, say: (line: string) => void, options: { json?: boolean } = {}): Promise<number> {
  const session = await openSession(logger, say);
  try {
    if (batchId) {
      const keys = session.store.keys(batchId);
      const [state, runBy, keptAnswers, overApi, unpriced, cancelling] = await Promise.all([
        session.store.loadWithProgress(batchId),
        leaseHolder(session, batchId),
        session.redis.hlen(keys.carried),
        session.redis.exists(keys.submittedOverApi),
        unpricedBatch(session, batchId),
        session.redis.sismember(apiCancellingBatchesKey(session.space), batchId),
      ]);
      if (!state) throw new UsageError(noBatchMessage(session, batchId));
      const finished = isFinishedStatus(state.meta.status);
      const [workers, workerNames, rowsWrittenSoFar, waiting] = finished
        ? [undefined, undefined, undefined, null]
        : await Promise.all([connectedWorkerCount(session.openPromptQueue()), workerProcesses(session.redis, session.space), outputsSoFar(state.meta), batchWaitingNow(session.redis, keys, state.progress.finished)]);
      const lateEvents = finished ? await lateEventCount(session.store, batchId) : 0;
      const described: BatchState = { ...state, runBy, workers, ...(workerNames ? { workerNames } : {}), rowsWrittenSoFar, keptAnswers, overApi: overApi === 1, unpriced, cancelling: cancelling === 1, lateEvents, waiting };
      if (options.json) say(jsonWithControlsEscaped(JSON.stringify(statusJson(described), null, 2)));
      else for (const line of describeBatch(described)) say(line);
      return 0;
    }
    const [ids, count] = await Promise.all([session.store.recentBatchIds(RECENT), session.store.batchCount()]);
    // An id whose keys were deleted by hand is left out rather than failing the whole list; one
    // whose record is damaged (deleted while in use) is named after the table.
    const damaged: string[] = [];
    const loadListed = (id: string) =>
      session.store.loadWithProgress(id).catch((error: unknown) => {
        if (!(error instanceof DamagedBatchError)) throw error;
        damaged.push(id);
        return null;
      });
    const loaded = (await Promise.all(ids.map(loadListed))).filter((state): state is BatchState => state !== null);
    const sayDamaged = () => {
      if (damaged.length > 0) say(`Left out, their records in Redis damaged (\`switchyard status <id>\` says more): ${damaged.join(', ')}`);
    };
    if (loaded.length === 0) {
      sayDamaged();
      say(`No batches in Redis at ${session.redisLabel} (key prefix "${session.space.prefix}", SWITCHYARD_PREFIX).`);
      return 0;
    }
    // Unfinished ones: is anything working on them? One lease read each, one worker count for all.
    const unfinished = loaded.some((state) => !isFinishedStatus(state.meta.status));
    const workers = unfinished ? await connectedWorkerCount(session.openPromptQueue()) : null;
    const states = await Promise.all(
      loaded.map(async (state) => {
        const unpriced = await unpricedBatch(session, state.meta.batch_id);
        return isFinishedStatus(state.meta.status) ? { ...state, unpriced } : { ...state, unpriced, runBy: await leaseHolder(session, state.meta.batch_id), workers };
      }),
    );
    if (options.json) {
      say(jsonWithControlsEscaped(JSON.stringify(states.map(statusJson), null, 2)));
      return 0;
    }
    for (const line of batchTable(states, count)) say(line);
    sayDamaged();
    return 0;
  } finally {
    await session.close();
  }
}

/** The rows in the outputs of an unfinished batch, written when a run of it was stopped; null when there are none. */
async function outputsSoFar(meta: BatchMeta): Promise<number | null> {
  // One that is not the batch's report (edited, another tool's, from before unfinished_rows existed) counts as none: collect says what is wrong with it.
  const report = await readWrittenReport(meta.out_dir, meta.batch_id).catch(() => null);
  return report && report.totals.unfinished_rows !== 0 ? report.totals.rows : null;
}

/** Whether no model of the batch's config has a price (a config unreadable here counts as priced). */
async function unpricedBatch(session: Session, batchId: string): Promise<boolean> {
  const stored = await session.store.loadConfig(batchId).catch(() => null);
  return stored !== null && noModelPriced(stored.config);
}

/** "host pid N" of the process holding the batch's lease (running or collecting it); null when the lease is free, or held by a process of this machine that died (it lapses within seconds). */
async function leaseHolder(session: Session, batchId: string): Promise<string | null> {
  const lease = await session.redis.get(session.store.keys(batchId).lease);
  return lease === null || leaseHolderAlive(lease) === false ? null : holderName(lease);
}

/**
 * `status --json`: the batch as the HTTP API shows it (docs/api.md), less the API's links, with
 * what `status` adds: `state` (the status, `stopped while running` or the like when nothing works on it),
 * the process running it, the workers connected, the cap a budget stop met, and the next step.
 */
export function statusJson(state: BatchState): Record<string, unknown> {
  const { meta, progress, runBy, workers, overApi = false, unpriced = false, cancelling = false, lateEvents = 0, waiting = null } = state;
  const { files: _files, links: _links, ...view } = batchView(meta, progress, new Set(), cancelling, null, waiting);
  const beingCancelled = cancelling && !isFinishedStatus(meta.status);
  return {
    ...view,
    cost_usd: unpriced ? null : view.cost_usd,
    state: beingCancelled ? `${meta.status}, cancelling` : statusText(meta.status, runBy, workers, meta.detached),
    // As README says it: started with --detach. A batch posted to `serve` is queued that way too, but its server collects it.
    detached: overApi ? false : (meta.detached ?? null),
    over_api: overApi,
    run_by: runBy ?? null,
    workers: workers ?? null,
    // Kept in the batch's meta after a resume finished it: it tells of the last run's stop alone.
    budget_stop: meta.status === 'budget_exceeded' ? (meta.budget_stop ?? null) : null,
    // Rows finished again after the outputs were written, whose calls `collect` adds to them.
    late_rows: lateEvents,
    next: nextText(state),
  };
}

/** The lines `status <batch id>` prints. */
export function describeBatch({ meta, progress, runBy, workers, workerNames = [], rowsWrittenSoFar = null, keptAnswers = 0, overApi = false, unpriced = false, cancelling = false, lateEvents = 0, waiting = null }: BatchState): string[] {
  // The API says "cancelling" from the cancel's request to its end; status says the same.
  const beingCancelled = cancelling && !isFinishedStatus(meta.status);
  const lines = [
    `${meta.batch_id}  ${beingCancelled ? `${meta.status}, cancelling` : withInvalidRows(statusText(meta.status, runBy, workers, meta.detached), meta)}`,
    `  rows      ${formatCount(progress.finished)}/${totalOf(progress).text} finished: ${formatCount(progress.succeeded)} succeeded, ${formatCount(progress.failed)} failed; ${formatCount(meta.invalid_rows)} invalid${invalidReasons(meta)}`,
    `  cost      ${formatUsd(unpriced ? null : progress.costUsd)}${meta.budget_usd === undefined ? '' : ` of a ${formatUsd(meta.budget_usd)} budget`}`,
    ...runChoices(meta, overApi),
    `  input     ${meta.input}`,
    `  output    ${meta.out_dir}${rowsWrittenSoFar === null ? '' : ` (the ${counted(rowsWrittenSoFar, 'row')} finished when a run or collect of it stopped; all of them once it finishes)`}`,
    // When the batch started; a resume's start is said beside it (each run of the batch sets started_at).
    `  started   ${timestamp(meta.created_at)}${meta.started_at && timestamp(meta.started_at) !== timestamp(meta.created_at) ? `, last run started ${timestamp(meta.started_at)}` : ''}${meta.finished_at ? `, finished ${timestamp(meta.finished_at)}` : ''}`,
    ...(waiting ? [`  waiting   ${batchWaitingText(waiting)}`] : []),
    ...(lateEvents > 0 ? [`  late      ${lateCallsText(lateEvents)}: \`switchyard collect ${meta.batch_id}\` adds them`] : []),
    ...(keptAnswers > 0 ? [`  kept      the answers of ${counted(keptAnswers, 'row')} (stopped waiting for a judge or synthesis, not scored, or an ensemble row that failed after some members answered): \`switchyard run --resume ${meta.batch_id}\` goes on from them`] : []),
  ];
  const names = workerNames.length > 0 ? ` (${workerNames.join(', ')})` : '';
  if (typeof workers === 'number') lines.push(`  workers   ${workersConnectedText(workers)} to this Redis${workers === 0 ? ' (rows finish only while one runs)' : names}`);
  // A Redis that will not list its clients (some managed ones): the processes on record say it instead.
  else if (workers === null && workerNames.length > 0) lines.push(`  workers   ${counted(workerNames.length, 'worker process')} on record: ${workerNames.join(', ')}`);
  const next = nextText({ meta, runBy, workers, overApi, cancelling });
  if (next) lines.push(`  next      ${next}`);
  return lines;
}

/** What to do next with the batch, or null when nothing is to be done (status's `next` line, status --json's `next`). */
function nextText({ meta, runBy, workers, overApi = false, cancelling = false }: Pick<BatchState, 'meta' | 'runBy' | 'workers' | 'overApi' | 'cancelling'>): string | null {
  if (cancelling && !isFinishedStatus(meta.status)) {
    return `being cancelled over the HTTP API: its queued rows come off the queue, the rows in hand finish, then its outputs are written${runBy ? ` (by ${runBy})` : ' (by the server, when it runs again)'}`;
  }
  // What to do follows who runs the batch now: a posted batch last run by `switchyard run --resume` goes on that way.
  return nextLine(meta, runBy, workers, overApi && meta.served !== false);
}

/** The models a run chose for the batch (--model, --ab, --compare, --judge), and --no-cache, which its resume keeps: a line each, or none (`overApi`: said in the API's terms). */
function runChoices(meta: BatchMeta, overApi: boolean): string[] {
  const choices = [
    ...(meta.model_override ? [`rows that name no model go to ${meta.model_override} (--model)`] : []),
    ...(meta.ab_split ? [`A/B split ${formatAbSplit(meta.ab_split)} (--ab)`] : []),
    ...(meta.compare ? [`rows that name no model go to each of ${meta.compare.join(', ')} (--compare)`] : []),
    ...(meta.ab_splits_before ? [`rows answered before kept their arms of ${meta.ab_splits_before.map(formatAbSplit).join(', then ')}`] : []),
    ...(meta.judge_model ? [`answers scored by ${meta.judge_model} (--judge)`] : []),
  ];
  return [
    ...(choices.length > 0 ? [`  models    ${choices.join('; ')}`] : []),
    ...(meta.cache_off ? [`  cache     off for this batch (${overApi ? 'cache=false; posted again with cache=true' : '--no-cache; a resume with --cache'} turns it on)`] : []),
  ];
}

/** The lines `status` prints: one row per batch, newest first. */
export function batchTable(states: BatchState[], count: number): string[] {
  const header = ['BATCH', 'STATUS', 'ROWS', 'FAILED', 'COST', 'STARTED (UTC)'];
  const rows = states.map(({ meta, progress, runBy, workers, unpriced }) => [
    meta.batch_id,
    withInvalidRows(statusText(meta.status, runBy, workers, meta.detached), meta),
    `${formatCount(progress.finished)}/${totalOf(progress).text}`,
    formatCount(progress.failed + meta.invalid_rows),
    unpriced ? 'n/a' : formatUsd(progress.costUsd),
    timestamp(meta.created_at),
  ]);
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => row[column]?.length ?? 0)));
  const line = (cells: string[]) => `  ${cells.map((cell, column) => cell.padEnd(widths[column] ?? 0)).join('  ').trimEnd()}`;
  const shown = count > states.length ? `the ${states.length} most recent of ${count}` : `${states.length}`;
  return [`Batches: ${shown}, newest first (FAILED counts invalid rows too; \`switchyard status <batch id>\` for one).`, line(header), ...rows.map(line)];
}

/**
 * An unfinished batch that nothing works on says so ("stopped while running": an interrupted run that
 * needs its resume, its stored status the stage it stopped in, as "running, stopped" read as both at
 * once (QA); "running, no worker": a --detach batch whose rows wait for one); one whose rows
 * workers take but nobody collects, "running, not collected". A batch run without --detach whose
 * run is gone is stopped whatever workers there are: its rows came off the queue with its run (or
 * do when the next run or worker meets them).
 */
function statusText(status: BatchStatus, runBy?: string | null, workers?: number | null, detached?: boolean): string {
  if (isFinishedStatus(status) || runBy !== null || workers === undefined) return status;
  if (detached === false) return `stopped while ${status}`;
  if (workers === 0) return detached === true ? `${status}, no worker` : `stopped while ${status}`;
  return workers === null ? status : `${status}, not collected`;
}

/**
 * "completed, 2 invalid rows": a finished batch whose file had rows refused as it was read says so
 * beside its status (QA: "completed" beside a FAILED count of rows that never ran read as a batch
 * with nothing wrong, or as failures of its calls). Not in status --json's `state`, which scripts
 * compare: `rows.invalid` counts them there.
 */
function withInvalidRows(text: string, meta: BatchMeta): string {
  return isFinishedStatus(meta.status) && meta.invalid_rows > 0 ? `${text}, ${counted(meta.invalid_rows, 'invalid row')}` : text;
}

/** " (bad_json 3, bad_encoding 1; see errors.jsonl)" when the producer recorded why rows were invalid. */
function invalidReasons(meta: BatchMeta): string {
  const codes = Object.entries(meta.invalid_codes ?? {}).sort(([, a], [, b]) => b.rows - a.rows);
  return codes.length === 0 ? '' : ` (${codes.map(([code, entry]) => `${code} ${formatCount(entry.rows)}`).join(', ')}; see errors.jsonl)`;
}

/** What to do next about the batch, the cases that override its status first. */
function nextLine(meta: BatchMeta, runBy: string | null | undefined, workers: number | null | undefined, overApi: boolean): string | null {
  // A file that could not be read to its end waits for the fixed one, whatever else is going on.
  if (meta.input_error) return `its file could not be read to its end: ${meta.input_error}`;
  // A server that stops goes on with the unfinished batches it was given when started again.
  // Only a server with the config it was posted with goes on with it (open-batches.ts): say which.
  if (overApi && runBy === null && !isFinishedStatus(meta.status)) {
    const config = meta.server_config_from ? ` with the config it was posted with (${meta.server_config_from}), on the same Redis and SWITCHYARD_PREFIX,` : ' again (same Redis and SWITCHYARD_PREFIX),';
    return `no server is running it: start \`switchyard serve\`${config} and it goes on with it`;
  }
  // A batch posted over the API goes on by being posted again: its client may have no shell on the server.
  if (overApi) {
    const again = `posting its file again with batch_id=${meta.batch_id}`;
    if (meta.status === 'completed_with_failures') return `${again} runs the failed rows again (the succeeded ones are kept)`;
    if (meta.status === 'budget_exceeded') {
      return meta.budget_stop === 'month' ? `the month's cap stopped it: ${postAgainWayOut('month', meta.batch_id)}` : `${postAgainWayOut('batch', meta.batch_id)} (if the month's cap stopped it: ${SERVER_MONTH_CAP})`;
    }
    if (meta.status === 'completed' && meta.invalid_rows > 0) return `fix the invalid rows in its file, then post it again with batch_id=${meta.batch_id}: only they run`;
  }
  if (meta.status === 'budget_exceeded' && meta.budget_stop === 'month') {
    return `the month's cap stopped it: \`switchyard run --resume ${meta.batch_id} --config <a config with a higher budget.monthly_usd>\` finishes it (or the same next month)`;
  }
  return nextStep(meta.batch_id, meta.status, meta.invalid_rows, runBy, workers, meta.detached);
}

/**
 * `runBy`: the process collecting the batch now; null when none is; undefined when not looked up.
 * `workers`: worker processes connected to the queue; null when Redis does not say.
 */
function nextStep(batchId: string, status: BatchStatus, invalidRows: number, runBy?: string | null, workers?: number | null, detached?: boolean): string | null {
  switch (status) {
    case 'enqueuing':
    case 'running':
    case 'finalizing':
      // A process holding the batch with no worker anywhere is a `collect`: `run` has workers of its own.
      if (runBy && workers === 0) return `${runBy} waits to write its outputs, but no worker takes its rows: start \`switchyard worker\` (with the same REDIS_URL and SWITCHYARD_PREFIX)`;
      // A --detach batch's process is its collector: the workers do the calls.
      if (runBy) return detached === true ? `in progress: workers take its rows, and ${runBy} collects its outputs` : `in progress, run by ${runBy}`;
      if (runBy === null && detached === false) {
        // A run killed outright leaves its queued rows to whoever meets them first: connected workers may still be running (and paying for) some.
        const meanwhile = typeof workers === 'number' && workers > 0 ? ' (if it was killed outright rather than stopped, the workers connected may still finish some rows it left queued; their answers are kept, not paid for again)' : '';
        return `its run stopped before the end: \`switchyard run --resume ${batchId}\` finishes it${meanwhile}`;
      }
      if (runBy === null && typeof workers === 'number' && workers > 0) {
        return `workers are taking its rows, but no process collects it: \`switchyard collect ${batchId}\` writes its outputs (or \`switchyard run --resume ${batchId}\` finishes it in one process)`;
      }
      if (runBy === null && workers === 0 && detached === true) {
        return `its rows wait for a worker, and none is connected: start \`switchyard worker\` (same REDIS_URL and SWITCHYARD_PREFIX) and \`switchyard collect ${batchId}\` to write its outputs, or \`switchyard run --resume ${batchId}\` to finish it in one process`;
      }
      if (runBy === null && workers === 0) {
        return `nothing is working on it: \`switchyard run --resume ${batchId}\` finishes it (or, for a --detach batch, start \`switchyard worker\` and \`switchyard collect ${batchId}\`)`;
      }
      if (runBy === null) {
        return `no process is running it: \`switchyard run --resume ${batchId}\` finishes it (for a --detach batch with workers elsewhere, \`switchyard collect ${batchId}\` writes its outputs)`;
      }
      return `in progress; if its run process has stopped, finish it with \`switchyard run --resume ${batchId}\``;
    case 'completed_with_failures':
      return `\`switchyard run --resume ${batchId}\` runs the failed rows again (the succeeded ones are kept)`;
    case 'budget_exceeded':
      return `\`switchyard run --resume ${batchId} --budget <more USD>\` finishes it (when the month's cap stopped it, resume with a --config that raises budget.monthly_usd)`;
    case 'cancelled':
      return `cancelled over the HTTP API, its outputs holding the rows finished before: posting its file again with batch_id=${batchId}, or \`switchyard run --resume ${batchId}\`, runs the rest`;
    case 'completed':
      return invalidRows > 0 ? `fix the invalid rows in place in its input, then \`switchyard run --resume ${batchId}\` runs them` : null;
  }
}

/** 2026-12-01T22:23:05.305Z -> 2026-12-01 22:23:05 (UTC, to the second). */
function timestamp(iso: string): string {
  return iso.replace('T', ' ').replace(/\.\d+Z$|Z$/, '');
}
