import pLimit from 'p-limit';

/**
 * A process's model-call slots: `concurrency` is how many calls to providers may be in flight at
 * once, across every row and batch the process is working on. The queue worker holds a few more
 * rows than that (`rowsHeldFor`), so that when a call ends, another row is already waiting for the
 * slot while the finished row publishes its result and BullMQ hands over the next job; without
 * them every slot sat idle for those round trips (3-6 ms per row at 100 ms latency).
 */
export type CallSlot = <T>(call: () => Promise<T>) => Promise<T>;

export interface CallSlots {
  slot: CallSlot;
  /** Resolves once `count` calls have started through these slots, or no call will start any more (stop). */
  started(count: number): Promise<void>;
  /**
   * The process is stopping (Ctrl-C, SIGTERM): no call starts any more; each slot taken from now
   * on rejects with CallsStopped instead, and its row parks for whoever runs it next. The calls in
   * flight finish.
   */
  stop(): void;
  /** Whether stop() was called: a row then parks before asking its next model's breaker, limits or budget. */
  stopping(): boolean;
}

/** A call not made because the process is stopping (CallSlots.stop). */
export class CallsStopped extends Error {
  constructor() {
    super('not called: the process is stopping');
  }
}

export function createCallSlots(concurrency: number): CallSlots {
  const limit = pLimit(concurrency);
  let startedCalls = 0;
  let stopped = false;
  const waiting: Array<{ count: number; resolve: () => void }> = [];
  return {
    slot: (call) =>
      limit(() => {
        if (stopped) return Promise.reject(new CallsStopped());
        startedCalls++;
        // Usually empty: only `run` waits, once, for its first rows' calls.
        for (let i = waiting.length - 1; i >= 0; i--) {
          const waiter = waiting[i]!;
          if (waiter.count > startedCalls) continue;
          waiting.splice(i, 1);
          waiter.resolve();
        }
        return call();
      }),
    stop() {
      stopped = true;
      // No call starts from now on: whoever waits for calls to start (run's producer, before it
      // queues the rest of the file) goes on now, to see the stop, rather than wait out its timeout
      // (QA: a Ctrl-C just as a run queued its first rows took 1.2 s to exit, 1 s of it this wait).
      for (const waiter of waiting.splice(0)) waiter.resolve();
    },
    stopping: () => stopped,
    started(count) {
      if (startedCalls >= count || stopped) return Promise.resolve();
      const { promise, resolve } = Promise.withResolvers<void>();
      waiting.push({ count, resolve });
      return promise;
    },
  };
}

/** Rows a worker holds for `concurrency` call slots: one eighth more, at least two. */
export function rowsHeldFor(concurrency: number): number {
  return concurrency + Math.max(2, Math.ceil(concurrency / 8));
}

/** No limit (tests, and rows run outside a worker). */
export const unlimitedCallSlot: CallSlot = (call) => call();
