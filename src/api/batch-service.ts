import { rm, rmdir, stat } from 'node:fs/promises';
import { setTimeout as delay } from 'node:timers/promises';
import { join, resolve } from 'node:path';
import type { Logger } from 'pino';
import { runBatch, type RunHost } from '../batch/run-batch.ts';
import { UsageError } from '../errors.ts';
import { acquireBatchLease, holderName, leaseHolderAlive, type BatchLease } from '../queue/batch-lease.ts';
import { DamagedBatchError, isFinishedStatus, type BatchMeta, type BatchProgress } from '../queue/batch-state.ts';
import { apiOpenBatchesKey, batchIdRule, batchOfJobId, isValidBatchId, newBatchId } from '../queue/keys.ts';
import { unqueueBatch } from '../queue/unqueue-batch.ts';
import { createOutputDir } from '../output/output-dir.ts';
import { ApiError } from './api-error.ts';
import { finishedLine, type BackgroundCollection } from './background-collection.ts';
import { batchPath, batchView, OUTPUT_FILES, type BatchView, type OutputFileName } from './batch-view.ts';

export type InputFormat = 'csv' | 'tsv' | 'jsonl';

/** A batch to run, as a POST asks for it: the run options a CLI user gives as flags. */
export interface Submission {
  batchId?: string;
  model?: string;
  route?: string;
  ab?: string;
  budget?: number;
  judge?: string;
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

export interface BatchService {
  submit(submission: Submission): Promise<SubmitOutcome>;
  get(batchId: string): Promise<BatchView>;
  list(limit: number): Promise<{ data: BatchView[]; total: number }>;
  /** A finished batch's output file: its path and media type. */
  outputFile(batchId: string, name: OutputFileName): Promise<{ path: string; contentType: string }>;
  /**
   * Stops a batch this server runs: its queued rows come off the queue, the rows in hand finish,
   * then its outputs are written for the rows finished, and it ends `cancelled`. Returns at once
   * (the view says `cancelling`); a batch posted again runs the rest.
   */
  cancel(batchId: string): Promise<BatchView>;
  /** Collects the batches submitted here whose outputs a stopped server left unwritten. */
  resumeOpenBatches(): Promise<void>;
  /** Resolves once no file is being read (the server stopping waits for the runs it started). */
  whenReadingsEnd(): Promise<void>;
  /** Why requests cannot be served now (Redis is away), or null: said at once rather than after the client's retries. */
  unavailable(): string | null;
  /** Why the server is not healthy: Redis away, or not answering a PING within `timeoutMs` (a frozen server keeps its connections); null when healthy. */
  unhealthy(timeoutMs: number): Promise<string | null>;
}

export interface BatchServiceOptions {
  host: RunHost;
  /** Each batch's input file and outputs go to `<outRoot>/<batch id>/`. */
  outRoot: string;
  collection: BackgroundCollection;
  logger: Logger;
  say: (line: string) => void;
}

/** How often a cancel looks whether the batch's rows in hand have finished. */
const CANCEL_POLL_MS = 200;

/** Run flags named in the run's messages, as the API's query parameters. */
const FLAG_TO_PARAMETER: Record<string, string> = {
  '--batch-id': 'batch_id',
  '--prompt-column': 'prompt_column',
  '--model': 'model',
  '--route': 'route',
  '--ab': 'ab',
  '--budget': 'budget',
  '--judge': 'judge',
};

/** A run's message in the API's terms: its flags become query parameters, the server's copy of the file "the uploaded file". */
export function inApiTerms(message: string, inputPath: string): string {
  return message
    .replaceAll(`input file ${inputPath}`, 'the uploaded file')
    .replaceAll(inputPath, 'the uploaded file')
    .replace(/(--[a-z-]+)( <[^>]+>)?/g, (text, flag: string, value: string | undefined) => {
      const parameter = FLAG_TO_PARAMETER[flag];
      if (!parameter) return text;
      return value ? `?${parameter}=${value.trim()}` : parameter;
    });
}

export function createBatchService(options: BatchServiceOptions): BatchService {
  const { host, collection, logger, say } = options;
  const { session } = host;
  const { store, redis } = session;
  const openKey = apiOpenBatchesKey(session.space);
  // Ids being submitted right now: a second POST for one must not start a second run of it.
  const submitting = new Set<string>();
  const cancelling = new Set<string>();
  // Files still being read after their POST was answered; the server waits for them as it stops.
  const readings = new Set<Promise<void>>();

  async function loadState(batchId: string): Promise<{ meta: BatchMeta; progress: BatchProgress } | null> {
    try {
      return await store.loadWithProgress(batchId);
    } catch (error) {
      if (error instanceof DamagedBatchError) throw new ApiError(409, 'batch_damaged', error.message);
      throw error;
    }
  }

  async function view(batchId: string): Promise<BatchView> {
    const state = await loadState(batchId);
    if (!state) throw notFound(batchId);
    const present = isFinishedStatus(state.progress.status) ? await filesIn(state.meta.out_dir) : new Set<OutputFileName>();
    return batchView(state.meta, state.progress, present, cancelling.has(batchId));
  }

  /** The cancel's slow part: wait out the rows in hand (re-taking any that parked meanwhile), then write the outputs. */
  async function finishCancel(batchId: string): Promise<void> {
    const queue = session.openPromptQueue();
    try {
      for (;;) {
        await unqueueBatch(queue, store, batchId);
        const inHand = (await queue.getRanges(['active'], 0, -1)).filter((jobId) => batchOfJobId(jobId) === batchId);
        if (inHand.length === 0) break;
        await delay(CANCEL_POLL_MS);
      }
      // A row that parked itself after the last unqueue above, and before the count of rows in hand.
      await unqueueBatch(queue, store, batchId);
    } finally {
      await queue.close();
    }
    const report = await collection.finishEarly(batchId);
    if (report?.totals.unfinished_rows === 0) return; // every row was done by then: it ended as usual
    await store.update(batchId, { status: 'cancelled', finished_at: new Date().toISOString() });
    const meta = await store.load(batchId);
    say(`[${batchId}] ${report ? finishedLine('Cancelled', report, meta?.out_dir ?? '?') : 'Cancelled.'}`);
  }

  /**
   * Starts the producer on the batch's file (as `run --detach` does, but reading on only as workers
   * take rows, `queue.max_pending` ahead) and, once its first record is checked and the batch
   * saved, hands the batch to a background collector: 'collecting' then, while the rest of the file
   * is read; 'stopped' when the server stopped first. A file refused at once rejects, with nothing
   * queued; one that turns unreadable further on is recorded on the batch as its `input_error`.
   */
  async function startBatch(batchId: string, lease: BatchLease, run: Parameters<typeof runBatch>[0], said: string[]): Promise<'collecting' | 'stopped'> {
    const queuing = Promise.withResolvers<null>();
    const reading = runBatch({ ...run, batchId, detach: true }, logger, (line) => said.push(line), { ...host, onQueuing: () => queuing.resolve(null) });
    reading.catch(() => undefined); // observed below, whichever settles first
    const early = await Promise.race([queuing.promise, reading]);
    if (early !== null) return 'stopped'; // the server stopped before a row was queued
    await redis.sadd(openKey, batchId);
    const meta = await store.load(batchId);
    if (!meta) throw new Error(`batch ${batchId} has no state in Redis after its run started`);
    collection.start(batchId, lease, { outDir: meta.out_dir, startedAt: new Date(meta.started_at ?? meta.created_at), config: host.config.config });
    const done = reading.then(
      (outcome) => {
        if (outcome.exitCode !== 0) return; // stopped with the server: the next one reads on
        const read = said.find((line) => line.startsWith('Read '))?.split(';', 1)[0];
        if (read) say(`[${batchId}] ${read}.`);
        for (const note of said.filter((line) => line.startsWith('Note: request body fields'))) say(`[${batchId}] ${note}`);
      },
      (error: unknown) => readingFailed(batchId, error, run.file ?? meta.input),
    );
    readings.add(done);
    void done.finally(() => readings.delete(done));
    return 'collecting';
  }

  /**
   * Redis came back with an older state of a batch being collected (an RDB snapshot): the rows it
   * forgot have no job left, so the batch's file is read again as a resume reads it, queuing every
   * row not finished, and collected anew; what the server does at start for a batch stopped mid-read.
   */
  async function requeueRolledBack(batchId: string): Promise<void> {
    if (host.stop.aborted) return; // the next server to start goes on with it
    let lease: BatchLease | null = null;
    try {
      lease = await acquireBatchLease(redis, store.keys(batchId).lease, batchId);
      if ((await startBatch(batchId, lease, { resume: batchId }, [])) === 'collecting') lease = null;
    } catch (error) {
      say(`[${batchId}] Could not queue its rows again: ${error instanceof Error ? error.message : String(error)}. Restart the server to try again; nothing written is lost.`);
    } finally {
      await lease?.release();
    }
  }
  collection.onRolledBack((batchId) => void requeueRolledBack(batchId));

  /** The file turned unreadable part-way: the rows before stay queued or done; the batch waits for the fixed file. */
  async function readingFailed(batchId: string, error: unknown, inputPath: string): Promise<void> {
    const reason = error instanceof Error ? error.message.split('\n', 1)[0]! : String(error);
    const message = `${inApiTerms(reason, inputPath)}. Rows before it that were queued run on; post the fixed file with batch_id=${batchId} to finish the batch without repeating them.`;
    await redis.srem(openKey, batchId).catch(() => undefined);
    // Its collector lets go first: a client that sees the error may post the fixed file at once.
    await collection.abandon(batchId);
    await store.update(batchId, { input_error: message }).catch(() => undefined);
    say(`[${batchId}] Reading its file stopped: ${message}`);
  }

  return {
    async submit(submission) {
      const batchId = submission.batchId ?? newBatchId();
      if (!isValidBatchId(batchId)) throw new ApiError(400, 'invalid_batch_id', batchIdRule('batch_id', batchId));
      if (submitting.has(batchId) || collection.isCollecting(batchId)) throw runningError(batchId);
      submitting.add(batchId);
      let lease: BatchLease | null = null;
      try {
        const existing = await loadState(batchId);
        if (existing && (await redis.exists(store.keys(batchId).submittedOverApi)) === 0) {
          throw new ApiError(409, 'batch_exists', `batch ${batchId} was started with "switchyard run", whose input file is not the server's to replace: choose another batch_id`);
        }
        lease = await acquireBatchLease(redis, store.keys(batchId).lease, batchId).catch((error: unknown) => {
          throw error instanceof UsageError ? new ApiError(409, 'batch_running', error.message) : error;
        });
        const outDir = existing?.meta.out_dir ?? resolve(options.outRoot, batchId);
        await createOutputDir(outDir).catch((error: unknown) => {
          if (!(error instanceof UsageError)) throw error;
          // A file named as the batch where its folder would go: another batch_id avoids it; anything else is the server's to fix.
          if (/\[EEXIST\]/.test(error.message)) throw new ApiError(409, 'output_folder_taken', `a file named ${batchId} is where this batch's output folder would go, in the server's --out: choose another batch_id`);
          throw new ApiError(500, 'output_folder_unusable', `the server ${error.message.replace(/\. Give another folder with --out\.$/, '')}: its --out folder needs fixing`);
        });
        const inputPath = join(outDir, `input.${submission.format}`);
        await submission.saveInput(inputPath).catch(async (error: unknown) => {
          if (!existing) await rmdir(outDir).catch(() => undefined); // a refused upload leaves no empty folder
          throw error;
        });
        const said: string[] = [];
        const run = {
          file: inputPath,
          out: outDir,
          ...(submission.model !== undefined ? { model: submission.model } : {}),
          ...(submission.route !== undefined ? { route: submission.route } : {}),
          ...(submission.ab !== undefined ? { ab: submission.ab } : {}),
          ...(submission.budget !== undefined ? { budget: submission.budget } : {}),
          ...(submission.judge !== undefined ? { judge: submission.judge } : {}),
          ...(submission.promptColumn !== undefined ? { promptColumn: submission.promptColumn } : {}),
        };
        let ended: 'collecting' | 'stopped';
        try {
          // The marker first: a batch whose rows are queued is the API's even if the run then fails.
          await redis.set(store.keys(batchId).submittedOverApi, '1');
          ended = await startBatch(batchId, lease, run, said);
        } catch (error) {
          if (!existing && !(await store.load(batchId).catch(() => null))) {
            // Refused before anything was queued (no prompt column, an empty file): leave no trace.
            await redis.del(store.keys(batchId).submittedOverApi);
            await rm(inputPath, { force: true });
            await rmdir(outDir).catch(() => undefined); // only if empty
          }
          if (error instanceof UsageError) throw new ApiError(400, 'invalid_input', inApiTerms(error.message, inputPath));
          throw error;
        }
        if (ended === 'stopped') {
          throw new ApiError(503, 'server_stopping', `the server is stopping: batch ${batchId}'s file is saved, and its rows are read and run when the server starts again (GET ${batchPath(batchId)} then shows it)`);
        }
        lease = null; // the collector holds it now
        say(`[${batchId}] Submitted; its rows are being queued.`);
        return { view: await view(batchId), resumed: existing !== null, notes: said.filter((line) => /^(Note|Warning|Resuming|A\/B split)\b/.test(line)) };
      } finally {
        submitting.delete(batchId);
        await lease?.release();
      }
    },

    get: view,

    async list(limit) {
      const [ids, total] = await Promise.all([store.recentBatchIds(limit), store.batchCount()]);
      // One deleted meanwhile, or damaged, is left out; Redis trouble fails the whole list.
      const views = await Promise.all(ids.map((id) => view(id).catch((error: unknown) => (error instanceof ApiError ? null : Promise.reject(error)))));
      return { data: views.filter((one): one is BatchView => one !== null), total };
    },

    async outputFile(batchId, name) {
      const state = await loadState(batchId);
      if (!state) throw notFound(batchId);
      const { meta, progress } = state;
      if (!isFinishedStatus(progress.status)) {
        // A file that could not be read to its end waits for the fixed one: say that, not that it is being read.
        if (meta.input_error) throw new ApiError(409, 'batch_waiting_for_file', `batch ${batchId} waits for its fixed file: ${meta.input_error}`);
        const total = progress.total === null ? 'its file is still being read' : `${progress.finished} of ${progress.total} rows finished`;
        throw new ApiError(409, 'batch_not_finished', `batch ${batchId} is ${progress.status}: ${total}. Its outputs are written once every row is done; GET ${batchPath(batchId)} shows its progress.`);
      }
      return { path: join(meta.out_dir, name), contentType: OUTPUT_FILES[name] };
    },

    async cancel(batchId) {
      const state = await loadState(batchId);
      if (!state) throw notFound(batchId);
      if (isFinishedStatus(state.meta.status)) throw new ApiError(409, 'batch_finished', `batch ${batchId} is ${state.meta.status} already: there is nothing to cancel`);
      if (state.meta.input_error && !collection.isCollecting(batchId)) throw new ApiError(409, 'batch_waiting_for_file', `batch ${batchId} is not running: it waits for its fixed file (${state.meta.input_error})`);
      if (!collection.isCollecting(batchId)) {
        throw new ApiError(409, 'batch_not_running_here', `batch ${batchId} is not being run by this server (only the server a batch was posted to, or started again after it, can cancel it); \`switchyard status ${batchId}\` shows who runs it`);
      }
      if (!cancelling.has(batchId)) {
        cancelling.add(batchId);
        // A server started again must not go on with it.
        await redis.srem(openKey, batchId);
        say(`[${batchId}] Cancelling: its queued rows come off the queue; the rows in hand finish, then its outputs are written.`);
        void finishCancel(batchId)
          .catch((error: unknown) => say(`[${batchId}] The cancel stopped: ${error instanceof Error ? error.message : String(error)}. Its rows may still be queued; cancel it again.`))
          .finally(() => cancelling.delete(batchId));
      }
      return view(batchId);
    },

    async whenReadingsEnd() {
      await Promise.all(readings);
    },

    unavailable() {
      if (redis.status === 'ready') return null;
      return `Redis at ${session.redisLabel} is not answering (${redis.status}), and every batch's state lives there: the server goes on by itself once it is back; send the request again then`;
    },

    async unhealthy(timeoutMs) {
      const away = this.unavailable();
      if (away) return away;
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), timeoutMs)));
      const answer = await Promise.race([redis.ping().catch(() => 'failed'), late]).finally(() => clearTimeout(timer));
      return answer === 'PONG' ? null : `Redis at ${session.redisLabel} did not answer a PING within ${timeoutMs} ms (it hangs, or is overloaded), and every batch's state lives there`;
    },

    async resumeOpenBatches() {
      for (const batchId of await redis.smembers(openKey)) {
        if (host.stop.aborted) return;
        let lease: BatchLease | null = null;
        try {
          const state = await loadState(batchId).catch(() => null);
          if (!state || isFinishedStatus(state.meta.status)) {
            await redis.srem(openKey, batchId);
            continue;
          }
          const holder = await redis.get(store.keys(batchId).lease);
          if (holder !== null && leaseHolderAlive(holder) !== false) {
            // Another server on this Redis and prefix has it: it is that server's to finish.
            say(`[${batchId}] Left to ${holderName(holder)}, which runs it now.`);
            continue;
          }
          lease = await acquireBatchLease(redis, store.keys(batchId).lease, batchId);
          if (state.meta.status === 'enqueuing') {
            // Stopped while its file was being read: read the rest (rows already queued or done are kept).
            const ended = await startBatch(batchId, lease, { resume: batchId }, []);
            if (ended === 'collecting') lease = null;
          } else {
            const { meta } = state;
            // The built-in models' simulator is this process's now: its workers call them.
            if (meta.builtin_config && host.config.builtIn) host.prime?.(batchId, host.config.config, meta.model_override, meta.ab_split, Date.parse(meta.started_at ?? meta.created_at));
            collection.start(batchId, lease, { outDir: meta.out_dir, startedAt: new Date(meta.started_at ?? meta.created_at) });
            lease = null;
          }
          if (lease === null) say(`[${batchId}] Going on with it: submitted before the server last stopped, its outputs are not written yet.`);
        } catch (error) {
          say(`[${batchId}] Submitted before the server last stopped, and left as it is: ${error instanceof Error ? error.message : String(error)}`);
        } finally {
          await lease?.release();
        }
      }
    },
  };
}

function notFound(batchId: string): ApiError {
  return new ApiError(404, 'batch_not_found', `no batch "${batchId}": GET /v1/batches lists the recent ones`);
}

function runningError(batchId: string): ApiError {
  return new ApiError(409, 'batch_running', `batch ${batchId} is running on this server: GET ${batchPath(batchId)} shows its progress; send it again once it has finished to re-run rows that changed`);
}

/** The output files present in a batch's folder. */
async function filesIn(outDir: string): Promise<Set<OutputFileName>> {
  const names = Object.keys(OUTPUT_FILES) as OutputFileName[];
  const present = await Promise.all(names.map(async (name) => ((await stat(join(outDir, name)).catch(() => null))?.isFile() ? name : null)));
  return new Set(present.filter((name): name is OutputFileName => name !== null));
}
