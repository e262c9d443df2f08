/**
 * A resumed chunk's rows sorted by what becomes of them: left out (succeeded before with the same
 * content), run again (failed, never finished, edited since), put back with their answer (withdrawn
 * by an earlier run, back in the file as they were), or scored again. Pure: the producer reads
 * what Redis holds of the rows and writes the outcome (producer.ts, reopen-rows.ts).
 */
import type { InputRow } from '../input/row.ts';
import { fingerprintDiffers } from '../input/row-fingerprint.ts';
import type { RowProgress } from '../execution/row-progress.ts';
import type { CarriedRows } from './carried-rows.ts';
import { promptJobId } from './keys.ts';
import type { EnqueueCounts } from './producer.ts';

/** Whether what an earlier run left for a row suits it as this run runs it (EnqueueOptions.carriedFits). */
export type CarriedFits = (row: InputRow, progress: RowProgress, answered: boolean) => boolean;

/**
 * An invalid row between the chunk's valid ones has no fingerprint of its own (0): it keeps the one
 * recorded, which its withdrawal kept when it had succeeded (withdraw-rows.ts), so that put back as
 * it was, it keeps its answer.
 */
export function keepInvalidRowsFingerprints(fingerprints: Buffer, recorded: Buffer): void {
  for (let offset = 0; offset + 4 <= Math.min(fingerprints.length, recorded.length); offset += 4) {
    if (fingerprints.readUInt32BE(offset) === 0) recorded.copy(fingerprints, offset, offset, offset + 4);
  }
}

/** What earlier runs left for the chunk's rows, kept only where it suits the row as this run runs it; the rest is dropped with the entries read. */
export function carriedThatFits(found: CarriedRows, rows: InputRow[], succeeded: Set<number>, fits: CarriedFits | undefined): CarriedRows {
  const progress = new Map<number, RowProgress>();
  for (const row of rows) {
    const left = found.progress.get(row.row);
    if (left && (fits?.(row, left, succeeded.has(row.row)) ?? true)) progress.set(row.row, left);
  }
  return { found: found.found, progress };
}

/** A resumed chunk's rows as Redis holds them: what each finished with, and what the file held when it was queued. */
export interface RowsBefore {
  batchId: string;
  first: number;
  fingerprints: Buffer;
  recorded: Buffer;
  succeeded: Set<number>;
  finished: Set<number>;
  /** Rows withdrawn (past the file's end, or invalid) with their answer set aside (withdraw-rows.ts). */
  setAside: Set<number>;
  /** A row that succeeded before but left its answer unscored (its judge failed). */
  unscored: (row: InputRow) => boolean;
}

/**
 * The rows of a resumed chunk that get another round, by why: failed, never finished, or changed
 * since they succeeded or were queued (their bits are cleared before they run again); a row that
 * succeeded unscored is scored again if this run has a judge for it. A row that succeeded with the
 * same content is left out.
 */
export function sortRowsToRunAgain(rows: InputRow[], before: RowsBefore, counts: Pick<EnqueueCounts, 'backInFile' | 'changedSinceSucceeded'>) {
  const { first, fingerprints, recorded, succeeded, finished, setAside } = before;
  const failed: number[] = [];
  const unfinished: number[] = [];
  const changed: number[] = [];
  const restored: number[] = [];
  const supersededJobs: string[] = [];
  const candidates: InputRow[] = [];
  const rescored = new Set<number>();
  for (const row of rows) {
    const offset = (row.row - first) * 4;
    const edited = fingerprintChanged(recorded, fingerprints, offset);
    if (!finished.has(row.row) && setAside.has(row.row) && !edited && recorded.length >= offset + 4 && recorded.readUInt32BE(offset) !== 0) {
      restored.push(row.row); // back in the file as it was when it succeeded: its answer is kept
      counts.backInFile++;
      continue;
    }
    if (!finished.has(row.row)) {
      if (edited) supersededJobs.push(promptJobId(before.batchId, row.row, recorded.readUInt32BE(offset)));
      (edited ? changed : unfinished).push(row.row);
    } else if (!succeeded.has(row.row)) failed.push(row.row);
    else if (edited) {
      changed.push(row.row);
      counts.changedSinceSucceeded++;
    } else if (before.unscored(row)) {
      changed.push(row.row); // its result is replaced by the scored one
      rescored.add(row.row);
    } else continue; // succeeded before, with the same content
    candidates.push(row);
  }
  return { failed, unfinished, changed, restored, supersededJobs, candidates, rescored };
}

/** A batch from before fingerprints were kept has none (0): its rows count as unchanged. */
function fingerprintChanged(recorded: Buffer, current: Buffer, offset: number): boolean {
  if (recorded.length < offset + 4) return false;
  return fingerprintDiffers(recorded.readUInt32BE(offset), current.readUInt32BE(offset));
}
