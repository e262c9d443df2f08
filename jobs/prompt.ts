import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { z } from 'zod';
import type { RowRunnerDeps, RowStep } from '../src/execution/row-runner.ts';
import { callTotals } from '../src/execution/row-result.ts';
import { ClaimLostError } from '../src/execution/claim-lost.ts';
import { everyCall, freshProgress, rowProgressSchema, type RowProgress } from '../src/execution/row-progress.ts';
import { createRowFailureLog } from '../src/execution/row-failure-log.ts';
import { keptAfterFinish } from '../src/execution/carried-progress.ts';
import { chatMessageSchema } from '../src/input/row.ts';
import { fingerprintDiffers } from '../src/input/row-fingerprint.ts';
import { publishCallsOnly, publishRowEvent, type NotedJob } from '../src/output/row-events.ts';
import { carryRow } from '../src/queue/carried-rows.ts';
import { isRedisRefusal, whileRedisRefuses, type RefusalWait } from '../src/queue/redis-outage.ts';
import type { BatchContexts } from '../workers/batch-context.ts';
import { batchKeys, type BatchKeys, type KeySpace } from '../src/queue/keys.ts';
import { createWaitingNotes, type WaitingNotes } from '../src/queue/batch-waiting.ts';

/** The prompt job: one input row, routed, answered (with retries and fallbacks) and handed to the collector. */
export const promptJobSchema = z.object({
  batchId: z.string(),
  row: z.number().int().positive(),
  id: z.string(),
  messages: z.array(chatMessageSchema).min(1),
  model: z.string().optional(),
  temperature: z.number().optional(),
  max_tokens: z.number().int().positive().optional(),
  metadata: z.record(z.string(), z.unknown()),
  custom_id: z.string().optional(),
  /** Request fields sent with each answer call (an OpenAI Batch line's top_p, stop, ...). */
  params: z.record(z.string(), z.unknown()).optional(),
  /** Its `model` was put to it by --compare, not named by its record (InputRow.compared). */
  compared: z.literal(true).optional(),
  /** Set when the job was parked mid-row (rate-limit slot, backoff). */
  progress: rowProgressSchema.optional(),
  /**
   * Enqueued by a resume. The earlier run may have left a job for the same row in the queue, which
   * can finish the row and be removed just before this one is added (job ids are free again once a
   * job is done), so this job checks that its row has not succeeded before calling a model.
   */
  reopened: z.boolean().optional(),
  /**
   * The row's fingerprint when queued (row-fingerprint.ts). A resume that finds the row edited in
   * the file queues the new content under another job id; this one, if still around, is then
   * superseded: it drops itself when it can tell before calling a model, and its result is not
   * published (row-events.ts). Absent in jobs from before fingerprints were carried.
   */
  fingerprint: z.number().int().positive().optional(),
  /** How often workers that cannot serve the batch handed the row back (see handBackMs). */
  handBacks: z.number().int().nonnegative().optional(),
  /** How often a worker without the row's key put it back to wait for a worker with it, none being connected (see KEY_WAIT_MS). */
  keyWaits: z.number().int().nonnegative().optional(),
  /**
   * When the run that queued the job started (epoch ms). A worker holding the batch's config from
   * before that run reads it again first: a resume may have brought another config (a higher
   * budget.monthly_usd, other models), which the rows it queues must run with.
   */
  queuedBy: z.number().int().nonnegative().optional(),
});
export type PromptJob = z.infer<typeof promptJobSchema>;

export interface PromptJobDeps {
  redis: Redis;
  space: KeySpace;
  batches: BatchContexts;
  logger: Logger;
  /**
   * For a row handed back from a dead worker: whether its batch's run is gone too (unqueue-batch.ts
   * isOrphaned), and taking it off the queue as a stopped run's rows are. Such a row waits for its
   * resume: another batch's run or a worker does not spend on it meanwhile.
   */
  orphanedRows?: { isOrphaned(batchId: string): Promise<boolean>; withdraw(job: PromptJob, noted: NotedJob | undefined): Promise<unknown> };
  /**
   * Whether a batch's run is gone with rows still queued (it stopped without taking them off: exit 3,
   * killed) and no server will take it up: the rows of it this process runs are said, once per batch.
   */
  runGone?: (batchId: string) => Promise<boolean>;
  now?: () => number;
  /** Where the reason rows park is kept on their batch for its views (default: on the batch in Redis, batch-waiting.ts). */
  waitingNotes?: WaitingNotes;
  /**
   * A row's result that Redis refuses (full, under noeviction) is offered again this long, each
   * refusal told (the outage watch says it once a minute), before the row is given up as crashed:
   * its calls are paid for, and a crashed row runs them again. Without it, given up at once.
   */
  refusals?: RefusalWait;
}

/**
 * How a job ended: its row's result, or nothing to do: the row had succeeded already (a
 * re-delivery), or the job is superseded by a newer one for the row's edited content, or this
 * worker lost its claim on the job to another (its calls recorded, the row is the other's now).
 */
export type FinishedRowKind = 'succeeded' | 'failed' | 'already-succeeded' | 'superseded' | 'withdrawn' | 'handed-over';

/** How BullMQ is delivering this job: a re-delivery may follow a run whose result was already published. */
export interface Delivery {
  jobId: string | undefined;
  /** The job's BullMQ creation time: with its id, what a stop's note on it names (unqueue-batch.ts). */
  queuedAt?: number;
  redelivered: boolean;
  /** Replaces the job's data in the queue, for a checkpoint mid-row; false when this worker's claim on the job is lost. */
  saveData?: (data: PromptJob) => Promise<boolean>;
  /** Whether this worker still holds the job, asked before each call (the host asks Redis only once a while has passed since it last knew). */
  holdsClaim?: () => Promise<boolean>;
}

/** The job as a stop's note would name it, when the host says. */
function notedJob(delivery: Delivery): NotedJob | undefined {
  return delivery.jobId !== undefined && delivery.queuedAt !== undefined ? { id: delivery.jobId, timestamp: delivery.queuedAt } : undefined;
}

/**
 * What the host must do with the job after a step: nothing (the row finished, or had already
 * succeeded before a re-delivery) or park it.
 */
export type PromptJobOutcome =
  | { kind: 'done'; batchId: string; row: FinishedRowKind; costNanos: number }
  | { kind: 'park'; waitMs: number; data: PromptJob }
  /**
   * Redis or a bug, not a model: the host lets BullMQ retry the job (attempts cover crashes). `data`
   * holds the row's progress when calls were made before the crash, so their cost records go out
   * with the retry's result (or the crashed row's) instead of being lost with the attempt.
   */
  | { kind: 'crashed'; error: unknown; data: PromptJob | null };

/**
 * A row of a batch this process cannot serve (it runs on the built-in simulator inside another
 * process) goes back to the queue for that process's workers. While that process holds the batch
 * (its lease), briefly: it is there to take the row. Else 1 s, doubling to a minute, so rows whose
 * process has gone cost little until a resume serves them.
 */
function handBackMs(handBacks: number, ownerRunning: boolean): number {
  if (ownerRunning) return OWNER_RUNNING_HAND_BACK_MS;
  return Math.min(60_000, 500 * 2 ** handBacks);
}

/** Long enough that this worker's next fetches find other rows, short enough that the row hardly waits. */
const OWNER_RUNNING_HAND_BACK_MS = 20;

/** A row's fallback_reason naming a model passed over for its open circuit (row-runner.ts), the model first. */
const OPEN_CIRCUIT = /(?:^|; )([^:;]+): circuit open after repeated failures/;

/**
 * A --detach batch's row whose key no connected worker has waits in the queue for one that starts
 * (workers started in any order, a rolling restart of the one with the key) for KEY_WAIT_ROUNDS
 * rounds of KEY_WAIT_MS, about 2 minutes, before it fails with missing_api_key. A run's rows fail at
 * once: its run stopped before queueing when no one had the keys.
 */
const KEY_WAIT_MS = 5_000;
const KEY_WAIT_ROUNDS = 24;

/**
 * A row whose model needs a key this worker lacks goes back to the queue while another worker
 * process that has it is alive (worker-registry.ts): BullMQ cannot steer a job to a given worker,
 * so the row may come back here many times while that worker is busy (a slow model, a small
 * concurrency), and it waits for as long as that worker is there; a count of hand-backs failed
 * rows a busy keyed worker would have answered (QA: after about 3 minutes). Each round it waits
 * here first (so an idle keyless worker does not spin through the queue, parking everything), then
 * in the queue, where any worker may take it: half a second each for the first
 * KEY_HAND_BACK_QUICK_ROUNDS, which a keyed worker that is free (a small queue, fast calls) takes
 * it within, as a row held or parked is out of its reach; then both double, up to the caps, so a
 * row that a busy keyed worker has not taken for a while cycles every few seconds rather than
 * every second, and the keyless worker's Redis commands and CPU fall to match.
 */
function keyHandBackWaits(handBacks: number): { holdMs: number; parkMs: number } {
  const factor = 2 ** Math.min(Math.max(0, handBacks - KEY_HAND_BACK_QUICK_ROUNDS), 3);
  return { holdMs: Math.min(KEY_HAND_BACK_MAX_HOLD_MS, KEY_HAND_BACK_MS * factor), parkMs: Math.min(KEY_HAND_BACK_MAX_PARK_MS, KEY_HAND_BACK_MS * factor) };
}
const KEY_HAND_BACK_MS = 500;
const KEY_HAND_BACK_QUICK_ROUNDS = 15;
const KEY_HAND_BACK_MAX_HOLD_MS = 2_000;
const KEY_HAND_BACK_MAX_PARK_MS = 4_000;

/** How long a batch's run, found there (or gone but not yet for long), goes unasked after again. */
const GONE_RUN_RECHECK_MS = 30_000;
/** How long a run must stay gone before its rows are said to be run here: a run whose Redis was away a while (its lease lapsed) renews it within a second of its return. */
const GONE_RUN_GRACE_MS = 3_000;

/**
 * Tells, once per batch, when the rows this process takes are of a batch whose run is gone (QA: a
 * `serve` ran a stopped nightly's queued rows and its log named only its own batches). Asked of
 * each batch at most every GONE_RUN_RECHECK_MS, so a row costs no extra round trip to Redis; a run
 * is called gone only once seen gone for GONE_RUN_GRACE_MS, across two questions at least. Called
 * for every row: between questions it only reads the batch's entry, no promise made (review).
 */
function newlyGoneRuns(runGone: (batchId: string) => Promise<boolean>, now: () => number): (batchId: string, onGone: () => void) => void {
  const batches = new Map<string, { askAfter: number; goneSince: number | null; said: boolean }>();
  const ask = async (batchId: string, seen: { askAfter: number; goneSince: number | null; said: boolean }, asked: number): Promise<boolean> => {
    const gone = await runGone(batchId).catch(() => false); // Redis away: asked again later
    if (!gone) {
      seen.goneSince = null;
      return false;
    }
    seen.goneSince ??= asked;
    if (asked - seen.goneSince < GONE_RUN_GRACE_MS) {
      seen.askAfter = seen.goneSince + GONE_RUN_GRACE_MS;
      return false;
    }
    seen.said = true;
    return true;
  };
  return (batchId, onGone) => {
    let seen = batches.get(batchId);
    if (seen?.said) return;
    const asked = now();
    if (seen && asked < seen.askAfter) return;
    if (!seen) {
      if (batches.size >= 1000) batches.clear();
      seen = { askAfter: 0, goneSince: null, said: false };
      batches.set(batchId, seen);
    }
    seen.askAfter = asked + GONE_RUN_RECHECK_MS;
    void ask(batchId, seen, asked).then((gone) => gone && onGone());
  };
}

/** What the note on a gone run's rows says (after "batch <id>: "): that they run here, and what that means for the batch and the money. */
function goneRunNote(batchId: string): string {
  return (
    `its run is gone with rows still queued (it stopped without taking them off the queue: Redis away at its stop, or killed): this process runs them meanwhile. ` +
    `Their answers are kept for \`switchyard run --resume ${batchId}\`, which writes them without paying again; what they cost counts toward the month's spend (budget.monthly_usd)`
  );
}

export function createPromptProcessor(deps: PromptJobDeps) {
  const logFailure = createRowFailureLog(deps.logger);
  const goneRun = deps.runGone ? newlyGoneRuns(deps.runGone, deps.now ?? Date.now) : null;
  // Why rows wait parked, or leave their model, said once per batch and kind of note (its figures
  // aside): a row parked for minutes would otherwise look stuck, an outage like a slow batch.
  const noted = new Set<string>();
  const noteOnce = (batchId: string, note: string) => {
    const key = `${batchId}\u0000${note.replace(/\d+(\.\d+)?/g, '#')}`;
    if (noted.has(key)) return;
    if (noted.size >= 1000) noted.clear();
    noted.add(key);
    deps.logger.warn({ batch: batchId }, `batch ${batchId}: ${note}`);
  };
  // The same reasons, kept on the batch, where its views read them: this log may be on another machine.
  const waiting = deps.waitingNotes ?? createWaitingNotes(deps.redis, (batchId) => batchKeys(deps.space, batchId), deps.logger, deps.now);
  const parkedFor = (batchId: string, note: string, waitMs: number) => {
    noteOnce(batchId, note);
    waiting.note(batchId, note, waitMs);
  };
  return async function processPromptJob(data: unknown, delivery: Delivery): Promise<PromptJobOutcome> {
    const job = promptJobSchema.parse(data);
    const keys = batchKeys(deps.space, job.batchId);
    // A worker can die after publishing a row but before BullMQ marks the job done, and a resume can
    // add a job for a row that an older job finishes meanwhile: never pay twice.
    // A stalled job of a killed run may also be superseded by the resume that re-delivers it.
    if (delivery.redelivered || job.reopened === true) {
      const before = await rowBefore(deps.redis, keys, job);
      if (before !== null) return { kind: 'done', batchId: job.batchId, row: before, costNanos: 0 };
    }
    if (delivery.redelivered && deps.orphanedRows && (await deps.orphanedRows.isOrphaned(job.batchId))) {
      await deps.orphanedRows.withdraw(job, notedJob(delivery));
      return { kind: 'done', batchId: job.batchId, row: 'withdrawn', costNanos: 0 };
    }
    const ctx = await deps.batches.get(job.batchId, job.queuedBy);
    if (ctx === 'elsewhere') {
      const handBacks = (job.handBacks ?? 0) + 1;
      const ownerRunning = (await deps.redis.exists(keys.lease)) === 1;
      return { kind: 'park', waitMs: handBackMs(handBacks, ownerRunning), data: { ...job, handBacks } };
    }
    // The row need not wait for the question, asked of a batch every GONE_RUN_RECHECK_MS at most.
    goneRun?.(job.batchId, () => noteOnce(job.batchId, goneRunNote(job.batchId)));
    const progress = job.progress ?? freshProgress();
    const callsBefore = everyCall(progress).length;
    const crashed = (error: unknown): PromptJobOutcome => {
      // A full Redis refusing past the session's wait (the gate's scripts wait it out first): said by the outage watch, and the job is tried again.
      if (isRedisRefusal(error) && deps.refusals) deps.refusals.onRefusal('running a row', error as Error);
      else deps.logger.error({ batch: job.batchId, row: job.row, job: delivery.jobId, err: error }, 'row failed unexpectedly');
      return { kind: 'crashed', error, data: everyCall(progress).length > callsBefore ? { ...job, progress } : null };
    };
    const { saveData, holdsClaim } = delivery;
    const confirmClaim = holdsClaim
      ? async () => {
          if (!(await holdsClaim())) throw new ClaimLostError();
        }
      : undefined;
    const checkpoint = saveData
      ? async (saved: RowProgress) => {
          const held = await saveData({ ...job, progress: saved }).catch((error: unknown) => {
            deps.logger.debug({ batch: job.batchId, row: job.row, err: error }, 'could not save the row\'s progress; a worker killed now would redo its calls');
            return true;
          });
          // Paused past its claim while another worker took the job: no further call of this row is this worker's to pay for.
          if (!held) throw new ClaimLostError();
        }
      : undefined;
    let step: RowStep;
    try {
      step = await ctx.advance(job, progress, checkpoint, confirmClaim);
    } catch (error) {
      if (error instanceof ClaimLostError) return { kind: 'done', batchId: job.batchId, row: 'handed-over', costNanos: await recordCallsOfLostClaim(deps.redis, deps.space, { ...job, progress }, deps.refusals) };
      return crashed(error);
    }
    if (step.kind === 'park') {
      if (step.note) parkedFor(job.batchId, step.note, step.waitMs);
      return { kind: 'park', waitMs: step.waitMs, data: { ...job, progress: step.progress } };
    }
    const failure = step.event.result.error;
    const keyName = failure?.code === 'missing_api_key' ? missingKeyOf(ctx.runner, step.event.result.model) : null;
    if (keyName && (await ctx.runner.keyHeldElsewhere?.(keyName).catch(() => false))) {
      noteOnce(job.batchId, `rows that need $${keyName}, which is not set here, are left to the worker processes that have it, for as long as one is connected (each such row this worker takes waits here half a second, up to 2 s once it has come back often, before going back to the queue: set $${keyName} here, or stop this worker, if the batch runs slower than it should)`);
      const handBacks = (job.handBacks ?? 0) + 1;
      const { holdMs, parkMs } = keyHandBackWaits(handBacks);
      await ctx.runner.sleep(holdMs);
      // A wait for a keyed worker to start (KEY_WAIT_MS) counts from when the last one left.
      return { kind: 'park', waitMs: parkMs, data: { ...job, progress, handBacks, keyWaits: undefined } };
    }
    if (keyName && ctx.detached && (job.keyWaits ?? 0) < KEY_WAIT_ROUNDS) {
      parkedFor(job.batchId, `rows that need $${keyName} wait for a worker that has it, and none is connected: start one with it set (the rows fail with missing_api_key after about ${Math.round((KEY_WAIT_MS * KEY_WAIT_ROUNDS) / 60_000)} min of this)`, KEY_WAIT_MS);
      return { kind: 'park', waitMs: KEY_WAIT_MS, data: { ...job, progress, keyWaits: (job.keyWaits ?? 0) + 1 } };
    }
    if (failure) logFailure({ batchId: job.batchId, row: job.row, id: job.id, code: failure.code, attempts: step.event.result.attempts, message: failure.message });
    const openCircuit = OPEN_CIRCUIT.exec(step.event.result.fallback_reason ?? '');
    if (openCircuit) {
      // Only a row another model answered went on to a fallback: one whose chain had none open failed (review of the docs: said of a model with no fallback).
      const fellBack = step.event.result.status === 'succeeded';
      const what = fellBack ? 'rows go on to their fallbacks' : 'rows with no fallback open fail (no_model_available; the summary says until when)';
      noteOnce(job.batchId, `${openCircuit[1]}'s circuit is open after repeated failures: ${what}, and a test call now and then tells when it is back (fallback_reason in results.jsonl)`);
    }
    let publication: { published: boolean; costNanos: number };
    try {
      // The row's calls are paid for: a refusal is waited out rather than the row run (and paid for) again.
      publication = await whileRedisRefuses('recording a row', () => publishRowEvent(deps.redis, keys, step.event, step.costNanos, job.fingerprint, notedJob(delivery)), deps.refusals, ctx.runner.sleep);
    } catch (error) {
      return crashed(error);
    }
    // An answer its judge could not score, or the members' answers of a failed ensemble row, is
    // kept, so a resume runs only what the row lacks instead of paying for those answers again.
    // After the publish: what is carried counts its calls as recorded.
    const kept = publication.published && job.fingerprint !== undefined ? keptAfterFinish(step.event.result, progress) : null;
    if (kept) {
      await carryRow(deps.redis, keys, job.row, job.fingerprint!, kept).catch((error: unknown) => {
        deps.logger.debug({ batch: job.batchId, row: job.row, err: error }, 'could not keep the row\'s answers; a resume pays for them again');
      });
    }
    return { kind: 'done', batchId: job.batchId, row: !publication.published ? 'superseded' : failure ? 'failed' : 'succeeded', costNanos: publication.costNanos };
  };
}

/**
 * Records the calls of a row whose claim this worker lost (paused past queue.lock_ms while the
 * stalled check gave the job to another): they were paid for, and the other worker's publish has
 * only those the job had saved (published once, whoever is first: row-events.ts). The row is the
 * other worker's. Returns what they added to the batch's cost (nanos).
 */
export async function recordCallsOfLostClaim(redis: Redis, space: KeySpace, job: PromptJob, refusals: RefusalWait | undefined): Promise<number> {
  const calls = everyCall(job.progress ?? freshProgress());
  // Paid for, and no one else has the unsaved ones: a full Redis is waited out, as a row's result is.
  return whileRedisRefuses('recording a row', () => publishCallsOnly(redis, batchKeys(space, job.batchId), job.row, calls, callTotals(calls).costNanos), refusals);
}

/** Why the job has nothing to do, if so: its row succeeded already, or was edited in the file since the job was queued. */
async function rowBefore(redis: Redis, keys: BatchKeys, job: PromptJob): Promise<'already-succeeded' | 'superseded' | null> {
  const [succeeded, recorded] = await Promise.all([redis.getbit(keys.succeeded, job.row), job.fingerprint === undefined ? null : redis.getrangeBuffer(keys.fingerprints, job.row * 4, job.row * 4 + 3)]);
  if (succeeded === 1) return 'already-succeeded';
  if (recorded?.length === 4 && fingerprintDiffers(recorded.readUInt32BE(0), job.fingerprint!)) return 'superseded';
  return null;
}

/** The key variable the model's provider needs and this process lacks, if that is so. */
function missingKeyOf(runner: RowRunnerDeps, model: string): string | null {
  const providerName = runner.config.models[model]?.provider;
  return (providerName && runner.providers.get(providerName)?.missingKeyEnv) || null;
}
