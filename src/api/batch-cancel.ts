import { setTimeout as delay } from 'node:timers/promises';
import { isFinishedStatus, type BatchMeta } from '../queue/batch-state.ts';
import { batchOfJobId } from '../queue/keys.ts';
import type { Session } from '../queue/session.ts';
import { unqueueBatch } from '../queue/unqueue-batch.ts';
import { ApiError } from './api-error.ts';
import { finishedLine, type BackgroundCollection } from './background-collection.ts';
import { batchNotFound, loadBatchState } from './batch-lookup.ts';

/** How often a cancel looks whether the batch's rows in hand have finished. */
const CANCEL_POLL_MS = 200;

export interface BatchCancel {
  /**
   * Starts cancelling a batch this server runs (see `BatchService.cancel`) and returns at once;
   * the rows in hand are waited out, and the outputs written, in the background.
   */
  request(batchId: string): Promise<void>;
  /** A cancel of the batch is under way here. */
  isCancelling(batchId: string): boolean;
}

export interface BatchCancelOptions {
  session: Session;
  collection: BackgroundCollection;
  /** Stops reading the batch's file (BatchStarter.stopReading); resolves once the reading has ended. */
  stopReading: (batchId: string) => Promise<void>;
  say: (line: string) => void;
  /** The set of batches submitted over the API whose outputs are not written yet. */
  openKey: string;
  /** The set of those whose cancel is under way: a server stopped meanwhile finishes it when it starts again. */
  cancellingKey: string;
}

export function createBatchCancel(options: BatchCancelOptions): BatchCancel {
  const { session, collection, say, cancellingKey } = options;
  const cancelling = new Set<string>();

  return {
    isCancelling: (batchId) => cancelling.has(batchId),

    async request(batchId) {
      const state = await loadBatchState(session.store, batchId);
      if (!state) throw batchNotFound(batchId);
      if (state.meta.input_error && !isFinishedStatus(state.meta.status) && !collection.isCollecting(batchId)) return stopWhileWaitingForFile(session, batchId, say);
      refuseUnlessRunningHere(batchId, state.meta, collection.isCollecting(batchId));
      if (cancelling.has(batchId)) return;
      cancelling.add(batchId);
      // No more of its rows queued: a reading left on would wait for room in the queue for ever (and queue more as rows in hand finish).
      const readingEnded = options.stopReading(batchId);
      // Kept open until the cancel is done: a server stopped before then finishes the cancel when it starts again.
      await session.redis.sadd(cancellingKey, batchId);
      say(`[${batchId}] Cancelling: its queued rows come off the queue; the rows in hand finish, then its outputs are written.`);
      void finishCancel(options, batchId, readingEnded)
        .catch((error: unknown) => sayCancelStopped(say, batchId, error))
        .finally(() => cancelling.delete(batchId));
    },
  };
}

/**
 * A batch whose file broke part-way waits for the fixed file, while the rows queued before the bad
 * line run on (QA: a cancel was refused, and they went on costing): a cancel takes them off the
 * queue. The rows in hand finish; the fixed file, posted with the batch_id, runs the rest.
 */
async function stopWhileWaitingForFile(session: Session, batchId: string, say: (line: string) => void): Promise<void> {
  const queue = session.openPromptQueue();
  try {
    const { removed } = await unqueueBatch(queue, session.store, batchId);
    say(`[${batchId}] Cancel: ${removed} queued row${removed === 1 ? '' : 's'} came off the queue; it waits for its fixed file, posted with its batch_id, which runs the rest.`);
  } finally {
    await queue.close();
  }
}

/** Only a batch still running, and collected by this server, can be cancelled here. */
function refuseUnlessRunningHere(batchId: string, meta: BatchMeta, collectedHere: boolean): void {
  if (isFinishedStatus(meta.status)) throw new ApiError(409, 'batch_finished', `batch ${batchId} is ${meta.status} already: there is nothing to cancel`);
  if (!collectedHere) {
    throw new ApiError(409, 'batch_not_running_here', `batch ${batchId} is not being run by this server (only the server a batch was posted to, or started again after it, can cancel it); \`switchyard status ${batchId}\` shows who runs it`);
  }
}

/** The cancel's slow part: wait out the rows in hand (re-taking any that parked meanwhile), then write the outputs. */
async function finishCancel({ session, collection, say, openKey, cancellingKey }: BatchCancelOptions, batchId: string, readingEnded: Promise<void>): Promise<void> {
  // The chunk the reading was queueing as the cancel came comes off the queue with the rest, not after the last unqueue (review).
  await readingEnded;
  await waitOutRowsInHand(session, batchId);
  // Every row done as the cancel came, or by the drain: the batch ends as usual, its collector clearing both keys. The
  // collector gone already (the server stopping, the outputs not written): the cancel is left for the next start.
  await collection.finishEarly(batchId, async (report) => {
    try {
      // One step, made while the collector still holds the lease: no reader sees it cancelled and still open (QA, under load), and a
      // post of it at once, which the status invites, comes after the open mark is taken off (before, it took off the new run's: a restart left that run).
      await session.redis
        .multi()
        .hset(session.store.keys(batchId).meta, { status: 'cancelled', finished_at: new Date().toISOString() })
        .srem(openKey, batchId)
        .srem(cancellingKey, batchId)
        .exec();
      const meta = await session.store.load(batchId);
      say(`[${batchId}] ${finishedLine('Cancelled', report, meta?.out_dir ?? '?')}`);
    } catch (error) {
      // Its outputs are written: the collector's "Writing the outputs stopped" would be wrong.
      sayCancelStopped(say, batchId, error);
    }
  });
}

function sayCancelStopped(say: (line: string) => void, batchId: string, error: unknown): void {
  say(`[${batchId}] The cancel stopped: ${(error instanceof Error ? error.message : String(error)).replace(/\.$/, '')}. The server finishes it when it starts again.`);
}

/** Takes the batch's rows off the queue until none of its jobs is active. */
async function waitOutRowsInHand(session: Session, batchId: string): Promise<void> {
  const queue = session.openPromptQueue();
  try {
    for (;;) {
      await unqueueBatch(queue, session.store, batchId);
      const inHand = (await queue.getRanges(['active'], 0, -1)).filter((jobId) => batchOfJobId(jobId) === batchId);
      if (inHand.length === 0) break;
      await delay(CANCEL_POLL_MS);
    }
    // A row that parked itself after the last unqueue above, and before the count of rows in hand.
    await unqueueBatch(queue, session.store, batchId);
  } finally {
    await queue.close();
  }
}
