import type { Redis } from 'ioredis';
import { DamagedBatchError, isFinishedStatus, type BatchMeta, type BatchStore } from './batch-state.ts';
import { holderName, leaseHolderAlive } from './batch-lease.ts';
import { batchIndexKey } from './keys.ts';

export type ForgetOutcome =
  | { forgotten: true; keys: number }
  /** `missing`: Redis has no such batch (a mistyped id, or one forgotten already). */
  | { forgotten: false; reason: string; missing?: true };

/**
 * Deletes what Redis keeps of a finished batch (meta, config, bitmaps, row fingerprints, budget,
 * checkpoint) and takes it off the batch list. A batch still running, or one interrupted with rows
 * in the queue, is refused: its jobs would outlive it. Its output files are not touched.
 */
export async function forgetBatch(redis: Redis, store: BatchStore, batchId: string): Promise<ForgetOutcome> {
  const meta = await loadUnlessDamaged(store, batchId);
  if (!meta) return { forgotten: false, reason: `no batch "${batchId}"`, missing: true };
  // What is left of a batch whose keys were deleted or evicted cannot be run again: it may go.
  const keys = store.keys(batchId);
  const holder = await redis.get(keys.lease);
  // A holder on this machine that died (kill -9) has left a lease that only runs out; it runs nothing.
  if (holder !== null && leaseHolderAlive(holder) !== false) return { forgotten: false, reason: `${batchId} is being run by a process right now (${holderName(holder)})` };
  if (meta !== 'damaged' && !isFinishedStatus(meta.status)) {
    // A file that stopped part-way needs fixing first: a resume would read it as it is and stop again.
    const next = meta.input_error
      ? `its file could not be read to its end, and \`switchyard status ${batchId}\` says how to finish it`
      : meta.detached
        ? `workers run its rows, and \`switchyard collect ${batchId}\` writes its outputs`
        : `\`switchyard run --resume ${batchId}\` finishes it`;
    return { forgotten: false, reason: `${batchId} is not finished (${meta.status}): ${next}; then it can be forgotten` };
  }
  // Every key of the batch shares its "{id}" hash tag; ids hold no glob characters (keys.ts).
  let deleted = 0;
  let cursor = '0';
  do {
    const [next, found] = await redis.scan(cursor, 'MATCH', `${keys.meta}*`, 'COUNT', 1000);
    cursor = next;
    if (found.length > 0) deleted += await redis.unlink(...found);
  } while (cursor !== '0');
  await redis.zrem(batchIndexKey(store.space), batchId);
  return { forgotten: true, keys: deleted };
}

/** Finished batches whose last run ended before `before` (epoch ms), oldest first; and the unfinished ones whose last run started before it. */
export async function batchesOlderThan(store: BatchStore, before: number): Promise<{ finished: string[]; unfinished: string[] }> {
  const ids = await store.redis.zrange(batchIndexKey(store.space), '0', '-1');
  const finished: string[] = [];
  // Not finished, started that long ago (a night stopped by its timeout, a killed run): kept, but named, or they pile up unseen.
  const unfinished: string[] = [];
  for (const id of ids) {
    const meta = await loadUnlessDamaged(store, id);
    if (!meta || meta === 'damaged') continue;
    if (isFinishedStatus(meta.status)) {
      if (meta.finished_at !== undefined && Date.parse(meta.finished_at) < before) finished.push(id);
    } else if (Date.parse(meta.started_at ?? meta.created_at) < before) unfinished.push(id);
  }
  return { finished, unfinished };
}

async function loadUnlessDamaged(store: BatchStore, batchId: string): Promise<BatchMeta | 'damaged' | null> {
  try {
    return await store.load(batchId);
  } catch (error) {
    if (error instanceof DamagedBatchError) return 'damaged';
    throw error;
  }
}
