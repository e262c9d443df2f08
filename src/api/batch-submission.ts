import { rm, rmdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { UsageError } from '../errors.ts';
import { formatClockTime } from '../figure-text.ts';
import { acquireBatchLease, type BatchLease } from '../queue/batch-lease.ts';
import { isFinishedStatus } from '../queue/batch-state.ts';
import { batchIdRule, isValidBatchId, newBatchId } from '../queue/keys.ts';
import type { Session } from '../queue/session.ts';
import { createOutputDir, folderOwner } from '../output/output-dir.ts';
import { ApiError } from './api-error.ts';
import { inApiTerms } from './api-terms.ts';
import type { BackgroundCollection } from './background-collection.ts';
import { loadBatchState } from './batch-lookup.ts';
import type { BatchRun, BatchStarter } from './batch-start.ts';
import { batchPath, type BatchView } from './batch-view.ts';

const INPUT_FORMATS = ['csv', 'tsv', 'jsonl'] as const;
export type InputFormat = (typeof INPUT_FORMATS)[number];

/** A batch to run, as a POST asks for it: the run options a CLI user gives as flags. */
export interface Submission {
  batchId?: string;
  model?: string;
  route?: string;
  ab?: string;
  /** As `--compare`: every row that names no model is put to each of these models. */
  compare?: string;
  budget?: number;
  judge?: string;
  /** false: the batch neither takes nor keeps answers in the answer cache. */
  cache?: boolean;
  promptColumn?: string;
  format: InputFormat;
  /** Writes the request body to this path (streamed and size-limited by the server). */
  saveInput(path: string): Promise<void>;
}

export interface SubmitOutcome {
  view: BatchView;
  /** The batch id was known: the same file again, or an edited one, runs as `switchyard run --batch-id` would. */
  resumed: boolean;
  /** Warnings and notes the run gave (an unpriced model, a missing API key, body fields not sent). */
  notes: string[];
}

export interface BatchSubmissionOptions {
  session: Session;
  /** Each batch's input file and outputs go to `<outRoot>/<batch id>/`. */
  outRoot: string;
  collection: BackgroundCollection;
  starter: BatchStarter;
  say: (line: string) => void;
  /** The batch as the answer to its POST shows it. */
  view: (batchId: string) => Promise<BatchView>;
  /** Whether the server is stopping (SIGTERM, Ctrl-C). */
  stopping: () => boolean;
}

/** A batch's file saved where its outputs go. */
interface SavedInput {
  batchId: string;
  outDir: string;
  inputPath: string;
  /** The batch id was known before this POST. */
  existed: boolean;
}

/** The submit of `BatchService`: saves the posted file and starts the batch's run on it, answered once its rows are being queued. */
export function createBatchSubmission(options: BatchSubmissionOptions): (submission: Submission) => Promise<SubmitOutcome> {
  const { session, collection, starter, say, view } = options;
  const { store, redis } = session;
  // Ids being submitted right now: a second POST for one must not start a second run of it.
  const submitting = new Set<string>();

  /** Marks the batch as the API's and starts its run on the saved file. */
  async function startRun(saved: SavedInput, lease: BatchLease, run: BatchRun, said: string[]): Promise<'collecting' | 'stopped'> {
    const { batchId, outDir, inputPath } = saved;
    try {
      // The marker first: a batch whose rows are queued is the API's even if the run then fails.
      await redis.set(store.keys(batchId).submittedOverApi, '1');
      return await starter.start(batchId, lease, run, said);
    } catch (error) {
      if (!saved.existed && !(await store.load(batchId).catch(() => null))) {
        // Refused before anything was queued (no prompt column, an empty file): leave no trace.
        await redis.del(store.keys(batchId).submittedOverApi);
        await rm(inputPath, { force: true });
        await rmdir(outDir).catch(() => undefined); // only if empty
      }
      if (error instanceof UsageError) throw new ApiError(400, 'invalid_input', inApiTerms(error.message, inputPath));
      throw error;
    }
  }

  return async function submit(submission) {
    const batchId = submission.batchId ?? newBatchId();
    if (!isValidBatchId(batchId)) throw new ApiError(400, 'invalid_batch_id', batchIdRule('batch_id', batchId));
    if (submitting.has(batchId)) throw submittingError(batchId);
    submitting.add(batchId);
    let lease: BatchLease | null = null;
    try {
      let existing = await loadBatchState(store, batchId);
      if (collection.isCollecting(batchId)) {
        // Its outputs are written (GET says finished) and its collector is letting go of the batch: posted again at once, it runs.
        if (!existing || !isFinishedStatus(existing.meta.status)) throw runningError(batchId);
        await collection.whenCollected(batchId);
        existing = await loadBatchState(store, batchId);
      }
      if (existing && (await redis.exists(store.keys(batchId).submittedOverApi)) === 0) {
        throw new ApiError(409, 'batch_exists', `batch ${batchId} was started with "switchyard run", whose input file is not the server's to replace: choose another batch_id`);
      }
      lease = await acquireBatchLease(redis, store.keys(batchId).lease, batchId).catch((error: unknown) => {
        throw error instanceof UsageError ? new ApiError(409, 'batch_running', error.message) : error;
      });
      const outDir = existing?.meta.out_dir ?? resolve(options.outRoot, batchId);
      await claimOutputDir(outDir, batchId);
      // Checked before the upload is saved over its input file: the run would refuse the folder, too late for that file.
      if (!existing && (await folderOwner(outDir)).owner !== undefined) {
        throw new ApiError(409, 'output_folder_taken', `the server's folder for batch ${batchId} (${outDir}) holds the outputs of an earlier batch of that name, which Redis no longer has (forgotten, or another server's): choose another batch_id`);
      }
      const inputPath = join(outDir, `input.${submission.format}`);
      await submission.saveInput(inputPath).catch(async (error: unknown) => {
        if (!existing) await rmdir(outDir).catch(() => undefined); // a refused upload leaves no empty folder
        throw error;
      });
      const said: string[] = [];
      const ended = await startRun({ batchId, outDir, inputPath, existed: existing !== null }, lease, runOptions(submission, inputPath, outDir), said);
      const stoppingError = () => new ApiError(503, 'server_stopping', `the server is stopping: batch ${batchId}'s file is saved, and its rows are read and run when the server starts again (GET ${batchPath(batchId)} then shows it)`);
      if (ended === 'stopped') throw stoppingError();
      lease = null; // the collector holds it now
      // Posted again in another format: the file it ran on before is not its input any more (QA: both were left side by side).
      if (existing) await Promise.all(INPUT_FORMATS.filter((format) => format !== submission.format).map((format) => rm(join(outDir, `input.${format}`), { force: true })));
      // Stopped while the file came in, after its first rows were queued: a 202 would tell the client its batch runs here now.
      if (options.stopping()) throw stoppingError();
      say(`[${batchId}] Submitted at ${formatClockTime(Date.now())}; its rows are being queued.`);
      return { view: await view(batchId), resumed: existing !== null, notes: notesBeforeRead(said).map((line) => inApiTerms(line, inputPath)) };
    } finally {
      submitting.delete(batchId);
      await lease?.release();
    }
  };
}

/**
 * The notes the run said before it read the file through: those it says once read (the Read line
 * on) are the batch's file_notes, and a small file is often read before the answer goes out.
 */
function notesBeforeRead(said: readonly string[]): string[] {
  const read = said.findIndex((line) => line.startsWith('Read '));
  return (read === -1 ? said : said.slice(0, read)).filter((line) => /^(Note|Warning|Resuming|A\/B split)\b/.test(line));
}

/** Creates the batch's output folder, or says whose it is to fix when it cannot. */
async function claimOutputDir(outDir: string, batchId: string): Promise<void> {
  await createOutputDir(outDir).catch((error: unknown) => {
    if (!(error instanceof UsageError)) throw error;
    // A file named as the batch where its folder would go: another batch_id avoids it; anything else is the server's to fix.
    if (/\[EEXIST\]/.test(error.message)) throw new ApiError(409, 'output_folder_taken', `a file named ${batchId} is where this batch's output folder would go, in the server's --out: choose another batch_id`);
    throw new ApiError(500, 'output_folder_unusable', `the server ${error.message.replace(/\. Give another folder with --out\.$/, '')}: its --out folder needs fixing`);
  });
}

/** The run options a POST's query parameters stand for, as `switchyard run`'s flags would give them. */
function runOptions(submission: Submission, inputPath: string, outDir: string): BatchRun {
  return {
    file: inputPath,
    out: outDir,
    ...(submission.model !== undefined ? { model: submission.model } : {}),
    ...(submission.route !== undefined ? { route: submission.route } : {}),
    ...(submission.ab !== undefined ? { ab: submission.ab } : {}),
    ...(submission.compare !== undefined ? { compare: submission.compare } : {}),
    ...(submission.budget !== undefined ? { budget: submission.budget } : {}),
    ...(submission.judge !== undefined ? { judge: submission.judge } : {}),
    ...(submission.cache !== undefined ? { cache: submission.cache } : {}),
    ...(submission.promptColumn !== undefined ? { promptColumn: submission.promptColumn } : {}),
  };
}

/** Another POST of it is under way: its file still coming in, or its rows being queued (GET may answer 404 until then). */
function submittingError(batchId: string): ApiError {
  return new ApiError(409, 'batch_running', `batch ${batchId} is being submitted to this server by another request: its file is still coming in, or its rows are being queued; send it again once that request has been answered (GET ${batchPath(batchId)} shows the batch once it is queued)`);
}

function runningError(batchId: string): ApiError {
  return new ApiError(409, 'batch_running', `batch ${batchId} is running on this server: GET ${batchPath(batchId)} shows its progress; send it again once it has finished to re-run rows that changed`);
}
