import { pingRedis } from './redis-connection.ts';
import { formatWait, secondsFromEnv } from './redis-outage.ts';

/** The environment variable that sets how long a stopping command waits for a Redis that does not answer, in seconds. */
export const STOP_WAIT_ENV = 'SWITCHYARD_STOP_WAIT_S';
/**
 * How long a stopping command waits for a Redis that does not answer before it gives up, unless
 * STOP_WAIT_ENV says otherwise. A scheduler's grace period may be as short (Kubernetes' is 30 s):
 * set below it, the command says what it leaves before the SIGKILL comes.
 */
const DEFAULT_STOP_WAIT_MS = 30_000;

/** How long a stop waits for a Redis that does not answer: SWITCHYARD_STOP_WAIT_S seconds, 30 unless set; null for a value that is not a number above 0. */
export function stopWaitForRedisMs(env: Record<string, string | undefined> = process.env): number | null {
  return secondsFromEnv(env, STOP_WAIT_ENV, DEFAULT_STOP_WAIT_MS);
}

/** How a stop's limit is said in its giving-up message: "SIGTERM; a stop waits 30 s for it: SWITCHYARD_STOP_WAIT_S". */
export function stopWaitText(signal: NodeJS.Signals, limitMs: number): string {
  return `${signal}; a stop waits ${formatWait(limitMs)} for it: ${STOP_WAIT_ENV}`;
}

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
 * For a command's stop (worker, collect, serve): exits 3 once Redis has not answered for the
 * session's stopWaitMs, saying what is left (`leaves`: what the command leaves undone, and how to go on).
 */
export function exitWhenRedisStaysAway(session: { url: string; redisLabel: string; stopWaitMs: number }, signal: NodeJS.Signals, leaves: string): () => void {
  return whenRedisStaysAway({
    ping: (timeoutMs) => pingRedis(session.url, timeoutMs),
    limitMs: session.stopWaitMs,
    onAway: (awayMs) => {
      process.stderr.write(`switchyard: Redis at ${session.redisLabel} has not answered for ${Math.round(awayMs / 1000)} s of the stop (${stopWaitText(signal, session.stopWaitMs)}): giving up. ${leaves}\n`);
      process.exit(3);
    },
  });
}
