import type { Queue } from 'bullmq';
import { startPromptWorker, type PromptWorkerHandle, type PromptWorkerOptions } from './prompt-worker.ts';
import type { Session } from '../src/queue/session.ts';
import { createParkedRowWaker } from '../src/queue/wake-parked-rows.ts';

/**
 * A prompt worker on the command's Redis session: its own blocking connection, the session's key
 * space and outage reporting, and a queue (opened when first needed) to wake a batch's parked rows
 * once its budget is spent.
 */
export function startSessionWorker(session: Session, options: Omit<PromptWorkerOptions, 'connection' | 'redis' | 'space' | 'onWorkerError' | 'onBudgetSpent'>): PromptWorkerHandle {
  let queue: Queue | null = null;
  const onBudgetSpent = createParkedRowWaker(() => (queue ??= session.openPromptQueue()), options.logger);
  return startPromptWorker({ ...options, connection: session.connectWorker(), redis: session.redis, space: session.space, onWorkerError: session.outages.failed, refusals: session.refusals, onBudgetSpent });
}
