import { DelayedError, UnrecoverableError, Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { createPromptProcessor, promptJobSchema, recordCallsOfLostClaim, type PromptJob } from '../jobs/prompt.ts';
import { rowsHeldFor } from '../src/execution/call-slots.ts';
import type { RowInput } from '../src/execution/row-runner.ts';
import { crashedRowStep } from '../src/execution/row-result.ts';
import { freshProgress, markSavedCalls, type RowProgress } from '../src/execution/row-progress.ts';
import { publishRowEvent } from '../src/output/row-events.ts';
import type { FinishedRow } from '../src/progress/worker-activity.ts';
import { isRedisRefusal, whileRedisRefuses, type RefusalWait } from '../src/queue/redis-outage.ts';
import { apiOpenBatchesKey, batchKeys, parsePromptJobId, promptJobKey, PROMPT_QUEUE, type KeySpace } from '../src/queue/keys.ts';
import type { BatchContexts } from './batch-context.ts';
import { registerWorker, releaseRowsOfDeadWorkers, type ReleasedRows } from '../src/queue/worker-registry.ts';
import { BatchStore } from '../src/queue/batch-state.ts';
import { holdsJobClaim, saveWhileHeld } from '../src/queue/job-claim.ts';
import { keepClockAtParkedRow, rowClockKey } from '../src/queue/row-priority.ts';
import { isOrphaned, withdrawJobData } from '../src/queue/unqueue-batch.ts';

export interface PromptWorkerOptions {
  /** ioredis connection for BullMQ's blocking reads (maxRetriesPerRequest: null). */
  connection: Redis;
  /** Connection for publishing results. */
  redis: Redis;
  space: KeySpace;
  batches: BatchContexts;
  logger: Logger;
  /** Model calls in flight at once; BullMQ holds a few more rows (see execution/call-slots.ts). */
  concurrency: number;
  lockMs: number;
  /** Called for each row this worker finishes (for a progress tally). */
  onRowFinished?: (finished: FinishedRow) => void;
  /** Told when rows of a worker process on this machine that died are handed back after start. */
  onRowsOfDeadProcess?: (released: ReleasedRows) => void;
  /** Where the Worker's own errors go (a lost Redis among them); logged when not given. */
  onWorkerError?: (source: string, error: Error) => void;
  /** Writes a full Redis refuses (a row's result, a parked row's progress) are waited out this long, said through the outage watch. */
  refusals?: RefusalWait;
  /** Told when a batch's budget refuses a call for good (batch-context.ts): the host wakes the batch's parked rows. */
  onBudgetSpent?: (batchId: string | null) => void;
}

/**
 * Hosts the prompt processor on a BullMQ Worker. A row that must wait (rate-limit slot, backoff)
 * is parked as a delayed job, which frees the worker slot and does not use up an attempt. A worker
 * that dies mid-row loses nothing: after `lockMs` BullMQ's stalled check hands the row to another,
 * or at once when the next worker process on the same machine starts (worker-registry.ts).
 */
export interface PromptWorkerHandle {
  worker: Worker;
  /** Rows of worker processes on this machine that died, handed back to the queue at start. */
  releasedFromDead: Promise<ReleasedRows>;
  close(): Promise<void>;
}

const DEAD_PROCESS_SWEEP_MS = 5000;
/** Times a row's claim may be lost (its worker stalled) before BullMQ gives the row up. */
const STALLED_LIMIT = 3;

export function startPromptWorker(options: PromptWorkerOptions): PromptWorkerHandle {
  const { logger } = options;
  const store = new BatchStore(options.redis, options.space);
  const processJob = createPromptProcessor({
    redis: options.redis,
    space: options.space,
    batches: options.batches,
    logger,
    orphanedRows: { isOrphaned: (batchId) => isOrphaned(store, batchId), withdraw: (job, noted) => withdrawJobData(store, job.batchId, job, noted) },
    // A batch submitted to a server that is stopped is not gone: that server goes on with it when it starts again.
    runGone: async (batchId) => (await isOrphaned(store, batchId)) && (await options.redis.sismember(apiOpenBatchesKey(options.space), batchId)) === 0,
    ...(options.refusals ? { refusals: options.refusals } : {}),
  });
  if (options.onBudgetSpent) options.batches.whenBudgetSpent(options.onBudgetSpent);
  // The job went to another worker while this one held it: its calls are recorded, the row left to that worker.
  const handedOver = async (data: PromptJob) => {
    const costNanos = await recordCallsOfLostClaim(options.redis, options.space, data, options.refusals);
    options.onRowFinished?.({ batchId: data.batchId, row: 'handed-over', costNanos });
  };
  const worker = new Worker(
    PROMPT_QUEUE,
    async (job: Job, token?: string) => {
      // Only while this worker still holds the job: one paused past its lock (a laptop asleep) must not overwrite the data of the worker that took the job over.
      const jobKey = promptJobKey(options.space, job.id ?? '');
      // Known held since: BullMQ renews the lock every lockMs / 2, so within a third of it nothing needs asking; a worker woken from a pause finds this long past.
      let heldAt = Date.now();
      const saveData = async (data: PromptJob) => {
        // Every save names its calls (checkpoint, park, crash), so every copy of the job names them alike.
        if (data.progress) markSavedCalls(data.progress, data.row);
        if (token === undefined) await job.updateData(data);
        else if (!(await saveWhileHeld(options.redis, jobKey, token, data))) return false;
        // As updateData does: BullMQ's 'failed' handler reads the job as this worker last saved it (publishCrashedRow).
        job.data = data;
        heldAt = Date.now();
        return true;
      };
      const holdsClaim = async () => {
        if (token === undefined || Date.now() - heldAt < options.lockMs / 3) return true;
        if (!(await holdsJobClaim(options.redis, jobKey, token))) return false;
        heldAt = Date.now();
        return true;
      };
      const outcome = await processJob(job.data, { jobId: job.id, queuedAt: job.timestamp, redelivered: job.stalledCounter > 0 || job.attemptsMade > 0, saveData, holdsClaim });
      if (outcome.kind === 'park') {
        // A parked row holds the calls it paid for: a full Redis is waited out, not the row failed and run again.
        if (!(await whileRedisRefuses('parking a row', () => saveData(outcome.data), options.refusals))) return handedOver(outcome.data);
        // The clock beside the move, best effort: it orders batches fairly, and a row parks again whatever became of it.
        const clockKept = keepClockAtParkedRow(options.redis, rowClockKey(worker), job.priority).catch(() => undefined);
        await whileRedisRefuses('parking a row', () => job.moveToDelayed(Date.now() + outcome.waitMs, token), options.refusals);
        await clockKept;
        throw new DelayedError();
      }
      if (outcome.kind === 'crashed') {
        // Best effort: with Redis away this fails too, and those calls go unrecorded.
        if (outcome.data && !(await saveData(outcome.data).catch(() => true))) return handedOver(outcome.data);
        throw outcome.error;
      }
      options.onRowFinished?.(outcome);
    },
    {
      connection: options.connection,
      prefix: options.space.prefix,
      concurrency: rowsHeldFor(options.concurrency),
      lockDuration: options.lockMs,
      stalledInterval: Math.max(1000, Math.floor(options.lockMs / 2)),
      maxStalledCount: STALLED_LIMIT,
    },
  );

  // A Redis refusing writes (out of memory, say) fails every row alike: that goes to the outage
  // watch, which says it once, rather than a log line per row.
  const reportFailure = (message: string, error: unknown, fields: Record<string, unknown>) => {
    // A job whose keys are gone (Redis came back without them, or they were deleted): every row in
    // hand says so at once; the collector's damaged-batch message says it once, with what to do.
    if (isMissingJobKey(error)) {
      logger.debug({ ...fields, err: error }, message);
      return;
    }
    if (options.onWorkerError && isRedisRefusal(error)) {
      logger.debug({ ...fields, err: error }, message);
      options.onWorkerError(message, error as Error);
    } else logger.error({ ...fields, err: error }, message);
  };

  // Model failures never throw (they become failed results); only infrastructure errors reach
  // here. Once BullMQ gives up on such a job, the row still gets a failed result, so the batch ends.
  worker.on('failed', (job, error) => {
    if (!job) return;
    // BullMQ retries none after an UnrecoverableError (a row whose claim was lost too often), whatever attempts are left.
    const retried = (job.opts.attempts ?? 1) > job.attemptsMade && !(error instanceof UnrecoverableError);
    reportFailure('prompt job crashed', error, { job: job.id, attemptsLeft: retried });
    if (retried) return;
    void publishCrashedRow(options, job, error).catch((publishError: unknown) => reportFailure('could not record crashed row', publishError, { job: job.id }));
  });
  const lapsedClaims = lapsedClaimsNote(logger);
  worker.on('error', (error) => {
    if (isMissingJobKey(error)) logger.debug({ err: error }, 'worker error');
    else if (isLapsedLock(error)) lapsedClaims(error);
    else if (options.onWorkerError) options.onWorkerError('worker', error);
    else logger.error({ err: error }, 'worker error');
  });

  const registration = registerWorker(options.redis, options.space, worker.id);
  const handBack = () =>
    releaseRowsOfDeadWorkers(options.redis, options.space, worker).catch((error: unknown) => {
      logger.debug({ err: error }, 'could not hand back the rows of a dead worker process; they come back when their locks expire');
      return { rowsFrom: new Map<string, number>(), dead: [] };
    });
  const releasedFromDead = handBack();
  // A worker process beside this one may die later (kill -9, out of memory): look every few seconds.
  const sweep = setInterval(() => {
    void handBack().then((released) => {
      if (released.rowsFrom.size === 0) return;
      if (options.onRowsOfDeadProcess) options.onRowsOfDeadProcess(released);
      else logger.warn({ rows: Object.fromEntries(released.rowsFrom) }, 'handed back the rows of a worker process that died on this machine');
    });
  }, DEAD_PROCESS_SWEEP_MS);
  sweep.unref();
  return {
    worker,
    releasedFromDead,
    async close() {
      clearInterval(sweep);
      // Rows in hand that have not called yet (waiting for a call slot, or between retries) park
      // for whoever runs them next, instead of holding the stop up by a call or more each.
      options.batches.stopCalls();
      await worker.close();
      await registration.unregister();
    },
  };
}

/** BullMQ's word that a job's lock lapsed (Redis was away longer than it, or the process stalled): the job is delivered again. */
export function isLapsedLock(error: unknown): boolean {
  return error instanceof Error && /^Missing lock for job |could not renew lock for job|^Lock mismatch for job /i.test(error.message);
}

/** How often the lapsed-claims warning is said again while they go on. */
const LAPSED_CLAIMS_NOTE_MS = 60_000;

/**
 * Lapsed claims come by the dozen after an outage, each harmless: the row's job is delivered again,
 * and its result is recorded once (its publish checks the row). One warning a minute says so,
 * with the count, instead of an error line per job.
 */
export function lapsedClaimsNote(logger: Logger, now: () => number = Date.now): (error: Error) => void {
  let count = 0;
  let saidAt = -Infinity;
  return (error) => {
    count++;
    logger.debug({ err: error }, 'worker error');
    if (now() - saidAt < LAPSED_CLAIMS_NOTE_MS) return;
    saidAt = now();
    logger.warn({ lapsed_claims: count }, "rows' claims lapsed (Redis was away, or this process stalled, longer than --lock-ms): their jobs are delivered again, and each row's result is still recorded once");
  };
}

/** BullMQ's error for a job whose keys are gone from Redis. */
function isMissingJobKey(error: unknown): boolean {
  return error instanceof Error && /^Missing key for job /.test(error.message);
}

async function publishCrashedRow(options: PromptWorkerOptions, job: Job, error: Error): Promise<void> {
  const crashed = crashedRowOf(job, error);
  if (!crashed) return;
  const step = crashedRowStep(crashed.row, crashed.progress, crashed.error);
  if (step.kind === 'finished') await publishRowEvent(options.redis, batchKeys(options.space, crashed.row.batchId), step.event, step.costNanos, crashed.fingerprint, job.id === undefined ? undefined : { id: job.id, timestamp: job.timestamp });
}

/**
 * The row a job BullMQ gave up on stands for, and why it failed. Data this version cannot read
 * (queued by another version of Switchyard, say) still gives the row its failed result, from what
 * the job's id says, or its batch would never finish; null for a job id that is no row's.
 */
function crashedRowOf(job: Job, error: Error): { row: RowInput; progress: RowProgress; fingerprint: number | undefined; error: Error } | null {
  const parsed = promptJobSchema.safeParse(job.data);
  if (parsed.success) {
    const lost = /stalled more than allowable limit/.test(error.message)
      ? new Error(`its claim on the row was lost ${STALLED_LIMIT + 1} times (a worker too busy or paused to renew it within queue.lock_ms / --lock-ms); run the batch again with --resume`)
      : error;
    return { row: parsed.data, progress: parsed.data.progress ?? freshProgress(), fingerprint: parsed.data.fingerprint, error: lost };
  }
  const fromId = job.id ? parsePromptJobId(job.id) : null;
  if (!fromId) return null;
  const unreadable = new Error(`its job's data could not be read (${parsed.error.issues[0]?.message ?? 'not a prompt job'}): queued by another version of Switchyard? Run the batch again with --resume, which queues it anew`);
  return { row: { batchId: fromId.batchId, row: fromId.row, id: String(fromId.row), messages: [], metadata: {} }, progress: freshProgress(), fingerprint: fromId.fingerprint, error: unreadable };
}
