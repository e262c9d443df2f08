import { closeSync, fsyncSync, openSync, readSync, writeSync } from 'node:fs';
import { rename, stat, unlink } from 'node:fs/promises';
import { basename } from 'node:path';
import type { Redis } from 'ioredis';
import type { CsvDelimiter } from '../input/csv-delimiter.ts';
import { UsageError } from '../errors.ts';
import type { BatchMeta, BatchStore } from '../queue/batch-state.ts';
import { formatCsvJournalEntry } from './ordered-results.ts';
import type { OutputPaths } from './paths.ts';
import type { RowResult } from './records.ts';
import { resultCsvRecord } from './results-csv.ts';

/**
 * The files the collector appends to and whose sizes it checkpoints in Redis (collector.ts): the
 * results journal, the CSV journal and costs.jsonl. A resumed collection cuts each back to its
 * checkpoint, so one that is now shorter (deleted, cut, replaced) has lost records:
 * - the results journal: every result collected so far, kept nowhere else (results.jsonl is
 *   written from it, and Redis records those rows as done, so no run would answer them again);
 * - costs.jsonl: every call's record, kept nowhere else (Redis drops a row's event once written);
 * - the CSV journal: each result as a results.csv record, made from the result alone, so it is
 *   written again from the results journal (`rebuildCsvJournal`).
 * A file whose checkpoint is 0 bytes held nothing yet: missing, it is simply made again.
 */
export type CollectedFile = 'journal' | 'csvJournal' | 'costs';

/** A collected file shorter than the batch's checkpoint says it is. */
export interface ShortFile {
  file: CollectedFile;
  path: string;
  /** Its size by the checkpoint. */
  checkpointBytes: number;
  /** Its size now; null when it is missing. */
  bytes: number | null;
}

/** The checkpoint's hash field holding each file's size. */
const CHECKPOINT_FIELD: Record<CollectedFile, string> = { journal: 'journal_bytes', csvJournal: 'csv_journal_bytes', costs: 'costs_bytes' };
const COLLECTED_FILES: readonly CollectedFile[] = ['journal', 'csvJournal', 'costs'];

/** The collected files that are shorter than `checkpoint` (the batch's checkpoint hash; none when it has none). */
export async function shortCollectedFiles(paths: OutputPaths, checkpoint: Record<string, string>): Promise<ShortFile[]> {
  if (checkpoint.last_id === undefined) return [];
  const short: ShortFile[] = [];
  for (const file of COLLECTED_FILES) {
    const checkpointBytes = Number(checkpoint[CHECKPOINT_FIELD[file]] ?? 0);
    const path = paths[file];
    const bytes = await stat(path).then((s) => s.size, () => null);
    if ((bytes ?? 0) < checkpointBytes) short.push({ file, path, checkpointBytes, bytes });
  }
  return short;
}

/**
 * The CSV journal made again from the results journal's first `journalBytes` (its checkpointed
 * part), and its size checkpointed. The stale file goes first and the new one takes its place
 * last, so a crash at any step leaves a CSV journal shorter than its checkpoint (missing), which
 * the next collection makes again: never a file longer than its checkpoint, that the cut to it
 * would leave with a broken record.
 */
export async function rebuildCsvJournal(redis: Redis, checkpointKey: string, paths: OutputPaths, journalBytes: number, metadataKeys: readonly string[], csvDelimiter: CsvDelimiter | undefined): Promise<number> {
  const temporary = `${paths.csvJournal}.rebuilding`;
  const out = openSync(temporary, 'w');
  let bytes = 0;
  try {
    let text = '';
    const flush = () => {
      const buffer = Buffer.from(text);
      writeFully(out, buffer);
      bytes += buffer.length;
      text = '';
    };
    for (const { row, json } of journalEntries(paths.journal, journalBytes)) {
      text += formatCsvJournalEntry(row, metadataKeys.length, resultCsvRecord(JSON.parse(json) as RowResult, metadataKeys, csvDelimiter));
      if (text.length >= 1 << 20) flush();
    }
    flush();
    fsyncSync(out);
  } finally {
    closeSync(out);
  }
  await unlink(paths.csvJournal).catch((error: NodeJS.ErrnoException) => {
    if (error.code !== 'ENOENT') throw error;
  });
  await redis.hset(checkpointKey, CHECKPOINT_FIELD.csvJournal, bytes);
  await rename(temporary, paths.csvJournal);
  return bytes;
}

/** Every byte of `buffer` appended to the file (writeSync may write less than asked). */
function writeFully(fd: number, buffer: Buffer): void {
  for (let done = 0; done < buffer.length; ) done += writeSync(fd, buffer, done, buffer.length - done);
}

/** The results journal's `<row>\t<result JSON>` lines within its first `limit` bytes. */
function* journalEntries(path: string, limit: number): Generator<{ row: number; json: string }> {
  const fd = openSync(path, 'r');
  try {
    const buffer = Buffer.allocUnsafe(1 << 16);
    let pending = Buffer.alloc(0);
    for (let offset = 0; offset < limit; ) {
      const read = readSync(fd, buffer, 0, Math.min(buffer.length, limit - offset), offset);
      if (read === 0) break;
      offset += read;
      let data = Buffer.concat([pending, buffer.subarray(0, read)]);
      for (let nl = data.indexOf(10); nl !== -1; nl = data.indexOf(10)) {
        const line = data.subarray(0, nl).toString('utf8');
        data = data.subarray(nl + 1);
        const tab = line.indexOf('\t');
        const row = Number(line.slice(0, tab));
        if (tab > 0 && Number.isInteger(row)) yield { row, json: line.slice(tab + 1) };
      }
      pending = Buffer.from(data);
    }
  } finally {
    closeSync(fd);
  }
}

/** What each collected file held, for a person who finds it gone. */
const HELD: Record<CollectedFile, string> = {
  journal: 'every result collected so far (results.jsonl and results.csv are written from it), which is kept nowhere else: Redis records those rows as done, so no run would answer them again, and the outputs would lack them',
  costs: "the record of every model call made so far (its tokens, cost and latency), which is kept nowhere else: Redis drops a row's calls once they are written here, so it cannot be written again, nor the report's totals be counted without it",
  csvJournal: 'every result as a results.csv record; it is made again from the results journal, which is lost too',
};

/** "…/costs.jsonl is missing (the batch's checkpoint has 870 bytes of it). It held …" */
export function shortFileText(short: ShortFile): string {
  const state =
    short.bytes === null
      ? `is missing (the batch's checkpoint has ${short.checkpointBytes} bytes of it)`
      : `is shorter than the batch's checkpoint (${short.bytes} of ${short.checkpointBytes} bytes): it was cut or replaced, and what it held past its first ${short.bytes} bytes is lost`;
  return `${short.path} ${state}. It held ${HELD[short.file]}.`;
}

/** The ways on for a batch whose collected files are lost: restore them, or start a new batch. */
function waysForwardText(meta: Pick<BatchMeta, 'batch_id' | 'input' | 'builtin_config'>, short: readonly ShortFile[], again: string): string {
  const names = short.map((s) => basename(s.path)).join(' and ');
  const config = meta.builtin_config ? '' : ' --config <its config>';
  return (
    `To go on with batch ${meta.batch_id}, put ${names} back as ${short.length === 1 ? 'it was' : 'they were'} (from a backup, or the trash), then ${again}. ` +
    `Or start the batch afresh, a new batch whose rows are all run (and paid for) again: switchyard run ${meta.input}${config} --out <another folder> (a new batch id is made; --batch-id names one).`
  );
}

/** A batch's collection cannot go on: files it checkpointed are shorter than the checkpoint (exit 2). */
export class LostOutputError extends UsageError {
  override name = 'LostOutputError';
  readonly short: readonly ShortFile[];
  /** `again`: what to do once the files are back; `head`: what cannot be done without them. */
  constructor(meta: Pick<BatchMeta, 'batch_id' | 'input' | 'builtin_config'>, short: readonly ShortFile[], again: string, head = `batch ${meta.batch_id} cannot go on`) {
    super(`${head}: ${short.map(shortFileText).join(' ')}\n${waysForwardText(meta, short, again)}`);
    this.short = short;
  }
}

/** Refuses (LostOutputError) a batch whose results journal or costs.jsonl lost records; a lost CSV journal alone is made again when collected. */
export async function refuseLostCollectedFiles(store: BatchStore, meta: BatchMeta, paths: OutputPaths, again: string): Promise<void> {
  const short = await shortCollectedFiles(paths, await store.redis.hgetall(store.keys(meta.batch_id).checkpoint));
  const lost = unrecoverable(short);
  if (lost.length > 0) throw new LostOutputError(meta, lost, again);
}

/** The short files that cannot be made again: all but a CSV journal beside a whole results journal. */
export function unrecoverable(short: readonly ShortFile[]): ShortFile[] {
  const journalLost = short.some((s) => s.file === 'journal');
  return short.filter((s) => s.file !== 'csvJournal' || journalLost);
}
