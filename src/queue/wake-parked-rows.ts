import { Job, type Queue } from 'bullmq';
import type { Logger } from 'pino';
import { batchOfJobId } from './keys.ts';

/** Jobs promoted at a time: each is read, then promoted, a round trip each way. */
const CHUNK = 200;
/** One process wakes a batch's parked rows at most this often: refusals that come meanwhile make one more wake after it. */
const WAKE_EVERY_MS = 1000;

/**
 * Wakes a batch's parked rows (its delayed jobs) now. Once the batch's budget is spent, a row parked
 * until its rate-limit slot (minutes away, on a busy limit) would sit out that wait only to be
 * refused: woken, each asks the budget at once (row-runner.ts) and ends, while a row that may still
 * run parks again for the rest of its wait (its slot, or its backoff: `retryAt`). `batchId` null:
 * every batch's (the month's cap refused, which other batches may share; a row of a batch under no
 * cap parks again). Returns how many rows were woken.
 */
async function wakeParkedRows(queue: Queue, batchId: string | null): Promise<number> {
  const ids = (await queue.getRanges(['delayed'], 0, -1)).filter((id) => batchId === null || batchOfJobId(id) === batchId);
  let woken = 0;
  for (let at = 0; at < ids.length; at += CHUNK) {
    const promoted = await Promise.allSettled(
      ids.slice(at, at + CHUNK).map(async (id) => {
        const job = await Job.fromId(queue, id);
        // A row that woke on its own meanwhile is no longer delayed: promote() refuses it, which is fine.
        await job?.promote();
        return job !== undefined;
      }),
    );
    woken += promoted.filter((outcome) => outcome.status === 'fulfilled' && outcome.value).length;
  }
  return woken;
}

/**
 * `wakeParkedRows` as a worker calls it each time a budget refuses a call for good, in the
 * background. A batch has one wake at a time, WAKE_EVERY_MS apart; the refusals that come while
 * one runs make one more after it (a row that still fitted when woken may be refused later, once
 * the budget is spent for it too). A failure only means the rows wake when they are due.
 */
export function createParkedRowWaker(queue: () => Queue, logger: Logger): (batchId: string | null) => void {
  const waking = new Map<string | null, { again: boolean }>();
  const wake = async (batchId: string | null, state: { again: boolean }): Promise<void> => {
    do {
      state.again = false;
      const woken = await wakeParkedRows(queue(), batchId).catch((error: unknown) => {
        logger.debug({ batch: batchId, err: error }, "could not wake the batch's parked rows; they end when their wait does");
        return 0;
      });
      if (woken > 0) logger.debug({ batch: batchId, woken }, "budget spent: woke the batch's parked rows");
      await new Promise((resolve) => setTimeout(resolve, WAKE_EVERY_MS).unref());
    } while (state.again);
    waking.delete(batchId);
  };
  return (batchId) => {
    const running = waking.get(batchId);
    if (running) {
      running.again = true;
      return;
    }
    const state = { again: false };
    waking.set(batchId, state);
    void wake(batchId, state);
  };
}
