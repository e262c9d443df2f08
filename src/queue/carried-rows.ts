import type { Redis } from 'ioredis';
import { z } from 'zod';
import { carriedProgress } from '../execution/carried-progress.ts';
import { rowProgressSchema, type RowProgress } from '../execution/row-progress.ts';
import type { BatchKeys } from './keys.ts';
import { storedJson } from './stored-json.ts';

/**
 * Answers carried from a stopped run to its resume. A run stopped by Ctrl-C or SIGTERM takes its
 * batch's parked rows off the queue (unqueue-batch.ts), and a parked row may hold answers already
 * paid for: a judged row's answer waiting for its judge, an ensemble's members waiting for the
 * synthesis. Their progress is kept here, by row, with the row's fingerprint, and the resume
 * queues the row with it (producer.ts) as long as the row is the same in the file and still runs
 * the same way (carried-progress.ts): the row then goes on from where it was instead of paying
 * for its answers again. A worker keeps here too what a finished row holds worth a resume
 * (keptAfterFinish): an answer its judge could not score, a failed ensemble row's members' answers.
 */
const carriedRowSchema = z.object({ fingerprint: z.number().int(), progress: rowProgressSchema });

export async function carryRow(redis: Redis, keys: BatchKeys, row: number, fingerprint: number, progress: RowProgress): Promise<void> {
  await carryRows(redis, keys, [{ row, fingerprint, progress }]);
}

/** carryRow for many rows, in one round trip. */
export async function carryRows(redis: Redis, keys: BatchKeys, rows: ReadonlyArray<{ row: number; fingerprint: number; progress: RowProgress }>): Promise<void> {
  if (rows.length === 0) return;
  await redis.hset(keys.carried, Object.fromEntries(rows.map(({ row, fingerprint, progress }) => [String(row), JSON.stringify({ fingerprint, progress: carriedProgress(progress) })])));
}

export interface CarriedRows {
  /** The progress of the rows that are the same in the file as when they were carried. */
  progress: Map<number, RowProgress>;
  /** The rows looked up that had an entry, taken or stale: to delete once their jobs are queued. */
  found: number[];
}

/** The carried progress of these rows, for those whose fingerprint is the one they had when carried. */
export async function carriedRows(redis: Redis, keys: BatchKeys, rows: ReadonlyArray<{ row: number; fingerprint: number }>): Promise<CarriedRows> {
  const carried: CarriedRows = { progress: new Map(), found: [] };
  if (rows.length === 0) return carried;
  const entries = await redis.hmget(keys.carried, ...rows.map(({ row }) => String(row)));
  entries.forEach((entry, i) => {
    const { row, fingerprint } = rows[i]!;
    if (entry === null) return;
    carried.found.push(row);
    const parsed = carriedRowSchema.safeParse(storedJson(entry));
    // An entry that does not parse (a damaged key) only costs the row its answers again.
    if (parsed.success && parsed.data.fingerprint === fingerprint) carried.progress.set(row, parsed.data.progress);
  });
  return carried;
}

export async function dropCarried(redis: Redis, keys: BatchKeys, rows: readonly number[]): Promise<void> {
  if (rows.length > 0) await redis.hdel(keys.carried, ...rows.map(String));
}
