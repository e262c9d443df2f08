// How a run stops early (Ctrl-C, SIGTERM, a server's stop, a lease lost), and what it has stopped.
import { setTimeout as delay } from 'node:timers/promises';
import type { PromptWorkerHandle } from '../../workers/prompt-worker.ts';
import { exitCodeForSignal } from '../errors.ts';
import { endEarlyStop } from '../early-stop.ts';
import type { BatchLease } from '../queue/batch-lease.ts';
import type { BatchProgress } from '../queue/batch-state.ts';
import { pingRedis } from '../queue/redis-connection.ts';
import { stopWaitText, whenRedisStaysAway } from '../queue/redis-stays-away.ts';
import type { Session } from '../queue/session.ts';
import { unqueueBatch, unqueueQueuedRows, type Unqueued } from '../queue/unqueue-batch.ts';
import { redisStayedAwayText } from './run-messages.ts';

/** How often a stopping run takes its batch's rows off the queue again while its own calls finish: under STOPPED_PARK_MS (row-runner.ts). */
const UNQUEUE_AGAIN_MS = 400;

/** What stops a run early, and what it has stopped so far. */
export interface RunStops {
  /** No more rows from the file. */
  stopReading: AbortSignal;
  /** The collector stops without writing (another process took the batch over). */
  stopCollecting: AbortSignal;
  /** The collector writes the outputs of the rows finished so far, then stops. */
  drainCollector: AbortSignal;
  abortCollecting(): void;
  /** The collector writes the outputs of the rows finished so far, then stops (a stop that is no signal's). */
  drainCollecting(): void;
  /** The signal that stopped the run, if one did. */
  stoppedBy(): NodeJS.Signals | null;
  /** What became of the batch's queued rows once stopped (null: not yet, or Redis was away). */
  unqueued(): Unqueued | 'failed' | null;
  /** The file's reading has ended (read whole, stopped or failed): a stop's last unqueue and the outputs wait for it. */
  readingEnded(): void;
  stopListening(): void;
}

/**
 * Ctrl-C, or SIGTERM from a scheduler or container stop (or the host's stop): no more rows from
 * the file or the queue; the calls in flight finish (no new one starts), the batch's queued rows
 * come off the queue, then the outputs are written for the rows finished so far (nothing is lost
 * either way). A lease lost to another process while Redis was away stops everything without
 * writing. A stop waits for a Redis that is away, but on the command line not for ever: once it
 * has not answered for the session's stopWaitMs (SWITCHYARD_STOP_WAIT_S), the run says what is left and exits 3 (a server
 * stopping its runs has its own way out).
 */
export function watchForStops(watched: {
  session: Session;
  batchId: string;
  say: (line: string) => void;
  worker: PromptWorkerHandle | null;
  /** This run writes the batch's outputs (not --detach): a stop takes its queued rows off the queue, whoever's workers run them. */
  collects: boolean;
  lease: BatchLease | null;
  hostStop: AbortSignal | undefined;
  /** The batch's progress as last seen, for the message of a stop that gives up on Redis. */
  lastProgress?: () => BatchProgress | null;
}): RunStops {
  const { session, batchId, say, worker, lease } = watched;
  let stopWatchingRedis: () => void = () => undefined;
  const stopReading = new AbortController();
  const stopCollecting = new AbortController();
  const drainCollector = new AbortController();
  let stoppedBy: NodeJS.Signals | null = null;
  let unqueued: Unqueued | 'failed' | null = null;
  const reading = Promise.withResolvers<void>();
  // The batch's rows still queued come off the queue, or the next run of another batch (or any
  // worker) would run them, and pay for them, with nobody collecting this one.
  // At once, so that other processes' workers take none of them while this one's calls in flight
  // finish (a call may take a minute); again every UNQUEUE_AGAIN_MS meanwhile, for the rows this
  // process parks as it stops (they come due for any worker after STOPPED_PARK_MS); and once more
  // when it has closed.
  const unqueueRest = async (closed: Promise<unknown>): Promise<void> => {
    const stoppedQueue = session.openPromptQueue();
    let removed = 0;
    let carried = 0;
    let last: Unqueued | 'failed' = 'failed';
    let done = false;
    const closedNow = new AbortController();
    void closed.then(() => {
      done = true;
      closedNow.abort();
    });
    for (;;) {
      const wasDone = done;
      // Only the last pass, this process's workers closed, counts the rows other processes run.
      const pass = wasDone ? unqueueBatch : unqueueQueuedRows;
      last = await pass(stoppedQueue, session.store, batchId).catch(() => 'failed' as const); // Redis away: they stay queued
      if (last !== 'failed') {
        removed += last.removed;
        carried += last.carried;
      }
      if (wasDone) break;
      // Cut short once closed: its timer left running held the process up to UNQUEUE_AGAIN_MS after the stop was done.
      await delay(UNQUEUE_AGAIN_MS, undefined, { signal: closedNow.signal }).catch(() => undefined);
    }
    unqueued = last === 'failed' ? 'failed' : { ...last, removed, carried };
    await stoppedQueue.close().catch(() => undefined);
  };
  const onInterrupt = (signal: NodeJS.Signals) => {
    stoppedBy = signal;
    say(`\nInterrupted${signal === 'SIGTERM' ? ' (SIGTERM)' : ''}. Finishing the rows in hand, then writing the outputs so far (a second ${signal === 'SIGTERM' ? 'SIGTERM or Ctrl-C' : 'Ctrl-C'} quits at once).`);
    stopReading.abort();
    session.outages.stopping(signal);
    if (!watched.hostStop) {
      stopWatchingRedis = whenRedisStaysAway({
        ping: (timeoutMs) => pingRedis(session.url, timeoutMs),
        limitMs: session.stopWaitMs,
        onAway: (awayMs) => {
          process.stderr.write(`switchyard: ${redisStayedAwayText(session.redisLabel, batchId, `of the stop (${stopWaitText(signal, session.stopWaitMs)})`, awayMs, watched.lastProgress?.() ?? null)}\n`);
          process.exit(3);
        },
      });
    }
    // A close that fails is seen again where the run closes the worker for good. The read ends
    // too: the chunk it was queueing comes off the queue in the last pass, and the outputs count
    // the invalid lines it read (it saves them as it stops; under load the report was written first).
    const closed = Promise.all([(worker?.close() ?? Promise.resolve()).catch(() => undefined), reading.promise]);
    void (watched.collects ? unqueueRest(closed) : closed).then(() => drainCollector.abort());
  };
  // A second signal quits at once: say what that leaves, since no summary follows.
  const quitNow = (signal: NodeJS.Signals) => {
    say(`\nQuit at once (${signal}): the calls in flight are not recorded, and their rows run again on \`switchyard run --resume ${batchId}\`.`);
    process.exit(exitCodeForSignal(signal));
  };
  const stopListeningForSignals = listenForStop(onInterrupt, watched.hostStop, quitNow);
  const stopListening = () => {
    stopListeningForSignals();
    stopWatchingRedis();
  };
  lease?.lost.addEventListener('abort', () => {
    say(`\nAnother process took over batch ${batchId} while Redis was unreachable; stopping here so only one writes its outputs.`);
    stopReading.abort();
    stopCollecting.abort();
    void worker?.close().catch(() => undefined);
  });
  return {
    stopReading: stopReading.signal,
    stopCollecting: stopCollecting.signal,
    drainCollector: drainCollector.signal,
    abortCollecting: () => stopCollecting.abort(),
    drainCollecting: () => drainCollector.abort(),
    stoppedBy: () => stoppedBy,
    unqueued: () => unqueued,
    readingEnded: () => reading.resolve(),
    stopListening,
  };
}

/**
 * Calls `onStop` on Ctrl-C or SIGTERM, or when the host's signal aborts (a host process keeps its
 * own signal handlers); returns how to stop listening.
 */
function listenForStop(onStop: (signal: NodeJS.Signals) => void, hostStop: AbortSignal | undefined, onSecond: (signal: NodeJS.Signals) => void): () => void {
  if (hostStop) {
    const onAbort = () => onStop('SIGTERM');
    if (hostStop.aborted) queueMicrotask(onAbort);
    else hostStop.addEventListener('abort', onAbort, { once: true });
    return () => hostStop.removeEventListener('abort', onAbort);
  }
  // The command's early handling (early-stop.ts) said what a stop before this one left.
  endEarlyStop();
  // After the first, either signal quits at once.
  const stopListening = () => {
    process.off('SIGINT', onFirst);
    process.off('SIGTERM', onFirst);
    process.off('SIGINT', onSecond);
    process.off('SIGTERM', onSecond);
  };
  const onFirst = (signal: NodeJS.Signals) => {
    process.off('SIGINT', onFirst);
    process.off('SIGTERM', onFirst);
    process.once('SIGINT', onSecond);
    process.once('SIGTERM', onSecond);
    onStop(signal);
  };
  process.on('SIGINT', onFirst);
  process.on('SIGTERM', onFirst);
  return stopListening;
}
