import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { formatClockTime, formatDuration } from '../figure-text.ts';

/** Error codes of a lost or refused connection (as opposed to a command that failed). */
const CONNECTION_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN']);

/** Redis answering "no" to writes for a while (out of memory, cannot save, a replica, loading its data). */
const REFUSAL = /^(OOM|MISCONF|READONLY|NOREPLICAS|MASTERDOWN|LOADING|BUSY)\b/;

/** Redis refusing the connection's credentials: no password given where one is wanted, or the wrong one. */
const CREDENTIALS_REFUSAL = /^(NOAUTH|WRONGPASS)\b|invalid password|AUTH failed/i;

/** How often a refusal that goes on is said again. */
const REFUSAL_REPEAT_MS = 60_000;

/**
 * How often an outage that goes on is said again, with how long so far: the progress lines stop
 * meanwhile (they read Redis), and a log silent for minutes looked like a hung command.
 */
const OUTAGE_REPEAT_MS = 60_000;

export function isCredentialsRefusal(error: unknown): boolean {
  return error instanceof Error && CREDENTIALS_REFUSAL.test(error.message);
}

export function isConnectionError(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException | null)?.code;
  return (code !== undefined && CONNECTION_CODES.has(code)) || (error instanceof Error && error.message === 'Connection is closed.');
}

export function isRedisRefusal(error: unknown): boolean {
  if (!(error instanceof Error) || !/^ReplyError/.test(error.name)) return false;
  // A MULTI one of whose commands was refused as it was queued fails as a whole, EXECABORT.
  if (/^EXECABORT\b/.test(error.message)) {
    const because = /because of: (.*)$/s.exec(error.message)?.[1];
    return (because !== undefined && REFUSAL.test(because)) || ((error as { previousErrors?: unknown[] }).previousErrors ?? []).some(isRedisRefusal);
  }
  return REFUSAL.test(error.message);
}

/** How long a write that Redis refuses is waited out, and who is told of each refusal (the outage watch says it once a minute). */
export interface RefusalWait {
  waitMs: number;
  onRefusal: (source: string, error: Error) => void;
}

const REFUSED_RETRY_MS = [250, 500, 1000, 2000, 5000];

/**
 * write(), again while Redis refuses it (full under noeviction, a replica, loading), for up to
 * `waitMs`: Redis frees memory as rows are written out, or once someone raises maxmemory, and the
 * work in hand (a paid answer, a chunk of the file) is kept meanwhile. Other errors, and the
 * refusal after `waitMs`, are thrown. `write` must be safe to repeat.
 */
export async function whileRedisRefuses<T>(source: string, write: () => Promise<T>, wait: RefusalWait | undefined, sleep: (ms: number) => Promise<void> = (ms) => new Promise((resolve) => setTimeout(resolve, ms))): Promise<T> {
  const started = Date.now();
  for (let attempt = 0; ; attempt++) {
    try {
      return await write();
    } catch (error) {
      if (!wait || !isRedisRefusal(error) || Date.now() - started >= wait.waitMs) throw error;
      wait.onRefusal(source, error as Error);
      await sleep(REFUSED_RETRY_MS[Math.min(attempt, REFUSED_RETRY_MS.length - 1)]!);
    }
  }
}

/**
 * Tells a person once that Redis stopped answering, and once that it is back, instead of a JSON
 * error line from every connection at every reconnect attempt (ioredis retries forever, which is
 * right: the batch's state lives in Redis, and a restarted Redis carries on from its data). A Redis
 * that answers but refuses writes (out of memory, say) is told once a minute, not once per row.
 */
export function watchRedisOutages(options: {
  label: string;
  logger: Logger;
  say: (line: string) => void;
  /**
   * Called once when Redis refuses the connection's credentials (its password set or changed
   * while the command ran): ioredis would try again for ever, every command waiting on a
   * connection that cannot come back, so the command must end. Logged when not given.
   */
  onCredentialsRefused?: (detail: string) => void;
  /** How long the command waits for Redis before it gives up (said when it goes); none: for as long as it takes. */
  waitLimitMs?: number | null;
  /** A command that serves many batches (`worker`, `serve`): the message speaks of the batches', not one batch's. */
  manyBatches?: boolean;
  /** Told when Redis stopped answering (epoch ms), and when it answers again (the session bounds the wait between the two). */
  onOutage?: { began: (since: number) => void; ended: () => void };
  now?: () => number;
}) {
  const now = options.now ?? Date.now;
  const stateOf = options.manyBatches ? "the batches'" : "the batch's";
  let outage: { since: number; reminder: NodeJS.Timeout } | null = null;
  let refusalSaidAt = -Infinity;
  let credentialsRefused = false;
  /** What goes on after a stop, for the message: the command's own name for it once it has one (a run's resume). */
  let goOn = 'running the same command again later';
  /** How the command is stopped, for the message: a command already stopping (a signal came) says so instead. */
  let howToStop = 'Ctrl-C stops';
  /** A signal came: the stop's own, shorter wait (SWITCHYARD_STOP_WAIT_S) bounds the outage, and says so when it ends it. */
  let stopping = false;

  /** An outage begins (since `since`): said again every minute until it ends. */
  function begin(since: number): { since: number } {
    const reminder = setInterval(() => {
      if (!outage) return;
      const away = now() - outage.since;
      const until = stopping || options.waitLimitMs == null ? '' : `; it gives up at ${formatClockTime(outage.since + options.waitLimitMs)} (${formatWait(options.waitLimitMs)} in all, ${REDIS_WAIT_ENV}) unless Redis answers by then`;
      options.say(`Redis at ${options.label} has still not answered, ${formatDuration(away)} since ${formatClockTime(outage.since)}: no row is taken meanwhile, and the answers in hand wait to be recorded${until}.`);
    }, OUTAGE_REPEAT_MS);
    reminder.unref();
    outage = { since, reminder };
    return outage;
  }

  function refused(source: string, error: Error): void {
    if (now() - refusalSaidAt < REFUSAL_REPEAT_MS) {
      options.logger.debug({ err: error }, `${source}: Redis still refuses`);
      return;
    }
    refusalSaidAt = now();
    // A warning, not an error: the write waits and is tried again (QA: "error:" read as fatal).
    options.logger.warn({ err: error }, `${source}: Redis refuses`);
    options.say(
      `Redis at ${options.label} refuses writes: ${error.message.split('\n', 1)[0]}\n` +
        'Rows wait and are tried again. Free Redis memory or disk (see its log), or stop with Ctrl-C and run the same command again later.',
    );
  }

  function failed(source: string, error: unknown): void {
    if (isRedisRefusal(error)) return refused(source, error as Error);
    if (isCredentialsRefusal(error) && options.onCredentialsRefused) {
      options.logger.debug({ err: error, connection: source }, 'Redis refuses the credentials');
      if (credentialsRefused) return;
      credentialsRefused = true;
      return options.onCredentialsRefused((error as Error).message.split('\n', 1)[0] ?? '');
    }
    // One wording whichever connection met it, the connection a detail (QA: "worker lost Redis",
    // "redis worker connection lost Redis" and "redis connection lost Redis" for one outage).
    if (!isConnectionError(error)) {
      options.logger.error({ err: error, connection: source }, 'Redis connection error');
      return;
    }
    if (outage) {
      options.logger.debug({ err: error, connection: source }, 'Redis connection still lost');
      return;
    }
    const began = begin(now());
    options.logger.error({ err: error, connection: source }, 'Redis connection lost');
    const code = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
    const limit = options.waitLimitMs == null ? '' : ` (for up to ${formatWait(options.waitLimitMs)}, ${REDIS_WAIT_ENV})`;
    options.say(`Redis at ${options.label} is not answering (${code}, since ${formatClockTime(began.since)}); waiting for it to come back${limit}: ${stateOf} state lives there, and the answers in hand are recorded once it is. ${howToStop}; ${goOn} goes on from where it stopped.`);
    options.onOutage?.began(began.since);
  }

  /** A connection that is up but whose PING has gone unanswered for `waitedMs` (silent-redis.ts). */
  function silent(source: string, waitedMs: number): void {
    if (outage) return;
    const began = begin(now() - waitedMs);
    options.logger.error({ waited_ms: waitedMs, connection: source }, 'Redis does not answer');
    const limit = options.waitLimitMs == null ? '' : ` (for up to ${formatWait(options.waitLimitMs)}, ${REDIS_WAIT_ENV})`;
    options.say(
      `Redis at ${options.label} has not answered for ${Math.round(waitedMs / 1000)} s (since ${formatClockTime(began.since)}), though its connection is open (the server paused or stuck, or the network to it cut); ` +
        `waiting for it${limit}: ${stateOf} state lives there, and the answers in hand are recorded once it answers. ${howToStop}; ${goOn} goes on from where it stopped.`,
    );
    options.onOutage?.began(began.since);
  }

  function answering(): void {
    if (!outage) return;
    const back = now();
    options.say(`Redis is answering again after ${((back - outage.since) / 1000).toFixed(1)} s, at ${formatClockTime(back)}; going on.`);
    clearInterval(outage.reminder);
    outage = null;
    options.onOutage?.ended();
  }

  return {
    failed,
    /** Names the command that goes on after a stop (`switchyard run --resume <id>`) in the outage message. */
    goOnWith(command: string): void {
      goOn = `\`${command}\` later`;
    },
    silent,
    /** The command is stopping on `signal`: the outage message no longer tells how to stop it. */
    stopping(signal: NodeJS.Signals): void {
      stopping = true;
      howToStop = `It is stopping (${signal}) and ends once Redis answers; a second ${signal === 'SIGTERM' ? 'SIGTERM or Ctrl-C' : 'Ctrl-C'} quits at once`;
    },
    /** The PING that `silent` was told of is answered. */
    answering,
    /** Reports this connection's errors here, and its recovery. */
    watch(connection: Redis, source: string): void {
      connection.on('error', (error) => failed(source, error));
      connection.on('ready', answering);
    },
  };
}

export type RedisOutageWatch = ReturnType<typeof watchRedisOutages>;

/** The environment variable that sets how long a command waits for a Redis that stopped answering, in seconds. */
export const REDIS_WAIT_ENV = 'SWITCHYARD_REDIS_WAIT_S';
/** How long a command waits for a Redis that stopped answering mid-command, unless REDIS_WAIT_ENV says otherwise. */
const DEFAULT_REDIS_WAIT_MS = 600_000;

/**
 * How long a command (`run`, `collect`, `status`, `forget`) waits for a Redis that stopped
 * answering before it gives up with exit 3: SWITCHYARD_REDIS_WAIT_S seconds, 10 minutes unless set.
 * Null for a value that is not a number above 0 (the caller says so).
 */
export function redisWaitLimitMs(env: Record<string, string | undefined> = process.env): number | null {
  return secondsFromEnv(env, REDIS_WAIT_ENV, DEFAULT_REDIS_WAIT_MS);
}

/** `name`'s value, seconds above 0, in ms; `defaultMs` when unset or empty; null for anything else (the caller says so). */
export function secondsFromEnv(env: Record<string, string | undefined>, name: string, defaultMs: number): number | null {
  const raw = env[name]?.trim();
  if (raw === undefined || raw === '') return defaultMs;
  const seconds = Number(raw);
  return Number.isFinite(seconds) && seconds > 0 ? Math.round(seconds * 1000) : null;
}

/** A wait in the words of the outage message: "10 min", "90 s". */
export function formatWait(ms: number): string {
  const seconds = Math.round(ms / 1000);
  return seconds >= 120 && seconds % 60 === 0 ? `${seconds / 60} min` : `${seconds} s`;
}
