import { Job, type Queue } from 'bullmq';
import type { Logger } from 'pino';
import { batchOfJobId } from './keys.ts';

/** Jobs promoted at a time: each is read, then promoted, a round trip each way. */
const CHUNK = 200;
/** One process wakes a batch's parked rows at most this often. */
const WAKE_EVERY_MS = 30_000;

/**
 * Wakes a batch's parked rows (its delayed jobs) now. Once the batch's budget is spent, a row parked
 * until its rate-limit slot (minutes away, on a busy limit) would sit out that wait only to be
 * refused: woken, each asks the budget at once (row-runner.ts) and ends, while a row that may still
 * run parks again for the rest of its wait (its slot, or its backoff: `retryAt`). Returns how many
 * rows were woken.
 */
export async function wakeParkedRows(queue: Queue, batchId: string): Promise<number> {
  const ids = (await queue.getRanges(['delayed'], 0, -1)).filter((id) => batchOfJobId(id) === batchId);
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
 * `wakeParkedRows` as a worker calls it each time its budget refuses a row: at most once per batch
 * every WAKE_EVERY_MS, in the background. A failure only means the rows wake when they are due.
 */
export function createParkedRowWaker(queue: () => Queue, logger: Logger, now: () => number = Date.now): (batchId: string) => void {
  const lastWake = new Map<string, number>();
  return (batchId) => {
    const at = now();
    if (at - (lastWake.get(batchId) ?? Number.NEGATIVE_INFINITY) < WAKE_EVERY_MS) return;
    lastWake.set(batchId, at);
    void wakeParkedRows(queue(), batchId).then(
      (woken) => {
        if (woken > 0) logger.debug({ batch: batchId, woken }, 'budget spent: woke the batch\'s parked rows');
      },
      (error: unknown) => logger.debug({ batch: batchId, err: error }, 'could not wake the batch\'s parked rows; they end when their wait does'),
    );
  };
}
