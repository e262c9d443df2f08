import type { Redis } from 'ioredis';
import { secondsFromEnv } from './redis-outage.ts';

/**
 * How often the connection is asked (a PING, when none is out; at most half of silentAfterMs, so a
 * shorter one tells sooner too), and how often an unanswered one is looked at.
 */
const PING_EVERY_MS = 5000;
const LOOK_EVERY_MS = 1000;
/** A PING unanswered this long: Redis is treated as gone, as a dropped connection is. */
const SILENT_AFTER_MS = 10_000;
/** The environment variable that sets SILENT_AFTER_MS, in seconds. */
export const SILENT_AFTER_ENV = 'SWITCHYARD_REDIS_SILENT_S';

/**
 * How long a PING may go unanswered before Redis is treated as gone: SWITCHYARD_REDIS_SILENT_S seconds,
 * 10 unless set (longer where Redis may stall a while without being gone); null for a value that is
 * not a number above 0.
 */
export function silentAfterFromEnv(env: Record<string, string | undefined> = process.env): number | null {
  return secondsFromEnv(env, SILENT_AFTER_ENV, SILENT_AFTER_MS);
}

export interface SilenceWatchOptions {
  /** Called once when a PING has gone unanswered for `silentAfterMs`, with how long it has waited. */
  onSilent: (waitedMs: number) => void;
  /** Called when that PING is answered at last. */
  onAnswer: () => void;
  /** SILENT_AFTER_MS unless given (the session gives SWITCHYARD_REDIS_SILENT_S's). */
  silentAfterMs?: number;
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
  const silentAfterMs = options.silentAfterMs ?? SILENT_AFTER_MS;
  const pingEveryMs = Math.min(PING_EVERY_MS, silentAfterMs / 2);
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
      if (!saidSilent && now() - askedAt >= silentAfterMs) {
        // Judged after one more turn of the event loop: after a stall of this process's own, a reply that came
        // meanwhile is read first (timers run before I/O), and a Redis that answered is not called silent.
        const asked = askedAt;
        setImmediate(() => {
          if (askedAt !== asked || saidSilent) return;
          saidSilent = true;
          options.onSilent(now() - asked);
        });
      }
      return;
    }
    if (redis.status !== 'ready' || now() - lastAnswerAt < pingEveryMs) return;
    askedAt = now();
    redis.ping().then(() => answered(true), () => answered(false));
  }, LOOK_EVERY_MS);
  // It watches a command's connection, never keeps the command alive.
  timer.unref();
  return () => clearInterval(timer);
}
