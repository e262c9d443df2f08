/**
 * `switchyard run` from the batch id to its exit code: prepare-batch.ts makes the batch ready, then
 * its rows are queued while this process's workers take them and its collector writes the outputs.
 */
import { setTimeout as delay } from 'node:timers/promises';
import { resolve } from 'node:path';
import type { Queue } from 'bullmq';
import type { Logger } from 'pino';
import type { SwitchyardConfig } from '../config/schema.ts';
import { describeRedisTrouble, exitCodeForSignal, RedisStoppedRunError, UsageError } from '../errors.ts';
import { checkInputFile } from '../input/read-rows.ts';
import type { InputRow } from '../input/row.ts';
import { carriedProgressFits, type CarriedTarget } from '../execution/carried-progress.ts';
import { rowTarget } from '../routing/row-target.ts';
import { comparedText } from '../routing/compare-fan-out.ts';
import type { BatchProgress } from '../queue/batch-state.ts';
import { batchIdRule, isValidBatchId, newBatchId } from '../queue/keys.ts';
import { enqueueBatch, type EnqueueCounts } from '../queue/producer.ts';
import { unqueueBatch, unqueueOrphanedBatches } from '../queue/unqueue-batch.ts';
import type { BatchLease } from '../queue/batch-lease.ts';
import { connectedWorkerCount, watchConnectedWorkers, workersConnectedText } from '../queue/connected-workers.ts';
import { outputPaths } from '../output/paths.ts';
import { openSession, type Session } from '../queue/session.ts';
import { orphanedBatchText, queuedAheadText, readText, redisStayedAwayText, releasedRowsText, stoppedText, unreadableFileText, unsentBodyFieldsText, unsentRequestFieldsText } from './run-messages.ts';
import { formatWait, REDIS_WAIT_ENV, whileRedisRefuses } from '../queue/redis-outage.ts';
import { NO_INPUT_FILE, sayJudgeAnswersToo } from './run-settings.ts';
import { prepareBatch, resumeCommand, type Held, type PreparedBatch } from './prepare-batch.ts';
import { namesNeedStoredConfig, refuseBadModelFlags, refuseUnknownNamesOfBatch } from './model-flag-checks.ts';
import { watchForStops, type RunStops } from './run-stops.ts';
import { collectAndReport } from './collect-and-report.ts';
import { batchExitCode } from '../output/report.ts';
import type { Report } from '../output/report-json.ts';
import { startSessionWorker } from '../../workers/session-worker.ts';
import type { PromptWorkerHandle } from '../../workers/prompt-worker.ts';
import { createBatchContexts, type BatchContexts } from '../../workers/batch-context.ts';
import { createCallSlots, type CallSlots } from '../execution/call-slots.ts';
import { limitHeapGrowth } from '../heap-growth.ts';
import { carryAnswersForJudge } from '../judge/rescore-answers.ts';
import { saysWhenStopped } from '../early-stop.ts';

export interface RunOptions {
  file?: string;
  config?: string;
  out?: string;
  concurrency?: number;
  model?: string;
  /** `auto` (route by task type) or a model name (every row that names none goes to it). */
  route?: string;
  /** A/B split: "a,b" or "a=0.8,b=0.2"; rows that name no model go to one by a hash of their id. */
  ab?: string;
  /** "a,b[,c...]": every row that names no model is put to each of these models, one row per model (compare-fan-out.ts). */
  compare?: string;
  /** USD cap for this batch (config budget.batch_usd otherwise). */
  budget?: number;
  /** A model that scores every answer (config judge.model otherwise). */
  judge?: string;
  /** false (`--no-cache`): the batch neither takes nor keeps answers in the config's answer cache; true (`--cache`) undoes an earlier run's false. */
  cache?: boolean;
  batchId?: string;
  resume?: string;
  promptColumn?: string;
  detach?: boolean;
}

export interface RunOutcome {
  exitCode: number;
  batchId: string;
  outDir: string;
}

/**
 * What a long-lived host process (`switchyard serve`) lends a run instead of letting it open its
 * own: its Redis session, its config, and a signal that stops the run as Ctrl-C stops the CLI's.
 */
export interface RunHost {
  session: Session;
  /** `builtIn`: the built-in models, on a simulator the host runs (a CLI resume starts its own). */
  config: { config: SwitchyardConfig; builtIn: boolean };
  /**
   * The host's config as its batches record it (`configFingerprint`, and where it comes from, for
   * messages): a server starting again goes on only with the batches posted with the same config.
   */
  serverConfig?: { fingerprint: string; from: string };
  stop: AbortSignal;
  /** Hands the batch's context to the host's own workers before its rows are queued (a batch on the built-in models only they can call). */
  prime?: BatchContexts['prime'];
  /**
   * Called once the file's first record is checked and the batch is saved, as its rows start to be
   * queued: the host answers its client then, while the run reads the rest of the file, never more
   * than `queue.max_pending` rows ahead of the workers.
   */
  onQueuing?: () => void;
  /**
   * Called once the whole file is read and its Read line and notes said, before the batch's row
   * count is saved: until then no collector can finish the batch, so what the host keeps of those
   * notes is there by the time the batch shows as finished.
   */
  onFileRead?: (counts: ReplacedRows) => Promise<void>;
}

/** Rows of the batch's last run that the file read now replaced (its Read line's counts of them). */
export interface ReplacedRows {
  /** Succeeded before, changed in the file since: they run again. */
  changedSinceSucceeded: number;
  /** In the last run's file, past this file's end or invalid in it now: left out of the outputs. */
  goneFromFile: number;
}

/** How long the rest of the file waits for this process's first calls to start (rows may park instead). */
const FIRST_CALLS_WAIT_MS = 1000;

/** What the stages of a run share. */
interface RunContext {
  options: RunOptions;
  session: Session;
  logger: Logger;
  say: (line: string) => void;
  host: RunHost | undefined;
  lease: BatchLease | null;
}

/**
 * `switchyard run` (and `demo`, and each batch posted to `serve`): one batch from its file to its
 * outputs, or only queued with `--detach`. Says what it does through `say`; bad usage, config or
 * input throws UsageError before anything is queued.
 */
export async function runBatch(options: RunOptions, logger: Logger, say: (line: string) => void, host?: RunHost): Promise<RunOutcome> {
  limitHeapGrowth();
  // Only a batch run before can go on without a file: a new one is refused before it gets an id (or the simulator starts).
  if (!options.file && options.resume === undefined && options.batchId === undefined) throw new UsageError(NO_INPUT_FILE);
  const batchId = options.resume ?? options.batchId ?? newBatchId();
  if (!isValidBatchId(batchId)) throw new UsageError(batchIdRule('batch id', batchId));
  // A mistyped path names no batch (nor starts the built-in models' simulator).
  if (options.file) await checkInputFile(resolve(options.file));
  // A flag refused (a misspelt model, --compare beside --ab) is a usage error, said before anything suggests a batch began.
  if (!host) await refuseBadModelFlags(options);
  // The id is said first, before Redis is found or started; only a batch named without --config has its flags'
  // names read first, against the config it keeps in Redis.
  const namesFromRedis = !host && namesNeedStoredConfig(options);
  if (!namesFromRedis) say(`Batch ${batchId}`);
  // Said by a Ctrl-C before the run's own stop handling is installed (early-stop.ts); whether the batch exists is known below.
  saysWhenStopped(options.resume === undefined && options.batchId === undefined ? `before anything was queued: batch ${batchId} was not created, so there is nothing to resume.` : 'before anything was queued or changed: the same command can simply be run again.');

  const session = host?.session ?? (await openSession(logger, say));
  const held: Held = { lease: null, simulator: null, reader: null };
  try {
    if (namesFromRedis) {
      await refuseUnknownNamesOfBatch(options, session.store, batchId);
      say(`Batch ${batchId}`);
    }
    const batch = await prepareBatch(batchId, options, session, held, say, host).catch(async (error: unknown) => {
      // The id was printed first: a refusal before the batch was saved says that it names nothing.
      if (host || !(error instanceof UsageError) || (await session.store.load(batchId).catch(() => undefined)) !== null) throw error;
      throw new UsageError(`${error.message}\nNothing was queued: batch ${batchId} was not created.`);
    });
    host?.onQueuing?.();
    // For log collectors (LOG_LEVEL=info, LOG_FORMAT=json): a batch's start and end as events of their own.
    logger.info({ batch: batchId, resumed: batch.resumed, out: batch.outDir }, `batch ${batchId} started`);
    const outcome = await runPreparedBatch(batch, { options, session, logger, say, host, lease: held.lease }).catch((error: unknown) => {
      // The batch is saved: its resume goes on (the same command makes a new batch without --batch-id).
      if (!host && error instanceof Error && describeRedisTrouble(error) !== null) throw new RedisStoppedRunError(batchId, error);
      throw error;
    });
    // A host's batch has only been read here: its rows run on, and the host writes its outputs (QA: "ended, exit_code 0" as it began).
    if (host) logger.info({ batch: batchId, out: outcome.outDir }, `batch ${batchId} queued`);
    else logger.info({ batch: batchId, exit_code: outcome.exitCode, out: outcome.outDir }, `batch ${batchId} ended`);
    return outcome;
  } finally {
    await held.reader?.return?.();
    await held.lease?.release();
    if (!host) await session.close();
    await held.simulator?.close();
  }
}

/** What a run has going while its rows are queued: this process's worker and collector (none when detached), and what stops them. */
interface Underway {
  queue: Queue;
  worker: PromptWorkerHandle | null;
  collecting: Promise<Report | null> | null;
  stops: RunStops;
}

/**
 * Queues the batch's rows while this process's workers take them and its collector writes their
 * results (all three side by side), then says how it went. A `--detach`ed run only queues.
 */
async function runPreparedBatch(batch: PreparedBatch, context: RunContext): Promise<RunOutcome> {
  const { options, session, say, host, lease } = context;
  const { batchId, config, outDir, concurrency } = batch;
  const queue = session.openPromptQueue();
  // Rows of batches whose run was killed would be run here, paid for and collected by nobody.
  if (!options.detach) {
    const start = await unqueueOrphanedBatches(queue, session.store, batchId);
    for (const [orphan, unqueued] of start.orphans) if (unqueued.removed > 0) say(orphanedBatchText(orphan, unqueued));
    // Other batches' queued rows (a --detach'ed batch's, a server's) share the workers here: a run slowed by them says why (QA: 10 rows took 25 s, unexplained).
    // This batch's own rows, left queued by an earlier run, are not among them.
    if (!batch.callsElsewhere && start.othersWaiting > 0) say(queuedAheadText(start.othersWaiting));
  }
  const callSlots = createCallSlots(concurrency);
  const worker = startWorker(batch, context, callSlots);
  let lastProgress: BatchProgress | null = null;
  // A Redis that goes away is waited for (the answers in hand recorded once it is back), up to the
  // session's limit; past it, the run says what is left and the resume that goes on (the same
  // command would make a new batch without --batch-id), for the rest of the command. A server's
  // runs wait on its terms.
  const waitLimitMs = session.redisWaitLimitMs;
  if (!host && waitLimitMs !== null) {
    const resume = resumeCommand(batchId, options);
    const during = `(a run waits ${formatWait(waitLimitMs)} for it: ${REDIS_WAIT_ENV})`;
    session.whenRedisStaysAway(resume, (awayMs) => {
      const text = options.detach
        ? `Redis at ${session.redisLabel} has not answered for ${Math.round(awayMs / 1000)} s ${during}: giving up.\nOnce it is back: ${resume} queues the rest of the file.`
        : redisStayedAwayText(session.redisLabel, batchId, during, awayMs, lastProgress);
      process.stderr.write(`switchyard: ${text}\n`);
      process.exit(3);
    });
  }
  const stops = watchForStops({ session, batchId, say, worker, collects: !options.detach, lease, hostStop: host?.stop, lastProgress: () => lastProgress });
  let stopWatchingWorkers = () => {};
  try {
    const collecting = options.detach
      ? null
      : collectAndReport({ session, batchId, startedAt: batch.startedAt, say, signal: stops.stopCollecting, drain: stops.drainCollector, stopping: stops.stopReading, config, onProgress: (progress) => (lastProgress = progress) });
    // Keep the collector's rejection observed while enqueueing; it is awaited below.
    collecting?.catch(() => undefined);
    if (collecting && batch.callsElsewhere) stopWatchingWorkers = await watchWorkersElsewhere(session, say);
    const underway: Underway = { queue, worker, collecting, stops };

    // Counted with the rows read (readText): "answered before but not scored by this judge".
    if (batch.rescoreWith?.all) say(`Note: the judge's instructions (judge.criteria or judge.reference_column) changed since the batch's last run: every answer is scored again by ${batch.rescoreWith.model} under them, without being answered again.`);
    if (batch.rescoreWith) await carryAnswersForJudge(session.store, batchId, outputPaths(outDir).results, batch.rescoreWith.model, batch.rescoreWith.all);
    const counts = await queueRows(batch, context, underway, callSlots);
    if (counts.stopped) return await endStoppedWhileReading(batch, context, underway);
    const compared = batch.compare && { compare_prompts: batch.compare.tally.prompts };
    const fileRead = () => session.store.update(batchId, { status: 'running', total: counts.total, invalid_rows: counts.invalid, invalid_codes: counts.invalidByCode, ...(counts.openAiBatchRows > 0 ? { input_kind: 'openai-batch' } : {}), ...compared });
    say(readText(counts, worker ? concurrency : batch.callsElsewhere ? 'elsewhere' : null, batch.compare));
    if (batch.compare) for (const line of comparedText(batch.compare.models, batch.compare.tally)) say(line);
    for (const note of [unsentBodyFieldsText(counts.unsentBodyFields), unsentRequestFieldsText(batch.position.unsentRequestFields), batch.capped.text()]) if (note) say(note);
    // Once the rows are known: a row's own model may send it to the judge, or keep every row from a route that does.
    sayJudgeAnswersToo(config, batch.answering, say);
    // The row count last: with it saved, the batch's last rows may finish it at once (a server's client saw it finished without its file_notes).
    await host?.onFileRead?.({ changedSinceSucceeded: counts.changedSinceSucceeded, goneFromFile: counts.goneFromFile });
    await whileRedisRefuses('queueing the file', fileRead, session.refusals);
    const workersNow = collecting ? null : await connectedWorkerCount(queue);
    await queue.close();

    if (!collecting) {
      // A --detach'ed resume that finds every row done has nothing for workers to do: it writes the outputs again itself, as
      // a resume does, rather than leave the batch running with nobody to collect it.
      const progress = !host && counts.enqueued === 0 ? await session.store.progress(batchId) : null;
      if (progress && progress.total !== null && progress.finished >= progress.total) {
        say('Every row is done: nothing for workers to do, so its outputs are written again here.');
        const report = await collectAndReport({ session, batchId, startedAt: batch.startedAt, say, config });
        if (report) return { exitCode: batchExitCode(report, counts.invalid), batchId, outDir };
      }
      return sayDetached(batchId, outDir, workersNow, say);
    }
    return await awaitReport(batch, context, { ...underway, collecting }, counts.invalid);
  } finally {
    stopWatchingWorkers();
    stops.stopListening();
  }
}

// CLIENT LIST once in a while: a stall of a run someone watches is said within seconds.
const WORKERS_ELSEWHERE_CHECK_MS = 5000;

/**
 * A run whose rows only other workers can call (it runs none of its own) says when no worker is
 * connected, at its start or later (its rows then wait, which the progress line alone shows only as
 * a stall), and when one is back. Returns a function that stops watching.
 */
async function watchWorkersElsewhere(session: Session, say: (line: string) => void): Promise<() => void> {
  const queue = session.openPromptQueue();
  const none = (since: string) =>
    `Warning: no worker is connected to this Redis ${since}: the rows left wait until one that has the models' keys runs. Start "switchyard worker" where they are set, with the same REDIS_URL and SWITCHYARD_PREFIX (or Ctrl-C: the outputs so far are written, and a resume runs the rest).`;
  const initial = await connectedWorkerCount(queue);
  if (initial === 0) say(none('now'));
  const stop = watchConnectedWorkers(queue, initial, WORKERS_ELSEWHERE_CHECK_MS, (now) => say(now === 0 ? none('any more') : `${workersConnectedText(now)} now: rows are being taken.`));
  return () => {
    stop();
    void queue.close().catch(() => undefined);
  };
}

/**
 * This process's worker (none for a `--detach`ed run), the batch's context primed for it; a
 * `--detach`ed batch on the built-in models has it primed for the host's workers instead.
 */
function startWorker(batch: PreparedBatch, context: RunContext, callSlots: CallSlots): PromptWorkerHandle | null {
  const { options, session, logger, say, host, lease } = context;
  const { batchId, config } = batch;
  const batches = createBatchContexts(session.store, { callSlots, monthSpend: session.monthSpend, refusals: session.refusals });
  // Built now, from the config in hand, while the worker connects.
  if (!options.detach) batches.prime(batchId, config, batch.model, batch.abSplit, batch.startedAt.getTime(), host !== undefined);
  else if (batch.builtIn) host?.prime?.(batchId, config, batch.model, batch.abSplit, batch.startedAt.getTime(), true);
  const worker = options.detach || batch.callsElsewhere
    ? null
    : startSessionWorker(session, {
        batches,
        logger,
        concurrency: batch.concurrency,
        lockMs: config.queue.lock_ms,
        onRowsOfDeadProcess: (released) => say(releasedRowsText(released, null, config.queue.lock_ms)),
      });
  void worker?.releasedFromDead.then((released) => {
    const text = releasedRowsText(released, lease?.tookOverFrom ?? null, config.queue.lock_ms);
    if (text) say(text);
  });
  return worker;
}

/** The file's rows into the queue, this process's workers taking them as they come (enqueueBatch). */
async function queueRows(batch: PreparedBatch, context: RunContext, underway: Underway, callSlots: CallSlots): Promise<EnqueueCounts> {
  const { options, host } = context;
  const { batchId, config, outDir, concurrency } = batch;
  const { queue, worker, stops } = underway;
  try {
    // Ended before a failure's stop (stopOnEnqueueError), which waits for it.
    return await enqueueBatch({
      queue,
      store: context.session.store,
      batchId,
      items: batch.items,
      errorsPath: `${outDir}/errors.jsonl`,
      chunkSize: config.queue.enqueue_chunk,
      resume: batch.resumed,
      fingerprintIds: batch.fingerprintIds,
      runStartedAt: batch.startedAt.getTime(),
      position: batch.position,
      // A --detach'ed run queues the whole file and exits; a host's run reads on as workers take rows.
      maxPending: options.detach && !host ? undefined : config.queue.max_pending,
      maxPendingBytes: config.queue.max_pending_mb * 1024 * 1024,
      localWorkers: worker ? { firstChunk: concurrency, untilStarted: (rows) => Promise.race([callSlots.started(rows), delay(FIRST_CALLS_WAIT_MS, undefined, { ref: false })]) } : undefined,
      signal: stops.stopReading,
      carriedFits: (row, progress, answered) => carriedProgressFits(progress, carriedTarget(row, batch), answered),
      refusals: context.session.refusals,
    }).finally(stops.readingEnded);
  } catch (error) {
    return await stopOnEnqueueError(error, batchId, context, underway);
  }
}

/**
 * A file that turns unreadable part-way (an unclosed quote near the end): the rows before it
 * may already be queued. Stop as Ctrl-C does: the calls in flight finish, the rows still
 * queued come off the queue (else the next run of another batch takes them off as a killed
 * run's), keeping what they had for the run of the fixed file, and the outputs and summary
 * of the rows finished so far are written. Any other failure stops the collector without writing.
 */
async function stopOnEnqueueError(error: unknown, batchId: string, context: RunContext, underway: Underway): Promise<never> {
  const { session, host } = context;
  const { queue, worker, collecting, stops } = underway;
  // A run that collects its batch stops as Ctrl-C does; a --detach'ed one has nothing to write.
  const unreadable = collecting !== null && error instanceof UsageError;
  if (!unreadable) stops.abortCollecting();
  await worker?.close();
  const unqueued = unreadable ? await unqueueBatch(queue, session.store, batchId).catch(() => 'failed' as const) : null;
  await queue.close();
  if (unreadable) stops.drainCollecting();
  await collecting?.catch(() => null);
  if (error instanceof UsageError) {
    const next = `fix the file and run the same command again (--batch-id ${batchId}) to finish without repeating them`;
    // So that `status` says why the batch stopped, not to resume it as it is (that stops again).
    // A server records its own, in the API's terms (batch-start.ts).
    if (!host) await session.store.update(batchId, { input_error: `${error.message.split('\n', 1)[0]!}; rows before it may be done: ${next}` }).catch(() => undefined);
    throw new UsageError(`${error.message}\n${await unreadableFileText(session, batchId, unqueued)} ${next[0]!.toUpperCase()}${next.slice(1)}.`);
  }
  throw error;
}

/** Interrupted while reading the file: its row count is not known yet, so none is recorded. */
async function endStoppedWhileReading(batch: PreparedBatch, context: RunContext, underway: Underway): Promise<RunOutcome> {
  const { queue, worker, collecting } = underway;
  await queue.close();
  // A stop resolves the collector with null: a rejection is its own failure (a full disk), said once the workers are closed.
  const collected = await (collecting ?? Promise.resolve(null)).then((report) => ({ report, failure: null }), (failure: unknown) => ({ report: null, failure }));
  await worker?.close();
  if (collected.failure) throw collected.failure;
  return await stoppedOutcome(batch, context, underway.stops, collected.report);
}

/** A run stopped early: where the batch stands, said when a stop (rather than a failure) ended it. */
async function stoppedOutcome(batch: PreparedBatch, context: RunContext, stops: RunStops, report: Report | null): Promise<RunOutcome> {
  const { batchId, outDir } = batch;
  if (stops.stoppedBy()) context.say(await stoppedText(context.session, batchId, report, stops.unqueued()));
  return { exitCode: exitCodeForSignal(stops.stoppedBy()), batchId, outDir };
}

/** A `--detach`ed run, its rows queued: who will take them (`workersNow`: the workers connected to the queue), and how to write the outputs. */
function sayDetached(batchId: string, outDir: string, workersNow: number | null, say: (line: string) => void): RunOutcome {
  if (workersNow !== null && workersNow > 0) say(`Detached; ${workersConnectedText(workersNow)} to this Redis and will take its rows. Write the outputs with "switchyard collect ${batchId}".`);
  else say(`Detached. Start workers with "switchyard worker" and write the outputs with "switchyard collect ${batchId}".`);
  return { exitCode: 0, batchId, outDir };
}

/** Waits for the collector's report, every row queued, and ends the run with it; this process's worker (if any) closes either way. */
async function awaitReport(batch: PreparedBatch, context: RunContext, underway: Underway & { collecting: Promise<Report | null> }, invalidRows: number): Promise<RunOutcome> {
  const { worker, stops } = underway;
  try {
    const report = await underway.collecting;
    // Stopped early; a stop that came as the last row finished still ends the batch as usual.
    if (report === null || report.totals.unfinished_rows !== 0) {
      await worker?.close();
      return await stoppedOutcome(batch, context, stops, report);
    }
    // A split no row took part in (every row names its model) is said, or the missing A/B table would be a puzzle.
    if (batch.abSplit && report.totals.rows > 0 && Object.keys(report.ab_arms ?? {}).length === 0) {
      context.say('Note: no row went to an A/B arm: every row names its own model (its model column or field), which --ab leaves as it is.');
    }
    return { exitCode: batchExitCode(report, invalidRows), batchId: batch.batchId, outDir: batch.outDir };
  } finally {
    await worker?.close();
  }
}

/** How this run sends a row, to tell whether answers a stopped run left for it still suit it. */
function carriedTarget(row: InputRow, batch: PreparedBatch): CarriedTarget {
  const { name, ensemble } = rowTarget(row, batch.config, batch.abSplit, batch.model);
  return { model: name, ensembleMembers: ensemble?.config.members ?? null, judged: batch.config.judge !== undefined };
}
