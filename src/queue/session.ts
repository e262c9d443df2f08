import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { createMonthSpend, type MonthSpend } from '../limits/month-spend.ts';
import { BatchStore } from './batch-state.ts';
import { PROMPT_QUEUE, type KeySpace } from './keys.ts';
import { UsageError } from '../errors.ts';
import { connectRedis, credentialsRefusedMessage, ensureRedis, pingRedis, PRIVATE_REDIS_DIR, redactUrl } from './redis-connection.ts';
import { formatWait, REDIS_WAIT_ENV, redisWaitLimitMs, watchRedisOutages, type RedisOutageWatch, type RefusalWait } from './redis-outage.ts';
import { STOP_WAIT_ENV, stopWaitForRedisMs, whenRedisStaysAway } from './redis-stays-away.ts';
import { SILENT_AFTER_ENV, silentAfterFromEnv, watchForSilence } from './silent-redis.ts';
import { warnIfRedisEvicts } from './eviction-policy.ts';

/** How long a command that waits for ever for a lost Redis (worker, serve) waits out writes it refuses. */
const REFUSED_WRITES_WAIT_MS = 10 * 60_000;

/** A command's link to Redis: the connection, the batch store and the key prefix in use. */
export interface Session {
  redis: Redis;
  store: BatchStore;
  space: KeySpace;
  /** The Redis URL, password and all: for a probe on a connection of its own (never to be shown; redisLabel is). */
  url: string;
  redisLabel: string;
  /** A connection of its own for a BullMQ Queue or Worker (blocking reads allowed); closed with the session. */
  connectWorker(): Redis;
  /**
   * The prompts queue, on a connection of its own: BullMQ loads its Lua scripts onto it (and ioredis
   * copies them into every pipeline made there). Closed with the session if not before.
   */
  openPromptQueue(): Queue;
  /** Where connection errors go: a lost Redis is said once, not logged at every reconnect attempt. */
  outages: RedisOutageWatch;
  /** The command's logger, for warnings of its parts that have none of their own (the collector's). */
  logger: Logger;
  /** Spending no monthly cap reserved for, counted toward the month (written before the session closes). */
  monthSpend: MonthSpend;
  /**
   * How long this command waits for a Redis that stopped answering before it gives up (null: for
   * as long as it takes, a worker's or a server's).
   */
  redisWaitLimitMs: number | null;
  /** How long the command's stop (Ctrl-C, SIGTERM) waits for a Redis that does not answer before it gives up (SWITCHYARD_STOP_WAIT_S). */
  stopWaitMs: number;
  /** Writes Redis refuses (full, say) are waited out this long (redisWaitLimitMs, else 10 min), said through the outage watch. */
  refusals: RefusalWait;
  /**
   * What the command says and does about a Redis that stays away: `goOn` is the command that goes on
   * from where it stopped (the outage message names it), `giveUp` what it does once Redis has not
   * answered for `redisWaitLimitMs` (by default: say so and to run the same command again, exit 3).
   */
  whenRedisStaysAway(goOn: string, giveUp: (awayMs: number) => void): void;
  close(): Promise<void>;
}

export interface SessionOptions {
  /**
   * 'bounded' (default): a command whose Redis stops answering waits for it for up to
   * SWITCHYARD_REDIS_WAIT_S (10 min), then gives up with exit 3. 'for ever': a worker or a server,
   * which has nothing to end and a Ctrl-C or SIGTERM of its own.
   */
  waitForRedis?: 'bounded' | 'for ever';
}

export function keySpaceFromEnv(env: NodeJS.ProcessEnv = process.env): KeySpace {
  return { prefix: env.SWITCHYARD_PREFIX?.trim() || 'sy' };
}

/**
 * Where a batch id was looked for and not found. Another Redis or another SWITCHYARD_PREFIX is the
 * usual reason an id the user has just seen is not found: the message names both.
 */
export function noBatchMessage(session: Pick<Session, 'redisLabel' | 'space'>, batchId: string): string {
  return `no batch "${batchId}" in Redis at ${session.redisLabel} with key prefix "${session.space.prefix}" (SWITCHYARD_PREFIX); \`switchyard status\` lists the recent ones`;
}

/** The refusal of an environment variable that should hold seconds above 0; `what` says what it sets. */
function notSeconds(name: string, what: string): UsageError {
  return new UsageError(`${name}=${process.env[name] ?? ''} is not a number of seconds above 0 (${what})`);
}

export async function openSession(logger: Logger, say: (line: string) => void, options: SessionOptions = {}): Promise<Session> {
  const waitLimitMs = options.waitForRedis === 'for ever' ? null : redisWaitLimitMs();
  if (waitLimitMs === null && options.waitForRedis !== 'for ever') throw notSeconds(REDIS_WAIT_ENV, 'how long a command waits for a Redis that stopped answering; 600 unless set');
  const stopWaitMs = stopWaitForRedisMs();
  if (stopWaitMs === null) throw notSeconds(STOP_WAIT_ENV, 'how long a stopping command waits for a Redis that does not answer; 30 unless set');
  const silentAfter = silentAfterFromEnv();
  if (silentAfter === null) throw notSeconds(SILENT_AFTER_ENV, 'how long a PING may go unanswered before Redis is treated as gone; 10 unless set');
  const ensured = await ensureRedis({ dataDir: PRIVATE_REDIS_DIR, log: say });
  const redisLabel = redactUrl(ensured.url);
  // Commands wait in the client for a Redis that went away (connectRedis); how long is decided here,
  // on a PING of a connection of its own, from the moment a connection lost it.
  const defaultGiveUp = (awayMs: number) => {
    process.stderr.write(`switchyard: Redis at ${redisLabel} has not answered for ${Math.round(awayMs / 1000)} s (a command waits ${formatWait(waitLimitMs ?? 0)} for it: ${REDIS_WAIT_ENV}): giving up.\nOnce it is back, run the same command again: it goes on from where it stopped.\n`);
    process.exit(3);
  };
  let giveUp: (awayMs: number) => void = defaultGiveUp;
  let stopWaiting: (() => void) | null = null;
  const outages = watchRedisOutages({
    label: redisLabel,
    logger,
    say,
    waitLimitMs,
    manyBatches: options.waitForRedis === 'for ever',
    onOutage: {
      began: (since) => {
        if (waitLimitMs === null) return;
        stopWaiting?.();
        stopWaiting = whenRedisStaysAway({ ping: (timeoutMs) => pingRedis(ensured.url, timeoutMs), limitMs: waitLimitMs, since, onAway: (awayMs) => giveUp(awayMs) });
      },
      ended: () => {
        stopWaiting?.();
        stopWaiting = null;
      },
    },
    // Redis asks for other credentials than it did at the start (its password set or changed):
    // nothing can go on, nor stop cleanly (every command waits for a connection it refuses), so the
    // command ends now, as one refused at the start does, with the same message.
    onCredentialsRefused: (detail) => {
      process.stderr.write(`switchyard: ${credentialsRefusedMessage(ensured.url, detail)}\nThe command stops here (what it finished is kept in Redis; calls in flight are not recorded). With the right credentials, run the same command again: it goes on from where it stopped.\n`);
      process.exit(3);
    },
  });
  const redis = connectRedis(ensured.url);
  // Connections are named by what they serve, the detail of the outage watch's log lines ("connection worker").
  outages.watch(redis, 'main');
  const stopSilenceWatch = watchForSilence(redis, { silentAfterMs: silentAfter, onSilent: (waitedMs) => outages.silent('main', waitedMs), onAnswer: () => outages.answering() });
  warnIfRedisEvicts(redis, redisLabel, say); // not awaited: it must not hold up the start
  const space = keySpaceFromEnv();
  const extra = new Set<Redis>();
  const queues = new Set<Queue>();
  const monthSpend = createMonthSpend(redis, space.prefix);
  const connectWorker = () => {
    const connection = connectRedis(ensured.url, { role: 'worker' });
    outages.watch(connection, 'worker');
    extra.add(connection);
    return connection;
  };
  return {
    redis,
    store: new BatchStore(redis, space),
    space,
    url: ensured.url,
    redisLabel,
    outages,
    logger,
    monthSpend,
    redisWaitLimitMs: waitLimitMs,
    stopWaitMs,
    refusals: { waitMs: waitLimitMs ?? REFUSED_WRITES_WAIT_MS, onRefusal: outages.failed },
    whenRedisStaysAway(goOn, onAway) {
      outages.goOnWith(goOn);
      giveUp = onAway;
    },
    connectWorker,
    openPromptQueue() {
      const connection = connectWorker();
      const queue = new Queue(PROMPT_QUEUE, { connection, prefix: space.prefix });
      // Without a listener BullMQ prints each connection error as a raw dump (a Redis outage: one a reconnect attempt).
      queue.on('error', (error) => outages.failed('queue', error));
      queues.add(queue);
      // BullMQ leaves a connection it was given open when the queue closes: the queue's close ends it
      // too, or a server that opens a queue per batch keeps a Redis client per batch for good (QA soak).
      const closeQueue = queue.close.bind(queue);
      queue.close = async () => {
        queues.delete(queue);
        extra.delete(connection);
        try {
          await closeQueue();
        } finally {
          connection.disconnect();
        }
      };
      return queue;
    },
    async close() {
      stopSilenceWatch();
      stopWaiting?.();
      await monthSpend.flush();
      await Promise.all([...queues].map((queue) => queue.close().catch(() => undefined)));
      for (const connection of extra) connection.disconnect();
      await redis.quit().catch(() => redis.disconnect());
      await ensured.stop();
    },
  };
}
