/**
 * compare.csv's prompt column: each record's prompt, read again from the batch's input file in step
 * with compare.csv's lines (both go in record order), one record held at a time. results.jsonl
 * keeps no prompt, and the rows' jobs are gone once answered; the file is where the prompt is.
 * A record is taken only when it is still the one that was answered: its fingerprint, as the
 * compared model's row, is the one the batch recorded for that row (row-fingerprint.ts). A record
 * edited since, or a file gone (a `collect` on another machine), leaves the cell empty.
 */
import type { Redis } from 'ioredis';
import { readRows } from '../input/read-rows.ts';
import { fingerprintDiffers, rowFingerprint } from '../input/row-fingerprint.ts';
import { askingMessage, type ChatMessage, type InputRow, type ReadItem, type RowRules } from '../input/row.ts';

/** The prompt a message list shows a reader: its last user message, else its last message (a record of system text alone). */
export function promptText(messages: readonly ChatMessage[]): string {
  return askingMessage(messages)?.content ?? '';
}

/** Row fingerprints read from Redis this many rows at a time (4 bytes each). */
const FINGERPRINT_WINDOW = 4096;

/** A placed row of a record: its number, and the model it was put to. */
export interface PlacedRow {
  row: number;
  model: string;
}

export interface PromptSource {
  /** Record `record`'s (1-based) prompt, when the file still holds the record `placed` answered; null otherwise. Records are asked for in rising order. */
  promptOf(record: number, placed: PlacedRow): Promise<string | null>;
  close(): Promise<void>;
}

export interface PromptFile {
  path: string;
  rules: RowRules;
  /** Whether the batch's fingerprints hold the rows' ids (its meta's fingerprint_ids). */
  fingerprintIds: boolean;
  redis: Redis;
  /** The batch's fingerprints key. */
  fingerprintsKey: string;
}

export function readComparedPrompts(file: PromptFile): PromptSource {
  let items: AsyncIterator<ReadItem> | null = null;
  let current: InputRow | null = null;
  let unreadable = false;
  let window: { first: number; bytes: Buffer } | null = null;

  const recorded = async (row: number): Promise<number> => {
    if (!window || row < window.first || row >= window.first + FINGERPRINT_WINDOW) {
      window = { first: row, bytes: await file.redis.getrangeBuffer(file.fingerprintsKey, row * 4, (row + FINGERPRINT_WINDOW) * 4 - 1) };
    }
    const at = (row - window.first) * 4;
    return window.bytes.length >= at + 4 ? window.bytes.readUInt32BE(at) : 0;
  };

  /** The file's valid record `record`, or null (invalid, past the end, or the file unreadable). */
  const recordAt = async (record: number): Promise<InputRow | null> => {
    if (unreadable) return null;
    try {
      items ??= readRows(file.path, file.rules)[Symbol.asyncIterator]();
      while (current === null || current.row < record) {
        const next = await items.next();
        if (next.done) {
          unreadable = true;
          return null;
        }
        if (next.value.kind === 'row') current = next.value.value;
        else if (next.value.value.row >= record) return null;
      }
    } catch {
      // Gone, or no longer readable: the cells are left empty, compare.csv is still written.
      unreadable = true;
      return null;
    }
    return current.row === record ? current : null;
  };

  return {
    async promptOf(record, placed) {
      const row = await recordAt(record);
      if (!row) return null;
      // As the producer fingerprinted it: the compared model in its model field (a record that names its own keeps it).
      const fingerprint = rowFingerprint({ ...row, model: row.model ?? placed.model }, file.fingerprintIds);
      return fingerprintDiffers(await recorded(placed.row), fingerprint) ? null : promptText(row.messages);
    },
    async close() {
      await items?.return?.();
    },
  };
}
