import { pingRedis } from './redis-connection.ts';

/** How long a stopping command waits for a Redis that does not answer before it gives up. */
export const STOP_WAITS_FOR_REDIS_MS = 30_000;
/** How often Redis is asked meanwhile (each PING waits as long for its answer). */
const ASK_EVERY_MS = 1000;

export interface RedisStaysAwayOptions {
  /** True if Redis answered within `timeoutMs` (pingRedis, on a connection of its own). */
  ping: (timeoutMs: number) => Promise<boolean>;
  limitMs: number;
  /** When Redis last answered, if before now (epoch ms; a connection silent for a while before it was told). */
  since?: number;
  /** Called once, when Redis has not answered for `limitMs`. */
  onAway: (awayMs: number) => void;
  now?: () => number;
}

/**
 * Calls `onAway` once Redis has not answered for `limitMs` since `since` (or now); returns how to stop watching.
 * A stopping command waits for Redis to record what it finished, but not for ever: a SIGTERM from a
 * scheduler or a container stop expects the process to end. A PING on a connection of its own tells
 * a Redis that is down, unreachable or frozen (a stopped process, a network cut without a reset)
 * alike, where the command's own connections may just wait.
 */
export function whenRedisStaysAway(options: RedisStaysAwayOptions): () => void {
  const now = options.now ?? Date.now;
  let lastAnswer = Math.min(options.since ?? now(), now());
  let asking = false;
  let done = false;
  const timer = setInterval(() => {
    if (asking || done) return;
    asking = true;
    void options.ping(ASK_EVERY_MS).then((answered) => {
      asking = false;
      if (done) return;
      if (answered) lastAnswer = now();
      else if (now() - lastAnswer >= options.limitMs) {
        stop();
        options.onAway(now() - lastAnswer);
      }
    });
  }, ASK_EVERY_MS);
  // Only a stop in progress waits for this: it must not keep a finished command alive.
  timer.unref();
  function stop(): void {
    done = true;
    clearInterval(timer);
  }
  return stop;
}

/**
 * For a command's stop (worker, collect, serve): exits 3 once Redis has not answered for
 * STOP_WAITS_FOR_REDIS_MS, saying what is left (`leaves`: what the command leaves undone, and how to go on).
 */
export function exitWhenRedisStaysAway(url: string, redisLabel: string, signal: NodeJS.Signals, leaves: string): () => void {
  return whenRedisStaysAway({
    ping: (timeoutMs) => pingRedis(url, timeoutMs),
    limitMs: STOP_WAITS_FOR_REDIS_MS,
    onAway: (awayMs) => {
      process.stderr.write(`switchyard: Redis at ${redisLabel} has not answered for ${Math.round(awayMs / 1000)} s of the stop (${signal}): giving up. ${leaves}\n`);
      process.exit(3);
    },
  });
}
