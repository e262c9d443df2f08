import type { Redis } from 'ioredis';

/** How often the connection is asked (a PING, when none is out), and how often an unanswered one is looked at. */
const PING_EVERY_MS = 5000;
const LOOK_EVERY_MS = 1000;
/** A PING unanswered this long: Redis is treated as gone, as a dropped connection is. */
export const SILENT_AFTER_MS = 10_000;

export interface SilenceWatchOptions {
  /** Called once when a PING has gone unanswered for SILENT_AFTER_MS, with how long it has waited. */
  onSilent: (waitedMs: number) => void;
  /** Called when that PING is answered at last. */
  onAnswer: () => void;
  now?: () => number;
}

/**
 * Tells a Redis that holds its connection open but answers nothing: a paused or frozen server, or
 * a network cut without a reset. ioredis then waits without an error, and every command with it,
 * so nothing else would say why a batch stopped moving, and the command's wait for Redis
 * (SWITCHYARD_REDIS_WAIT_S) would never start. Only a connection that is up is asked: one that
 * dropped says so through its own errors. Returns how to stop watching.
 */
export function watchForSilence(redis: Redis, options: SilenceWatchOptions): () => void {
  const now = options.now ?? Date.now;
  let askedAt: number | null = null;
  let lastAnswerAt = now();
  let saidSilent = false;
  const answered = (replied: boolean) => {
    askedAt = null;
    lastAnswerAt = now();
    const wasSilent = saidSilent;
    saidSilent = false;
    // A PING that failed went with its connection, whose errors and reconnection say the rest.
    if (wasSilent && replied) options.onAnswer();
  };
  const timer = setInterval(() => {
    if (askedAt !== null) {
      if (!saidSilent && now() - askedAt >= SILENT_AFTER_MS) {
        saidSilent = true;
        options.onSilent(now() - askedAt);
      }
      return;
    }
    if (redis.status !== 'ready' || now() - lastAnswerAt < PING_EVERY_MS) return;
    askedAt = now();
    redis.ping().then(() => answered(true), () => answered(false));
  }, LOOK_EVERY_MS);
  // It watches a command's connection, never keeps the command alive.
  timer.unref();
  return () => clearInterval(timer);
}
