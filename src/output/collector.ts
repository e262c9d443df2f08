import { open, stat, type FileHandle } from 'node:fs/promises';
import type { Redis } from 'ioredis';
import type { CsvDelimiter } from '../input/csv-delimiter.ts';
import { SetupError } from '../errors.ts';
import { DamagedBatchError, type BatchStore } from '../queue/batch-state.ts';
import { whileRedisRefuses, type RefusalWait } from '../queue/redis-outage.ts';
import { finishWithdrawals } from '../queue/unqueue-batch.ts';
import type { CollectionTally } from './collection-tally.ts';
import { LostOutputError, rebuildCsvJournal, shortCollectedFiles, unrecoverable } from './collected-files.ts';
import { formatCsvJournalEntry, formatJournalLine } from './ordered-results.ts';
import type { OutputPaths } from './paths.ts';
import { MALFORMED_RESULT, malformedResult, readPublishedCalls, readPublishedResult, rowNamedByEvent } from './published-event.ts';
import type { CallRecord, RowResult } from './records.ts';
import { resultCsvRecord } from './results-csv.ts';
import { readRowEvents, type StreamEntry } from './row-events.ts';
import { writeFully } from './write-fully.ts';

/**
 * The one writer of a batch's files: workers only publish events, so processing at least once
 * still gives output exactly once. It drains the batch's event stream into
 * the results journal, the CSV journal (each result already as a results.csv record) and
 * costs.jsonl, then checkpoints in Redis, in one MULTI, the stream position and the files' sizes,
 * and trims what it wrote from the stream. After a crash it cuts the files back to the checkpoint
 * and re-reads from there: no line is lost and none is written twice. Making the CSV records and
 * the report's tally as rows come in leaves little to do once the last row is in.
 */
export interface CollectOptions {
  redis: Redis;
  store: BatchStore;
  batchId: string;
  paths: OutputPaths;
  /** Stop at once (another process took the batch over); the checkpoint stays consistent. */
  signal?: AbortSignal;
  /**
   * Stop once what is in the stream now is written (Ctrl-C, after the workers here finished the
   * rows in hand): the files then hold every row finished so far.
   */
  drain?: AbortSignal;
  /** How long a read of the stream waits for an event (BLOCK_MS). */
  blockMs?: number;
  /** results.csv's field separator (the input CSV's). */
  csvDelimiter?: CsvDelimiter;
  /** Fed every row as it is written; given up when this collection resumes from a checkpoint. */
  tally?: CollectionTally | undefined;
  /** Reports the errors of the collector's own connection (a lost Redis is said once there). */
  onConnectionError?: (source: string, error: Error) => void;
  /** A checkpoint Redis refuses (full, say) is waited out this long, rather than ending the run: the rows are in the files already. */
  refusals?: RefusalWait | undefined;
  /**
   * Told (the first few times) of a result or call record a worker published that this version
   * does not read: another version's, or a damaged key. Such a result is written as a failed row
   * (malformed_result), such a call record left out, and the collection goes on.
   */
  warn?: (message: string) => void;
}

interface OpenOutput {
  handle: FileHandle;
  bytes: number;
}

/** The batching window once the rows left fit in one read: the end is near, and the summary waits on it. */
const TAIL_WINDOW_MS = 10;
/**
 * The longest blocking read while the producer has not recorded how many rows there are: when the
 * rows are all done by then (a file of invalid rows, a tiny batch), no event will end a long block.
 */
const UNKNOWN_TOTAL_BLOCK_MS = 25;

async function openAt(path: string, bytes: number | null): Promise<OpenOutput> {
  if (bytes === null) return { handle: await open(path, 'w'), bytes: 0 };
  const size = await stat(path).then((s) => s.size, () => null);
  // Nothing checkpointed yet: a missing file loses nothing.
  if (size === null && bytes === 0) return { handle: await open(path, 'w'), bytes: 0 };
  // checkCollectedFiles refused this before anything was opened; only a change since gets here.
  if (size === null || size < bytes) throw new Error(`${path} is shorter than the batch's checkpoint (${size ?? 'missing'}, ${bytes} bytes checkpointed): it was changed or deleted while collecting`);
  const handle = await open(path, 'r+');
  await handle.truncate(bytes);
  return { handle, bytes };
}

async function append(file: OpenOutput, text: string): Promise<void> {
  if (text.length === 0) return;
  const buffer = Buffer.from(text);
  await writeFully(file.handle, buffer, file.bytes);
  file.bytes += buffer.length;
}

/** Row events read from the stream at a time, waiting up to BLOCK_MS for the first. */
const READ_COUNT = 1000;
const BLOCK_MS = 500;
/**
 * After a read that did not fill READ_COUNT, wait this long before the next one, so events are
 * written (and checkpointed) in batches rather than one round of file writes and MULTI per row.
 */
const BATCH_WINDOW_MS = 100;

/** Returns once every row of the batch has a result on disk (true), or when stopped or drained early (false). */
export async function collectBatch(options: CollectOptions): Promise<boolean> {
  const keys = options.store.keys(options.batchId);
  const readCount = READ_COUNT;
  const blockMs = options.blockMs ?? BLOCK_MS;
  const batchWindowMs = BATCH_WINDOW_MS;
  const checkpoint = await options.redis.hgetall(keys.checkpoint);
  const resumed = checkpoint.last_id !== undefined;
  if (resumed) await checkCollectedFiles(options, checkpoint);
  let lastId = checkpoint.last_id ?? '0-0';
  const journal = await openAt(options.paths.journal, resumed ? Number(checkpoint.journal_bytes) : null);
  const costs = await openAt(options.paths.costs, resumed ? Number(checkpoint.costs_bytes) : null);
  const csv = await openAt(options.paths.csvJournal, resumed ? Number(checkpoint.csv_journal_bytes ?? 0) : null);
  if (resumed) options.tally?.giveUp();
  const files: CollectedFiles = { journal, costs, csv, ...(await recordedMetadataKeys(options)) };
  // Calls of rows a stop took off the queue, left unpublished by a process killed in the middle: into the stream first.
  await finishWithdrawals(options.store, options.batchId);
  // XREAD BLOCK holds its connection, so the collector reads on a connection of its own.
  const reader = options.redis.duplicate();
  // Without a listener ioredis prints every reconnect failure to stderr as an "unhandled error event".
  reader.on('error', (error: Error) => options.onConnectionError?.('collector', error));
  let totalKnown = false;
  const seen: SeenProgress = { finishedOnceRead: null };
  const warnings = new MalformedWarnings(options.batchId, options.warn);
  try {
    for (;;) {
      if (options.signal?.aborted) return false;
      if (options.drain?.aborted) {
        for (let rest = await readRowEvents(reader, keys, lastId, readCount, 0); rest.length > 0; rest = await readRowEvents(reader, keys, lastId, readCount, 0)) {
          lastId = await writeEntries(options, files, rest, warnings);
        }
        return false;
      }
      const entries = await readRowEvents(reader, keys, lastId, readCount, totalKnown ? blockMs : Math.min(blockMs, UNKNOWN_TOTAL_BLOCK_MS));
      // The rows-left count is read while the entries are written, not after: one round trip less
      // per read, and the last row's summary comes sooner. It is read after the XREAD above, so when
      // it says none are left, the drain below still sees every event.
      const counting = entries.length < readCount ? unfinishedRows(options, seen) : null;
      counting?.catch(() => undefined); // awaited below; a failed write must not leave it unobserved
      if (entries.length > 0) lastId = await writeEntries(options, files, entries, warnings);
      if (counting) {
        const rowsLeft = await counting;
        totalKnown = Number.isFinite(rowsLeft);
        if (rowsLeft === 0) {
          // Every row's event was added with its "finished" bit, so one more read drains the rest.
          const rest = await readRowEvents(reader, keys, lastId, 1_000_000, 0);
          if (rest.length > 0) lastId = await writeEntries(options, files, rest, warnings);
          return true;
        }
        // Near the end a full window would only delay the summary. When the last read held at least
        // as many rows as are left, the next event may well be the last: read it as soon as it lands.
        const windowMs = rowsLeft <= entries.length ? 0 : rowsLeft <= readCount ? Math.min(batchWindowMs, TAIL_WINDOW_MS) : batchWindowMs;
        if (entries.length > 0 && windowMs > 0) await new Promise((resolve) => setTimeout(resolve, windowMs));
      }
    }
  } finally {
    reader.disconnect();
    await Promise.all([journal.handle.close(), costs.handle.close(), csv.handle.close()]);
  }
}

/**
 * Before a resumed collection cuts its files back to the checkpoint: a lost CSV journal is made
 * again from the results journal (its new size put in `checkpoint`); a lost results journal or
 * costs.jsonl stops it, saying what is lost and how to go on (LostOutputError, exit 2).
 */
async function checkCollectedFiles(options: CollectOptions, checkpoint: Record<string, string>): Promise<void> {
  const short = await shortCollectedFiles(options.paths, checkpoint);
  if (short.length === 0) return;
  const lost = unrecoverable(short);
  if (lost.length > 0) {
    const meta = await options.store.load(options.batchId);
    if (!meta) throw new DamagedBatchError(options.batchId, 'gone');
    throw new LostOutputError(meta, lost, 'run the same command again');
  }
  const metadataKeys = await options.store.metadataKeys(options.batchId);
  const keys = options.store.keys(options.batchId);
  checkpoint.csv_journal_bytes = String(await rebuildCsvJournal(options.redis, keys.checkpoint, options.paths, Number(checkpoint.journal_bytes ?? 0), metadataKeys, options.csvDelimiter));
}

interface CollectedFiles {
  journal: OpenOutput;
  costs: OpenOutput;
  csv: OpenOutput;
  /** results.csv's metadata columns as known so far (the producer adds them before it queues a row). */
  metadataKeys: string[];
  /** The same keys, to look a result's up in: searching the list took each result its keys times the batch's (QA: a CSV of 16,000 columns, 100 rows, took 2 minutes). */
  knownKeys: Set<string>;
}

async function recordedMetadataKeys(options: CollectOptions): Promise<Pick<CollectedFiles, 'metadataKeys' | 'knownKeys'>> {
  const metadataKeys = await options.store.metadataKeys(options.batchId);
  return { metadataKeys, knownKeys: new Set(metadataKeys) };
}

async function writeEntries(options: CollectOptions, files: CollectedFiles, entries: StreamEntry[], warnings: MalformedWarnings): Promise<string> {
  const checked = entries.map((entry) => checkEntry(options.batchId, entry, warnings));
  if (checked.some(({ written }) => written !== null && hasUnknownKey(written.result, files.knownKeys))) Object.assign(files, await recordedMetadataKeys(options));
  let journalText = '';
  let costsText = '';
  let csvText = '';
  // Rows whose last result here is one written for a malformed one (a good one after it leaves its bits as they are).
  const malformedRows = new Set<number>();
  for (const { written, calls, callsJsonl } of checked) {
    costsText += callsJsonl;
    if (written === null) {
      options.tally?.addCalls(calls);
      continue;
    }
    const { row, result, resultJson, malformed } = written;
    options.tally?.add(row, result, calls);
    if (malformed) malformedRows.add(row);
    else malformedRows.delete(row);
    journalText += formatJournalLine(row, resultJson);
    csvText += formatCsvJournalEntry(row, files.metadataKeys.length, resultCsvRecord(result, files.metadataKeys, options.csvDelimiter));
  }
  await Promise.all([append(files.journal, journalText), append(files.costs, costsText), append(files.csv, csvText)]);
  const lastId = entries.at(-1)!.id;
  const keys = options.store.keys(options.batchId);
  const checkpoint = { last_id: lastId, journal_bytes: files.journal.bytes, costs_bytes: files.costs.bytes, csv_journal_bytes: files.csv.bytes };
  await whileRedisRefuses('recording what was written', () => {
    const multi = options.redis.multi().hset(keys.checkpoint, checkpoint).xtrim(keys.events, 'MINID', lastId);
    // Written as failed, so counted as failed: a resume runs such a row again.
    for (const row of malformedRows) multi.setbit(keys.succeeded, row, 0);
    return multi.exec();
  }, options.refusals);
  return lastId;
}

/** An event as it is written: checked, a result that is not one replaced by a failed result, call records that are not ones left out. */
interface CheckedEntry {
  /** The result and the row it is written under; null for calls without a result (a superseded job's, or an event that names no row). */
  written: { row: number; result: RowResult; resultJson: string; malformed: boolean } | null;
  calls: CallRecord[];
  callsJsonl: string;
}

const MALFORMED_CAUSE = 'a worker of another Switchyard version published it (run the same version everywhere), or its key in Redis was damaged.';

function checkEntry(batchId: string, entry: StreamEntry, warnings: MalformedWarnings): CheckedEntry {
  const calls = readPublishedCalls(entry.callsJsonl);
  for (const problem of calls.problems) {
    warnings.warn(`batch ${batchId}, row ${entry.row ?? JSON.stringify(entry.rowField)}: a call record published for the row is not one this Switchyard reads (${problem}), so it is left out of costs.jsonl and the report (the batch's cost and budget counted it already): ${MALFORMED_CAUSE}`);
  }
  const kept = { calls: calls.calls, callsJsonl: calls.jsonl };
  if (entry.resultJson === '') return { written: null, ...kept };
  if (entry.row === null) {
    // Never written under row NaN (or 0, for an empty field): under the row its result or calls name, as failed, or not at all.
    const damaged = `has a damaged \`row\` field (${JSON.stringify(entry.rowField)}, expected a row number)`;
    const named = rowNamedByEvent(entry.resultJson, calls.calls);
    if (named) return { written: malformedEntry(batchId, named.row, `the event published for this row ${damaged}`, named.salvaged, warnings), ...kept };
    warnings.warn(`batch ${batchId}: a published row event ${damaged}, and neither its result nor its calls name a row: its result is left out of results.jsonl (its calls are kept in costs.jsonl), so the batch's outputs lack that row. ${MALFORMED_CAUSE}`);
    return { written: null, ...kept };
  }
  const read = readPublishedResult(entry.resultJson, entry.row);
  if ('result' in read) return { written: { row: entry.row, result: read.result, resultJson: entry.resultJson, malformed: false }, ...kept };
  return { written: malformedEntry(batchId, entry.row, `the result published for this row is not one this Switchyard reads (${read.problem})`, read.salvaged, warnings), ...kept };
}

/** A failed result (malformed_result) in place of a published one that is not one, said in the log: a resume runs the row again. */
function malformedEntry(batchId: string, row: number, problem: string, salvaged: Record<string, unknown>, warnings: MalformedWarnings): NonNullable<CheckedEntry['written']> {
  const what = `${problem}: ${MALFORMED_CAUSE}`;
  warnings.warn(`batch ${batchId}, row ${row}: ${what} It is written as failed (${MALFORMED_RESULT}); \`switchyard run --resume ${batchId}\` runs it again (for a batch posted to \`switchyard serve\`: posting its file again with \`batch_id=${batchId}\`).`);
  const result = malformedResult(row, salvaged, `${what} Resuming the batch runs the row again.`);
  return { row, result, resultJson: JSON.stringify(result), malformed: true };
}

/** Lines logged per collection about malformed events before the rest are only counted (each such row is in results.jsonl). */
const MALFORMED_LOGGED = 3;

/** Says the first few malformed events of a collection, then that there are more: a worker of another version makes every row one. */
class MalformedWarnings {
  #count = 0;
  readonly #batchId: string;
  readonly #say: ((message: string) => void) | undefined;
  constructor(batchId: string, say: ((message: string) => void) | undefined) {
    this.#batchId = batchId;
    this.#say = say;
  }
  warn(message: string): void {
    this.#count += 1;
    if (this.#count <= MALFORMED_LOGGED) this.#say?.(message);
    else if (this.#count === MALFORMED_LOGGED + 1) this.#say?.(`batch ${this.#batchId}: more published rows or calls are not ones this Switchyard reads; not logged one by one (such rows are in results.jsonl as failed with ${MALFORMED_RESULT}, and the report counts them)`);
  }
}

function hasUnknownKey(result: RowResult, known: ReadonlySet<string>): boolean {
  for (const key in result.metadata) if (!known.has(key)) return true;
  return false;
}

/** What the collector has seen of the batch's progress, to tell when Redis went back in time. */
interface SeenProgress {
  /** Rows finished when the file was last seen read whole (null: not seen yet). */
  finishedOnceRead: number | null;
}

/**
 * Rows without a result yet; unknown (Infinity) while the file is still being enqueued. Once the
 * file has been read whole, finished rows only grow and the batch is never `enqueuing` again;
 * otherwise Redis came back with older data (an RDB snapshot, a lost AOF second), whose rows no
 * worker will ever finish: that stops the collection rather than wait for ever.
 */
async function unfinishedRows(options: CollectOptions, seen: SeenProgress): Promise<number> {
  const progress = await options.store.progress(options.batchId);
  // The batch was saved before collection began: no record now means Redis lost it, and no row would ever end the wait.
  if (progress === null) throw new DamagedBatchError(options.batchId, 'gone');
  const read = progress.total !== null && progress.status !== 'enqueuing';
  if (seen.finishedOnceRead !== null && (!read || progress.finished < seen.finishedOnceRead)) {
    throw new RedisWentBackError(options.batchId, seen.finishedOnceRead, progress.finished);
  }
  if (!read) return Number.POSITIVE_INFINITY;
  seen.finishedOnceRead = progress.finished;
  return Math.max(0, progress.total! - progress.finished);
}

/** Redis answers with an older state of the batch than it had: what to do. */
export class RedisWentBackError extends SetupError {
  override name = 'RedisWentBackError';
  readonly finishedBefore: number;
  readonly finishedNow: number;
  constructor(batchId: string, before: number, now: number) {
    super(
      `batch ${batchId}: Redis came back with older data than it had (${before} rows finished before, ${now} now: restarted from an RDB snapshot, or lost its last AOF writes), ` +
        `so some rows' jobs are gone and the run would wait for them for ever. Stop here; \`switchyard run --resume ${batchId}\` writes every row once (rows whose answers Redis forgot run again). ` +
        'To keep every write, run Redis with appendonly yes and appendfsync always.',
    );
    this.finishedBefore = before;
    this.finishedNow = now;
  }
}
