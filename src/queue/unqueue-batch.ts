import type { Queue } from 'bullmq';
import { isFinishedStatus, type BatchStore } from './batch-state.ts';
import { leaseHolderAlive } from './batch-lease.ts';
import { batchOfJobId } from './keys.ts';

/** Jobs looked at per round: their data is read, then they are removed, a round trip each way. */
const CHUNK = 500;

export interface Unqueued {
  /** Rows taken off the queue: a resume queues them again from the file. */
  removed: number;
  /** Rows left in the queue: parked with calls already made (their cost records travel with them), or taken by a worker meanwhile. */
  kept: number;
}

/** The ids of the jobs waiting or parked in the queue, by batch. */
async function queuedJobsByBatch(queue: Queue): Promise<Map<string, string[]>> {
  const byBatch = new Map<string, string[]>();
  for (const id of await queue.getRanges(['waiting', 'prioritized', 'delayed'], 0, -1)) {
    const batchId = batchOfJobId(id);
    if (batchId === null) continue;
    const ids = byBatch.get(batchId);
    if (ids) ids.push(id);
    else byBatch.set(batchId, [id]);
  }
  return byBatch;
}

/**
 * Takes a stopped batch's rows off the queue, so that a worker serving the queue (the next run of
 * another batch, a `switchyard worker`) does not run them, and pay for them, while nobody collects
 * the batch. Nothing is lost: they are unfinished, and `run --resume` queues them again. A parked
 * row that has made calls stays, since its job holds those calls' cost records; so does a row a
 * worker has taken meanwhile (BullMQ does not remove a locked job).
 */
export async function unqueueBatch(queue: Queue, batchId: string): Promise<Unqueued> {
  return unqueueJobs(queue, (await queuedJobsByBatch(queue)).get(batchId) ?? []);
}

/**
 * The same for batches whose run is gone without taking its rows off (kill -9, out of memory): a
 * batch that is not finished, was not --detach'ed, and whose lease is free or held by a process of
 * this machine that died. Returns what came off, by batch. A detached batch is any worker's to
 * serve, and one whose run lives (here or elsewhere) is its run's: both are left alone.
 */
export async function unqueueOrphanedBatches(queue: Queue, store: BatchStore, ownBatchId: string): Promise<Map<string, Unqueued>> {
  const done = new Map<string, Unqueued>();
  for (const [batchId, ids] of await queuedJobsByBatch(queue)) {
    if (batchId === ownBatchId) continue;
    const meta = await store.load(batchId).catch(() => null); // a damaged batch is left as it is
    if (!meta || meta.detached !== false || isFinishedStatus(meta.status)) continue;
    const holder = await store.redis.get(store.keys(batchId).lease);
    if (holder !== null && leaseHolderAlive(holder) !== false) continue;
    done.set(batchId, await unqueueJobs(queue, ids));
  }
  return done;
}

async function unqueueJobs(queue: Queue, ids: readonly string[]): Promise<Unqueued> {
  const result: Unqueued = { removed: 0, kept: 0 };
  for (let start = 0; start < ids.length; start += CHUNK) {
    const chunk = ids.slice(start, start + CHUNK);
    const jobs = await Promise.all(chunk.map((id) => queue.getJob(id)));
    const outcomes = await Promise.all(
      jobs.map(async (job): Promise<'removed' | 'kept' | 'gone'> => {
        if (!job) return 'gone'; // finished meanwhile
        if (hasCalls(job.data)) return 'kept';
        return (await queue.remove(job.id!)) === 1 ? 'removed' : 'kept';
      }),
    );
    for (const outcome of outcomes) if (outcome !== 'gone') result[outcome]++;
  }
  return result;
}

/** A parked row's job data with calls made (an ensemble row's members may have made some). */
function hasCalls(data: unknown): boolean {
  const progress = (data as { progress?: { calls?: unknown[]; ensemble?: unknown } } | null)?.progress;
  return progress !== undefined && ((progress.calls?.length ?? 0) > 0 || progress.ensemble !== undefined);
}
