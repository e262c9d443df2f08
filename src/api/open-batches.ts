import type { RunHost } from '../batch/run-batch.ts';
import { acquireBatchLease, holderName, leaseHolderAlive, type BatchLease } from '../queue/batch-lease.ts';
import { isFinishedStatus } from '../queue/batch-state.ts';
import type { BackgroundCollection } from './background-collection.ts';
import { loadBatchState } from './batch-lookup.ts';
import type { BatchStarter } from './batch-start.ts';

/** What taking up an open batch again needs (one submitted over the API whose outputs are not written yet). */
export interface OpenBatchesOptions {
  host: RunHost;
  collection: BackgroundCollection;
  starter: BatchStarter;
  say: (line: string) => void;
  /** The set of batches submitted over the API whose outputs are not written yet. */
  openKey: string;
  /** The set of those whose cancel a stopped server did not finish, and what finishes one. */
  cancellingKey: string;
  cancel: (batchId: string) => Promise<void>;
}

/** Collects the batches submitted here whose outputs a stopped server left unwritten. */
export async function resumeOpenBatches(options: OpenBatchesOptions): Promise<void> {
  for (const batchId of await options.host.session.redis.smembers(options.openKey)) {
    if (options.host.stop.aborted) return;
    await resumeOpenBatch(options, batchId);
  }
}

async function resumeOpenBatch({ host, collection, starter, say, openKey, cancellingKey, cancel }: OpenBatchesOptions, batchId: string): Promise<void> {
  const { store, redis } = host.session;
  let lease: BatchLease | null = null;
  try {
    const state = await loadBatchState(store, batchId).catch(() => null);
    if (!state || isFinishedStatus(state.meta.status)) {
      await redis.multi().srem(openKey, batchId).srem(cancellingKey, batchId).exec();
      return;
    }
    const cancelling = (await redis.sismember(cancellingKey, batchId)) === 1;
    const holder = await redis.get(store.keys(batchId).lease);
    if (holder !== null && leaseHolderAlive(holder) !== false) {
      // Another server on this Redis and prefix has it: it is that server's to finish.
      say(`[${batchId}] Left to ${holderName(holder)}, which runs it now.`);
      return;
    }
    lease = await acquireBatchLease(redis, store.keys(batchId).lease, batchId);
    if (state.meta.status === 'enqueuing' && !cancelling) {
      // Stopped while its file was being read: read the rest (rows already queued or done are kept).
      const ended = await starter.start(batchId, lease, { resume: batchId }, []);
      if (ended === 'collecting') lease = null;
    } else {
      const { meta } = state;
      // The built-in models' simulator is this process's now: its workers call them.
      if (meta.builtin_config && host.config.builtIn) host.prime?.(batchId, host.config.config, meta.model_override, meta.ab_split, Date.parse(meta.started_at ?? meta.created_at));
      collection.start(batchId, lease, { outDir: meta.out_dir, startedAt: new Date(meta.started_at ?? meta.created_at) });
      lease = null;
    }
    if (lease !== null) return;
    if (cancelling) {
      say(`[${batchId}] Finishing its cancel, which the server stopped in the middle of.`);
      await cancel(batchId);
    } else say(`[${batchId}] Going on with it: submitted before the server last stopped, its outputs are not written yet.`);
  } catch (error) {
    say(`[${batchId}] Submitted before the server last stopped, and left as it is: ${error instanceof Error ? error.message : String(error)}`);
  } finally {
    await lease?.release();
  }
}

/**
 * Redis came back with an older state of a batch being collected (an RDB snapshot): the rows it
 * forgot have no job left, so the batch's file is read again as a resume reads it, queuing every
 * row not finished, and collected anew; what the server does at start for a batch stopped mid-read.
 */
export async function requeueRolledBack({ host, starter, say }: OpenBatchesOptions, batchId: string): Promise<void> {
  if (host.stop.aborted) return; // the next server to start goes on with it
  let lease: BatchLease | null = null;
  try {
    lease = await acquireBatchLease(host.session.redis, host.session.store.keys(batchId).lease, batchId);
    if ((await starter.start(batchId, lease, { resume: batchId }, [])) === 'collecting') lease = null;
  } catch (error) {
    say(`[${batchId}] Could not queue its rows again: ${error instanceof Error ? error.message : String(error)}. Restart the server to try again; nothing written is lost.`);
  } finally {
    await lease?.release();
  }
}
