import { open, stat, type FileHandle } from 'node:fs/promises';
import type { Redis } from 'ioredis';
import type { BatchStore } from '../queue/batch-state.ts';
import { formatJournalLine } from './ordered-results.ts';
import type { OutputPaths } from './paths.ts';
import { readRowEvents, type StreamEntry } from './row-events.ts';

/**
 * The one writer of a batch's files (DESIGN principle 2). It drains the batch's event stream into
 * the journal and costs.jsonl, then checkpoints in Redis, in one MULTI, the stream position and the
 * files' sizes, and trims what it wrote from the stream. After a crash it cuts the files back to the
 * checkpoint and re-reads from there: no line is lost and none is written twice.
 */
export interface CollectOptions {
  redis: Redis;
  store: BatchStore;
  batchId: string;
  paths: OutputPaths;
  /** Stop early (Ctrl-C); the checkpoint stays consistent. */
  signal?: AbortSignal;
  readCount?: number;
  blockMs?: number;
  /**
   * After a read that did not fill `readCount`, wait this long before the next one, so events are
   * written (and checkpointed) in batches rather than one round of file writes and MULTI per row.
   */
  batchWindowMs?: number;
}

interface OpenOutput {
  handle: FileHandle;
  bytes: number;
}

/** The batching window once the rows left fit in one read: the end is near, and the summary waits on it. */
const TAIL_WINDOW_MS = 10;

async function openAt(path: string, bytes: number | null): Promise<OpenOutput> {
  if (bytes === null) return { handle: await open(path, 'w'), bytes: 0 };
  const size = await stat(path).then((s) => s.size, () => -1);
  if (size < bytes) {
    throw new Error(`${path} is shorter than the batch's checkpoint (${size} < ${bytes} bytes): it was changed or deleted. Resume into the original --out folder, or start a new batch.`);
  }
  const handle = await open(path, 'r+');
  await handle.truncate(bytes);
  return { handle, bytes };
}

async function append(file: OpenOutput, text: string): Promise<void> {
  if (text.length === 0) return;
  const buffer = Buffer.from(text);
  await file.handle.write(buffer, 0, buffer.length, file.bytes);
  file.bytes += buffer.length;
}

/** Returns once every row of the batch has a result on disk (or the signal aborts: returns false). */
export async function collectBatch(options: CollectOptions): Promise<boolean> {
  const keys = options.store.keys(options.batchId);
  const readCount = options.readCount ?? 1000;
  const blockMs = options.blockMs ?? 500;
  const batchWindowMs = options.batchWindowMs ?? 100;
  const checkpoint = await options.redis.hgetall(keys.checkpoint);
  const resumed = checkpoint.last_id !== undefined;
  let lastId = checkpoint.last_id ?? '0-0';
  const journal = await openAt(options.paths.journal, resumed ? Number(checkpoint.journal_bytes) : null);
  const costs = await openAt(options.paths.costs, resumed ? Number(checkpoint.costs_bytes) : null);
  // XREAD BLOCK holds its connection, so the collector reads on a connection of its own.
  const reader = options.redis.duplicate();
  try {
    for (;;) {
      if (options.signal?.aborted) return false;
      const entries = await readRowEvents(reader, keys, lastId, readCount, blockMs);
      if (entries.length > 0) {
        lastId = await writeEntries(options, journal, costs, entries);
      }
      if (entries.length < readCount) {
        const rowsLeft = await unfinishedRows(options);
        if (rowsLeft === 0) {
          // Every row's event was added with its "finished" bit, so one more read drains the rest.
          const rest = await readRowEvents(reader, keys, lastId, 1_000_000, 0);
          if (rest.length > 0) lastId = await writeEntries(options, journal, costs, rest);
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
    await journal.handle.close();
    await costs.handle.close();
  }
}

async function writeEntries(options: CollectOptions, journal: OpenOutput, costs: OpenOutput, entries: StreamEntry[]): Promise<string> {
  let journalText = '';
  let costsText = '';
  for (const entry of entries) {
    journalText += formatJournalLine(entry.row, entry.resultJson);
    costsText += entry.callsJsonl;
  }
  await append(journal, journalText);
  await append(costs, costsText);
  const lastId = entries.at(-1)!.id;
  const keys = options.store.keys(options.batchId);
  await options.redis
    .multi()
    .hset(keys.checkpoint, { last_id: lastId, journal_bytes: journal.bytes, costs_bytes: costs.bytes })
    .xtrim(keys.events, 'MINID', lastId)
    .exec();
  return lastId;
}

/** Rows without a result yet; unknown (Infinity) while the file is still being enqueued. */
async function unfinishedRows(options: CollectOptions): Promise<number> {
  const progress = await options.store.progress(options.batchId);
  if (progress === null || progress.total === null || progress.status === 'enqueuing') return Number.POSITIVE_INFINITY;
  return Math.max(0, progress.total - progress.finished);
}
