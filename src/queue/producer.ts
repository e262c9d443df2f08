import { createWriteStream, type WriteStream } from 'node:fs';
import { once } from 'node:events';
import type { Queue } from 'bullmq';
import { UsageError } from '../errors.ts';
import { countInvalidRow, type InputRow, type InvalidRowCounts, type QueueItem, type ReadPosition, type RowError } from '../input/row.ts';
import type { PromptJob } from '../../jobs/prompt.ts';
import type { RowProgress } from '../execution/row-progress.ts';
import type { BatchStore } from './batch-state.ts';
import { promptJobId } from './keys.ts';
import { rowPriorities, type RowPriorities } from './row-priority.ts';
import { carriedRows, dropCarried, type CarriedRows } from './carried-rows.ts';
import { reopenRows } from './reopen-rows.ts';
import { whileRedisRefuses, type RefusalWait } from './redis-outage.ts';
import { invalidRowsToWithdraw, withdrawRowsPast } from './withdraw-rows.ts';
import { rowFingerprint } from '../input/row-fingerprint.ts';
import { MAX_ROW_KEYS } from '../input/row-keys.ts';
import { formatCount } from '../figure-text.ts';
import { carriedThatFits, keepInvalidRowsFingerprints, sortRowsToRunAgain, type CarriedFits } from './rows-to-run-again.ts';

export interface EnqueueOptions {
  queue: Queue;
  store: BatchStore;
  batchId: string;
  items: AsyncIterable<QueueItem>;
  /** errors.jsonl: one line per row that could not become a job. */
  errorsPath: string;
  chunkSize: number;
  /** Re-running a batch: skip rows that already succeeded, re-open the others. */
  resume: boolean;
  /** Whether a row's fingerprint includes its id, as the batch's meta says (rowFingerprint). */
  fingerprintIds: boolean;
  /** When this run started (epoch ms; the batch's started_at): each job carries it (PromptJob.queuedBy). */
  runStartedAt: number;
  /** How far the reader is into the file: each chunk then records an estimate of the row count. */
  position?: ReadPosition | undefined;
  /** Wait while more than this many enqueued rows are unfinished (undefined: enqueue everything now). */
  maxPending?: number | undefined;
  /**
   * With maxPending: fewer rows when their prompts are large, about this many bytes of prompts
   * unfinished in the queue (pendingRowsAllowed), so long documents do not fill Redis.
   */
  maxPendingBytes?: number | undefined;
  /**
   * Workers in this process: the first chunk holds this many rows and the rest waits for
   * `untilStarted(rows)` (the calls of those rows started), then chunks double up to `chunkSize`,
   * so the first calls are not queued behind the enqueueing of the whole file. (BullMQ's worker
   * fetches every job it can before it starts the next one, so a bigger queue would hold them back.)
   */
  localWorkers?: { firstChunk: number; untilStarted: (rows: number) => Promise<void> } | undefined;
  /** Aborted (Ctrl-C): stop reading and enqueueing; the rest of the file is read again on resume. */
  signal?: AbortSignal | undefined;
  /**
   * Whether answers a stopped run left for a row (carried-rows.ts) suit it as this run runs it (a
   * resume may be given another --model, or no judge); those that do not are dropped, and the row
   * starts afresh. `answered`: the row succeeded before (its answer waits for its judge alone).
   * Without it, all are taken.
   */
  carriedFits?: CarriedFits | undefined;
  /** Writes Redis refuses (full, say) are waited out this long, the file held where it is, rather than ending the run. */
  refusals?: RefusalWait | undefined;
}

export interface EnqueueCounts {
  /** Valid rows in the file. */
  total: number;
  /** Rows handed to the queue this time (already queued ones are ignored by BullMQ's job ids). */
  enqueued: number;
  /** Rows skipped because they succeeded in an earlier run of this batch. */
  alreadySucceeded: number;
  /** Rows that succeeded before but were edited (or moved) in the file since: they run again. */
  changedSinceSucceeded: number;
  /** Rows withdrawn by an earlier run (past a shorter file's end, or invalid) back in the file unchanged: their answers kept. */
  backInFile: number;
  invalid: number;
  /** The invalid rows by reason, each with an example. */
  invalidByCode: InvalidRowCounts;
  /** Lines of the OpenAI Batch API shape (they carry a custom_id), the invalid ones with a custom_id included. */
  openAiBatchRows: number;
  /** Body fields of those lines that are not sent (metadata.body_extra), by name: how many lines set each. */
  unsentBodyFields: Record<string, number>;
  /** The signal stopped the reading before the end of the file: the counts cover only what was read. */
  stopped: boolean;
  /** Rows an earlier run finished that are past the file's end now (it got shorter): left out of the outputs. */
  goneFromFile: number;
  /** Rows queued again with the answers a stopped run had for them (carried-rows.ts), which are not paid for again. */
  carriedAnswers: number;
  /** Of the rows queued, those that keep the task type the LLM classifier gave them (a stopped or failed row's): it is not asked again. */
  carriedLabels: number;
  /** Rows that succeeded before but the judge could not score: queued again with their answers, for the judge alone. */
  rescored: number;
  /** Ensemble rows that failed before after some members answered: queued again with those answers, so only the rest runs. */
  failedWithAnswers: number;
}

/**
 * The most metadata keys a batch's rows may have in all, each a results.csv column: a CSV header's
 * limit, and a row's. Rows of 16,000 keys each, every row's its own, made 496,000 columns of 31 rows
 * (22 s) and every further row wider still.
 */
const MAX_BATCH_METADATA_KEYS = MAX_ROW_KEYS;

/**
 * The most prompt bytes a chunk holds, whatever its row count: addBulk serializes a chunk whole, and
 * 500 rows of 100 KB contracts took a run to 520 MB (RSS) while 3,000 of them were queued.
 */
export const CHUNK_MAX_PROMPT_BYTES = 4 * 1024 * 1024;

/** The fewest rows kept queued ahead however large their prompts, so that workers are not left idle. */
export const MIN_PENDING_ROWS = 16;

/** A row's prompt bytes (its messages' text, as UTF-8): what its job adds to Redis, and to a chunk. */
export function rowPromptBytes(row: InputRow): number {
  let bytes = 0;
  for (const message of row.messages) bytes += Buffer.byteLength(message.content);
  return bytes;
}

/**
 * How many unfinished rows may be queued: `maxPending`, or fewer when the rows read so far
 * (`rows`, holding `promptBytes` in all) are so large on average that it would hold more than
 * `maxPendingBytes` of prompts; never fewer than MIN_PENDING_ROWS.
 */
export function pendingRowsAllowed(maxPending: number, maxPendingBytes: number | undefined, promptBytes: number, rows: number): number {
  if (maxPendingBytes === undefined || rows === 0 || promptBytes === 0) return maxPending;
  const bySize = Math.floor(maxPendingBytes / (promptBytes / rows));
  return Math.min(maxPending, Math.max(MIN_PENDING_ROWS, bySize));
}

/** BullMQ attempts cover crashed workers only; model errors are retried by the prompt job itself. */
const JOB_OPTIONS = { removeOnComplete: true, removeOnFail: true, attempts: 3, backoff: { type: 'exponential', delay: 1000 } } as const;

function toJob(options: EnqueueOptions, row: InputRow, fingerprint: number, carried: RowProgress | undefined): PromptJob {
  const job: PromptJob = { batchId: options.batchId, row: row.row, id: row.id, messages: row.messages, metadata: row.metadata, fingerprint, queuedBy: options.runStartedAt };
  if (options.resume) job.reopened = true;
  if (carried) job.progress = carried;
  if (row.model !== undefined) job.model = row.model;
  if (row.temperature !== undefined) job.temperature = row.temperature;
  if (row.max_tokens !== undefined) job.max_tokens = row.max_tokens;
  if (row.custom_id !== undefined) job.custom_id = row.custom_id;
  if (row.params !== undefined) job.params = row.params;
  if (row.compared) job.compared = true;
  return job;
}

/**
 * Streams rows into the queue in chunks (addBulk). Job ids are batch id + row + the row's
 * fingerprint, so running the same batch again never duplicates a queued row, and succeeded rows
 * are skipped through Redis' bitmap.
 */
export async function enqueueBatch(options: EnqueueOptions): Promise<EnqueueCounts> {
  const counts = noRowsCounted();
  const errors = createWriteStream(options.errorsPath, { flags: 'w' });
  const holdings = await readBatchHoldings(options);
  const invalidNow = invalidRowsToWithdraw(options.store, options.batchId, options.resume);
  const pacing = chunkPacing(options);
  let chunk: InputRow[] = [];
  let chunkBytes = 0;
  const flush = async () => {
    await invalidNow.withdraw();
    if (chunk.length === 0) return;
    const rows = chunk;
    chunk = [];
    chunkBytes = 0;
    await enqueueChunk(options, rows, counts, holdings);
  };

  const stop = options.signal;
  let lastRow = 0;
  // Said as soon as the file shows it, not once it is read: a stop part-way writes the outputs, batch_output.jsonl among them.
  let kindSaved = false;
  const saveKind = async () => {
    kindSaved = true;
    await whileRedisRefuses('queueing the file', () => options.store.update(options.batchId, { input_kind: 'openai-batch' }), options.refusals);
  };
  // The invalid rows read so far, for the outputs a stop or an unreadable line ends the read with (the report's and status' figures; errors.jsonl has them).
  const saveInvalidCounts = () => whileRedisRefuses('queueing the file', () => options.store.update(options.batchId, { invalid_rows: counts.invalid, invalid_codes: counts.invalidByCode }), options.refusals);
  try {
    for await (const item of options.items) {
      if (stop?.aborted) {
        counts.stopped = true;
        await saveInvalidCounts();
        return counts;
      }
      lastRow = item.value.row;
      // A number --compare leaves empty: withdrawn on a resume, as an invalid row's is.
      if (item.kind === 'vacant') {
        await invalidNow.add(item.value.row);
        continue;
      }
      if (item.kind === 'error') {
        await recordInvalidRow(item.value, counts, errors);
        if (!kindSaved && counts.openAiBatchRows > 0) await saveKind();
        await invalidNow.add(item.value.row);
        continue;
      }
      const tooWide = takeMetadataKeys(item.value, holdings);
      if (tooWide) {
        await recordInvalidRow(tooWide, counts, errors);
        await invalidNow.add(item.value.row);
        continue;
      }
      countValidRow(item.value, counts);
      if (!kindSaved && counts.openAiBatchRows > 0) await saveKind();
      chunk.push(item.value);
      const bytes = rowPromptBytes(item.value);
      chunkBytes += bytes;
      holdings.promptBytes += bytes;
      if (pacing.isFull(chunk) || chunkBytes >= CHUNK_MAX_PROMPT_BYTES) {
        await flush();
        if (stop?.aborted) continue; // the check at the top of the loop stops it
        await pacing.chunkQueued(counts.enqueued);
      }
    }
    await flush();
    // Only a whole read knows where the file ends now.
    if (options.resume && !counts.stopped && !stop?.aborted) counts.goneFromFile = await withdrawRowsPast(options.store, options.batchId, lastRow);
  } catch (error) {
    // The file turned unreadable part-way (an unclosed quote): the rows read before it are queued
    // still, as the message about it says, not left in a chunk that never went out.
    if (error instanceof UsageError && !stop?.aborted) {
      await flush();
      await saveInvalidCounts();
    }
    throw error;
  } finally {
    errors.end();
    await once(errors, 'close');
  }
  return counts;
}

function noRowsCounted(): EnqueueCounts {
  return { total: 0, enqueued: 0, alreadySucceeded: 0, changedSinceSucceeded: 0, backInFile: 0, invalid: 0, invalidByCode: {}, openAiBatchRows: 0, unsentBodyFields: {}, stopped: false, goneFromFile: 0, carriedAnswers: 0, carriedLabels: 0, rescored: 0, failedWithAnswers: 0 };
}

/** What the batch holds already that each chunk needs, read once before the first. */
interface BatchHoldings {
  /** The metadata keys recorded so far, and those of the rows taken since; each chunk records its new ones. */
  metadataKeys: Set<string>;
  /** Keys of the rows taken since the last chunk was queued that the batch did not have, in first-seen order: the chunk records them. */
  newKeys: string[];
  /** An earlier run left answers for some rows (carried-rows.ts). */
  anyCarried: boolean;
  /** Where the batch's rows stand in the queue among other batches' (row-priority.ts). */
  priorities: RowPriorities;
  /** The prompt bytes of the valid rows read so far (counts.total of them): their average sets how many may be pending. */
  promptBytes: number;
}

async function readBatchHoldings(options: EnqueueOptions): Promise<BatchHoldings> {
  // results.csv gets a column per metadata key; recording them here spares the writer a pass over the results.
  const metadataKeys = new Set(await options.store.metadataKeys(options.batchId));
  const keys = options.store.keys(options.batchId);
  // Looked up by chunk only when an earlier run left answers (a round trip per resume otherwise).
  const anyCarried = options.resume && (await options.store.redis.exists(keys.carried)) === 1;
  return { metadataKeys, newKeys: [], anyCarried, priorities: rowPriorities(options.queue, options.store.redis), promptBytes: 0 };
}

/** How many rows a chunk holds, and what happens once one is queued (see EnqueueOptions.localWorkers). */
interface ChunkPacing {
  isFull(chunk: readonly InputRow[]): boolean;
  /** After each full chunk: waits for the first calls of this process's workers once, then lets the chunks grow. */
  chunkQueued(enqueued: number): Promise<void>;
}

function chunkPacing(options: EnqueueOptions): ChunkPacing {
  let chunkSize = options.localWorkers ? Math.min(options.localWorkers.firstChunk, options.chunkSize) : options.chunkSize;
  let workersStarted = false;
  return {
    isFull: (chunk) => chunk.length >= chunkSize,
    async chunkQueued(enqueued) {
      if (!workersStarted && enqueued > 0) {
        workersStarted = true;
        await options.localWorkers?.untilStarted(enqueued);
      }
      // Growing from a small first chunk: early chunks are short pauses while the first calls start.
      chunkSize = Math.min(chunkSize * 2, options.chunkSize);
    },
  };
}

/** Counts a row that could not become a job, by its reason, and writes it to errors.jsonl. */
async function recordInvalidRow(rowError: RowError, counts: EnqueueCounts, errors: WriteStream): Promise<void> {
  counts.invalid++;
  // A Batch request line refused is still one: its custom_id gets a line in batch_errors.jsonl.
  if (rowError.custom_id !== undefined) counts.openAiBatchRows++;
  countInvalidRow(counts.invalidByCode, rowError);
  if (!errors.write(`${JSON.stringify(rowError)}\n`)) await once(errors, 'drain');
}

function countValidRow(row: InputRow, counts: EnqueueCounts): void {
  counts.total++;
  if (row.custom_id !== undefined) {
    counts.openAiBatchRows++;
    countUnsentBodyFields(counts.unsentBodyFields, row.metadata['body_extra']);
  }
}

/**
 * Queues a chunk of rows (on a resume, those of them that run again), once there is room, with
 * their new metadata keys, their fingerprints and the estimated row count recorded beside it.
 */
async function enqueueChunk(options: EnqueueOptions, rows: InputRow[], counts: EnqueueCounts, holdings: BatchHoldings): Promise<void> {
  const newKeys = holdings.newKeys;
  holdings.newKeys = [];
  await refusedWaitedOut(options, () => options.store.addMetadataKeys(options.batchId, newKeys));
  const fingerprinted = await recordFingerprints(options, rows, counts, holdings.anyCarried);
  const { carried, toRun } = fingerprinted;
  const estimate = estimatedTotal(counts.total, options.position);
  const recordEstimate = () => (estimate === null ? undefined : refusedWaitedOut(options, () => options.store.update(options.batchId, { estimated_total: estimate })));
  if (toRun.length > 0) {
    if (options.maxPending !== undefined) await waitForRoom(options, counts.enqueued, pendingRowsAllowed(options.maxPending, options.maxPendingBytes, holdings.promptBytes, counts.total));
    if (options.signal?.aborted) {
      await fingerprinted.written;
      counts.stopped = true; // this chunk is read again on resume
      return;
    }
    // The estimate and fingerprints go out beside the chunk (on another connection), not one round trip after it.
    const priorities = await refusedWaitedOut(options, () => holdings.priorities.forChunk(toRun.length));
    const jobs = toRun.map((row, index) => queuedJob(options, row, priorities[index]!, fingerprinted, counts));
    await Promise.all([refusedWaitedOut(options, addJobsOnce(options, toRun, jobs)), recordEstimate(), fingerprinted.written]);
    counts.enqueued += toRun.length;
  } else {
    await Promise.all([recordEstimate(), fingerprinted.written]);
  }
  // Deleted once their jobs hold them (or, for rows not run, as out of date); a run killed before this only finds them again.
  if (carried) await refusedWaitedOut(options, () => dropCarried(options.store.redis, options.store.keys(options.batchId), carried.found));
}

/** A row's job for addBulk, counted by what it carries: an answer for the judge alone, a task type label, a failed ensemble row's answers, or a stopped run's. */
function queuedJob(options: EnqueueOptions, row: InputRow, priority: number, fingerprinted: FingerprintedChunk, counts: EnqueueCounts) {
  const fingerprint = fingerprinted.of(row);
  const progress = fingerprinted.carried?.progress.get(row.row);
  if (fingerprinted.rescored.has(row.row)) counts.rescored++;
  else if (progress && !progress.judging && !progress.ensemble) counts.carriedLabels++;
  else if (progress && fingerprinted.failedBefore.has(row.row)) counts.failedWithAnswers++;
  else if (progress) counts.carriedAnswers++;
  const job = toJob(options, row, fingerprint, progress);
  return { name: 'prompt', data: job, opts: { ...JOB_OPTIONS, jobId: promptJobId(options.batchId, row.row, fingerprint), priority } };
}

/** Counts, by field name, the request body fields an OpenAI Batch line had that are not sent (its metadata.body_extra). */
export function countUnsentBodyFields(counts: Record<string, number>, unsent: unknown): void {
  if (typeof unsent !== 'object' || unsent === null) return;
  for (const name of Object.keys(unsent)) counts[name] = (counts[name] ?? 0) + 1;
}

/** Valid rows in the whole file, from those read so far and how much of the file they took. */
export function estimatedTotal(rowsSoFar: number, position: ReadPosition | undefined): number | null {
  if (!position || position.fileBytes <= 0 || position.bytesRead <= 0 || rowsSoFar === 0) return null;
  return Math.max(rowsSoFar, Math.round((rowsSoFar * position.fileBytes) / Math.min(position.bytesRead, position.fileBytes)));
}

/**
 * Adds the row's metadata keys that the batch does not have yet to it; or, when they would make
 * more than MAX_BATCH_METADATA_KEYS in all, leaves the batch's keys as they are and gives the
 * row's error.
 */
function takeMetadataKeys(row: InputRow, holdings: BatchHoldings): RowError | null {
  const known = holdings.metadataKeys;
  const added = Object.keys(row.metadata).filter((key) => !known.has(key));
  if (known.size + added.length > MAX_BATCH_METADATA_KEYS) {
    const message = `the row's metadata has ${formatCount(added.length)} keys that the rows before it do not, which would make ${formatCount(known.size + added.length)} results.csv columns, more than the ${formatCount(MAX_BATCH_METADATA_KEYS)} a batch may have (a CSV header's limit too): give the rows the same keys, or nest those that differ under one key, which is one column`;
    return { row: row.row, line: row.line, id: row.id, ...(row.custom_id !== undefined && { custom_id: row.custom_id }), code: 'bad_field', message };
  }
  for (const key of added) {
    known.add(key);
    holdings.newKeys.push(key);
  }
  return null;
}

/**
 * addBulk for the chunk, to be repeated after a refusal: a job id still in the queue is not added
 * twice, but a refused addBulk may have queued part of the chunk, and a job that has finished since
 * is gone (removeOnComplete), so the rows that finished meanwhile are left out of the next try
 * (QA: each was run, and paid for, again).
 */
function addJobsOnce(options: EnqueueOptions, rows: readonly InputRow[], jobs: Parameters<Queue['addBulk']>[0]): () => Promise<unknown> {
  let tried = false;
  return async () => {
    if (!tried) {
      tried = true;
      return options.queue.addBulk(jobs);
    }
    const first = rows[0]!.row;
    const finished = await options.store.finishedRows(options.batchId, first, rows.at(-1)!.row - first + 1);
    return options.queue.addBulk(jobs.filter((_job, i) => !finished.has(rows[i]!.row)));
  };
}

/** A write of the file's rows, again while Redis refuses it (options.refusals). */
function refusedWaitedOut<T>(options: EnqueueOptions, write: () => Promise<T>): Promise<T> {
  return whileRedisRefuses('queueing the file', write, options.refusals);
}

/** Rows enqueued before this run (resume) are not counted, so this is a soft bound; it only needs to be flat. */
async function waitForRoom(options: EnqueueOptions, enqueued: number, allowed: number): Promise<void> {
  const finishedKey = options.store.keys(options.batchId).finished;
  while (!options.signal?.aborted) {
    const finished = await options.store.redis.bitcount(finishedKey);
    if (enqueued - finished < allowed) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

interface FingerprintedChunk {
  toRun: InputRow[];
  /** Each row's fingerprint (its job carries it, and its job id ends with it). */
  of: (row: InputRow) => number;
  /**
   * The writes that need not hold up the chunk, awaited with it: a new batch's fingerprints, or a
   * resume's removal of the queued jobs of rows edited since (best effort: a running one is left
   * to supersede itself).
   */
  written: Promise<unknown>;
  /** What earlier runs left for these rows (carried-rows.ts), when any was looked up: `progress` only where it suits the row (carriedFits). */
  carried: CarriedRows | null;
  /** Rows that succeeded before but were not scored (the judge failed): they run again, for the judge alone. */
  rescored: Set<number>;
  /** Rows that failed before: what is carried for them is what the failed row kept (an ensemble's members' answers), not a stopped run's. */
  failedBefore: Set<number>;
}

/**
 * Records the chunk's row fingerprints (rows are contiguous by number; an invalid row between them
 * gets 0) and returns the rows to enqueue. A resume drops the rows that succeeded before with the
 * same fingerprint; an edited or moved row runs again, like a failed one. A row edited while its
 * job of the earlier run was still queued gets a new job (its id ends with the new fingerprint),
 * and the old job is removed, or supersedes itself if it is running (jobs/prompt.ts).
 */
async function recordFingerprints(options: EnqueueOptions, rows: InputRow[], counts: EnqueueCounts, lookUpCarried: boolean): Promise<FingerprintedChunk> {
  const keys = options.store.keys(options.batchId);
  const first = rows[0]!.row;
  const span = rows.at(-1)!.row - first + 1;
  const fingerprints = Buffer.alloc(span * 4);
  for (const row of rows) fingerprints.writeUInt32BE(rowFingerprint(row, options.fingerprintIds), (row.row - first) * 4);
  const of = (row: InputRow) => fingerprints.readUInt32BE((row.row - first) * 4);
  if (!options.resume) {
    // A new batch: nothing to compare, so the write need not hold up the chunk (it is awaited with it).
    const written = refusedWaitedOut(options, () => options.store.redis.setrange(keys.fingerprints, first * 4, fingerprints));
    written.catch(() => undefined); // observed now, awaited later
    return { toRun: rows, of, written, carried: null, rescored: new Set(), failedBefore: new Set() };
  }
  const [succeeded, finished, setAside, recorded, found] = await Promise.all([
    options.store.succeededRows(options.batchId, first, span),
    options.store.finishedRows(options.batchId, first, span),
    options.store.setAsideRows(options.batchId, first, span),
    options.store.redis.getrangeBuffer(keys.fingerprints, first * 4, (first + span) * 4 - 1),
    lookUpCarried ? carriedRows(options.store.redis, keys, rows.map((row) => ({ row: row.row, fingerprint: of(row) }))) : null,
  ]);
  keepInvalidRowsFingerprints(fingerprints, recorded);
  const carried = found ? carriedThatFits(found, rows, succeeded, options.carriedFits) : null;
  const unscored = (row: InputRow) => carried?.progress.get(row.row)?.judging !== undefined;
  const { failed, unfinished, changed, restored, supersededJobs, candidates, rescored } = sortRowsToRunAgain(rows, { batchId: options.batchId, first, fingerprints, recorded, succeeded, finished, setAside, unscored }, counts);
  // A job the earlier run left in the queue may have finished a row since the read above.
  const finishedMeanwhile = await refusedWaitedOut(options, () => reopenRows(options.store.redis, keys, { firstRow: first, fingerprints, failed, unfinished, changed, restored }));
  const toRun = candidates.filter((row) => !finishedMeanwhile.has(row.row));
  counts.alreadySucceeded += rows.length - toRun.length - restored.length; // those are said apart (backInFile)
  // After the reopening wrote the new fingerprints: a superseded job that runs now drops its result.
  const written = Promise.all(supersededJobs.map((jobId) => refusedWaitedOut(options, () => options.queue.remove(jobId))));
  written.catch(() => undefined); // observed now, awaited with the chunk
  return { toRun, of, written, carried, rescored, failedBefore: new Set(failed) };
}
