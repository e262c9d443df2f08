import { Redis } from 'ioredis';
import { monthKey } from '../limits/budget.ts';
import { DEFAULT_REDIS_URL, PRIVATE_REDIS_DIR, recordedPrivateRedisUrl, redactUrl } from '../queue/redis-connection.ts';
import { keySpaceFromEnv } from '../queue/session.ts';

/** How long a dry run waits for Redis to answer before saying the month's spend could not be checked. */
const MONTH_READ_TIMEOUT_MS = 1500;

export type MonthSpentRead = { ok: true; spentNanos: number; where: string } | { ok: false; why: string };

/**
 * The month's spend (budget.monthly_usd's counter) as a run would find it: on REDIS_URL (else the
 * default Redis, else the private redis-server a run started in this folder, if it is running),
 * under SWITCHYARD_PREFIX. One connection, one try, a short timeout and no retries: a dry run starts
 * no Redis and does not wait for one.
 */
export async function readMonthSpent(now = new Date(), env: NodeJS.ProcessEnv = process.env, timeoutMs = MONTH_READ_TIMEOUT_MS, defaultUrl = DEFAULT_REDIS_URL): Promise<MonthSpentRead> {
  const prefix = keySpaceFromEnv(env).prefix;
  const explicit = env.REDIS_URL?.trim() || undefined;
  const url = explicit ?? defaultUrl;
  const first = await readSpent(url, monthKey(prefix, now), timeoutMs);
  if ('spentNanos' in first) return { ok: true, spentNanos: first.spentNanos, where: where(url, prefix) };
  // As a run would: with REDIS_URL unset and nothing at the default, the private server it started here.
  const privateUrl = explicit === undefined ? recordedPrivateRedisUrl(PRIVATE_REDIS_DIR) : null;
  if (privateUrl) {
    const second = await readSpent(privateUrl, monthKey(prefix, now), timeoutMs);
    if ('spentNanos' in second) return { ok: true, spentNanos: second.spentNanos, where: where(privateUrl, prefix) };
  }
  return { ok: false, why: `Redis at ${redactUrl(url)}: ${first.error}` };
}

const where = (url: string, prefix: string) => `Redis at ${redactUrl(url)}, key prefix "${prefix}"`;

async function readSpent(url: string, key: string, timeoutMs: number): Promise<{ spentNanos: number } | { error: string }> {
  let redis: Redis | undefined;
  let timer: NodeJS.Timeout | undefined;
  const seen: string[] = [];
  try {
    redis = new Redis(url, { lazyConnect: true, retryStrategy: () => null, connectTimeout: timeoutMs, commandTimeout: timeoutMs, maxRetriesPerRequest: 0, enableOfflineQueue: false });
    // ioredis rejects with "Connection is closed."; why (ECONNREFUSED, ENOENT) went to the 'error' event first.
    redis.on('error', (error: Error) => seen.push(error.message.split('\n', 1)[0] ?? ''));
    const client = redis;
    const read = (async () => {
      await client.connect();
      // A database the server refuses (the URL's /N) leaves ioredis in database 0: ask for it outright.
      const db = client.options.db ?? 0;
      if (db !== 0) await client.select(db);
      return Number((await client.hget(key, 'spent')) ?? 0);
    })();
    read.catch(() => undefined); // when the timeout wins, the read's own failure comes later: it is said already
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
    });
    return { spentNanos: await Promise.race([read, timeout]) };
  } catch (error) {
    const message = (error instanceof Error ? error.message : String(error)).split('\n', 1)[0] ?? '';
    return { error: message === 'Connection is closed.' ? (seen.findLast((said) => said !== message) ?? message) : message };
  } finally {
    clearTimeout(timer);
    redis?.disconnect();
  }
}
