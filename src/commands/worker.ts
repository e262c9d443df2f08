import type { Logger } from 'pino';
import { createCallSlots } from '../execution/call-slots.ts';
import { createBatchContexts } from '../../workers/batch-context.ts';
import { startSessionWorker } from '../../workers/session-worker.ts';
import { openSession } from '../queue/session.ts';
import { limitHeapGrowth } from '../heap-growth.ts';
import { createWorkerActivity } from '../progress/worker-activity.ts';
import { deadProcessRowsText } from '../queue/worker-registry.ts';
import { exitCodeForSignal } from '../errors.ts';
import { exitWhenRedisStaysAway } from '../queue/redis-stays-away.ts';
import { endEarlyStop } from '../early-stop.ts';

/** How often a running worker says what it has done (only when it has done something). */
const ACTIVITY_EVERY_MS = 30_000;

export interface WorkerCommandOptions {
  concurrency: number;
  lockMs: number;
}

/**
 * `switchyard worker`: processes rows of every batch in the queue, on any machine that reaches the
 * same Redis. Each batch's config comes from Redis; API keys from this process's environment.
 */
export async function runWorkerCommand(options: WorkerCommandOptions, logger: Logger, say: (line: string) => void): Promise<number> {
  limitHeapGrowth();
  const session = await openSession(logger, say, { waitForRedis: 'for ever' });
  const activity = createWorkerActivity();
  const host = startSessionWorker(session, {
    batches: createBatchContexts(session.store, { callSlots: createCallSlots(options.concurrency), monthSpend: session.monthSpend, refusals: session.refusals }),
    logger,
    concurrency: options.concurrency,
    lockMs: options.lockMs,
    onRowFinished: activity.rowFinished,
    onRowsOfDeadProcess: (released) => say(deadProcessRowsText(released)),
  });
  void host.releasedFromDead.then((released) => released.rowsFrom.size > 0 && say(deadProcessRowsText(released)));
  say(`Worker running: concurrency ${options.concurrency}, Redis ${session.redisLabel}, prefix "${session.space.prefix}". Ctrl-C stops it once the calls in flight finish.`);
  const reporting = setInterval(() => {
    const line = activity.periodLine();
    if (line) say(line);
  }, ACTIVITY_EVERY_MS);
  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    // In the tick the worker started in: no signal comes between the two.
    endEarlyStop();
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  session.outages.stopping(signal);
  // The stop waits for Redis to take the rows in hand back, but not for ever (a scheduler's single SIGTERM).
  const stopWatchingRedis = exitWhenRedisStaysAway(session, signal, `The calls in flight are not recorded (their rows run again), and the rows in hand stay claimed until their lock runs out (${Math.round(options.lockMs / 1000)} s), or until a run or worker on this machine starts and hands them back.`);
  // A second signal quits at once; the rows in hand stay claimed until someone hands them back.
  const quitNow = (signal: NodeJS.Signals) => {
    say(`Quit at once: the calls in flight are not recorded, and the rows in hand stay claimed until their lock runs out (${Math.round(options.lockMs / 1000)} s), or until a run or worker on this machine starts and hands them back.`);
    process.exit(exitCodeForSignal(signal));
  };
  process.once('SIGINT', quitNow);
  process.once('SIGTERM', quitNow);
  say('Stopping: the calls in flight finish, and no new one starts (a second Ctrl-C or SIGTERM quits at once)...');
  clearInterval(reporting);
  await host.close();
  await session.close();
  stopWatchingRedis();
  say(activity.summaryLine());
  return 0;
}
