import { startPromptWorker, type PromptWorkerHandle, type PromptWorkerOptions } from './prompt-worker.ts';
import type { Session } from '../src/queue/session.ts';

/** A prompt worker on the command's Redis session: its own blocking connection, the session's key space and outage reporting. */
export function startSessionWorker(session: Session, options: Omit<PromptWorkerOptions, 'connection' | 'redis' | 'space' | 'onWorkerError'>): PromptWorkerHandle {
  return startPromptWorker({ ...options, connection: session.connectWorker(), redis: session.redis, space: session.space, onWorkerError: session.outages.failed });
}
