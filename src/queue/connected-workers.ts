import type { Queue } from 'bullmq';

/**
 * How many worker processes (`switchyard worker`, or `run` with its own workers) are connected to
 * the prompts queue right now, from Redis' client list; null when this Redis does not list its
 * clients (some managed services refuse CLIENT LIST) or the question fails.
 */
export async function connectedWorkerCount(queue: Queue): Promise<number | null> {
  try {
    const workers = await queue.getWorkers();
    // BullMQ answers a refused CLIENT LIST with one placeholder entry that has no address.
    if (workers.length === 1 && !('addr' in workers[0]!)) return null;
    return workers.length;
  } catch {
    return null;
  }
}

/** "no worker is", "1 worker is", "3 workers are" connected. */
export function workersConnectedText(count: number): string {
  if (count === 0) return 'no worker is connected';
  return count === 1 ? '1 worker is connected' : `${count} workers are connected`;
}

/**
 * Looks every `everyMs` whether worker processes went away (count now 0) or came back, and calls
 * `onChange` with the new count on each such change; a count Redis will not give changes nothing.
 * Returns a function that stops watching.
 */
export function watchConnectedWorkers(queue: Queue, initial: number | null, everyMs: number, onChange: (count: number) => void): () => void {
  let known = initial;
  const timer = setInterval(() => {
    void connectedWorkerCount(queue).then((count) => {
      if (count === null) return;
      if (known !== null && (count === 0) !== (known === 0)) onChange(count);
      known = count;
    });
  }, everyMs);
  timer.unref();
  return () => clearInterval(timer);
}
