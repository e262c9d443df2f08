import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { Redis } from 'ioredis';
import { PRODUCT_ROOT, TMP } from './paths.ts';

export interface BenchRedis {
  url: string;
  /** Where it came from, for the printout. */
  label: string;
  /** Stops a private server started here; does nothing for a shared one. */
  stop(): Promise<void>;
}

/** True if Redis at `url` answers PING within `timeoutMs`; never throws, leaves no connection open. */
async function pings(url: string, timeoutMs: number): Promise<boolean> {
  const redis = new Redis(url, { lazyConnect: true, retryStrategy: () => null, connectTimeout: timeoutMs, commandTimeout: timeoutMs, maxRetriesPerRequest: 0, enableOfflineQueue: false });
  redis.on('error', () => undefined);
  try {
    await redis.connect();
    return (await redis.ping()) === 'PONG';
  } catch {
    return false;
  } finally {
    redis.disconnect();
  }
}

/** $REDIS_URL if set (it must answer), else 127.0.0.1:6379 if it answers, else a private redis-server. */
export async function selectRedis(): Promise<BenchRedis> {
  const explicit = process.env.REDIS_URL?.trim();
  if (explicit) {
    if (!(await pings(explicit, 2000))) throw new Error(`REDIS_URL=${explicit} does not answer PING`);
    return { url: explicit, label: `REDIS_URL ${explicit}`, stop: async () => undefined };
  }
  const local = 'redis://127.0.0.1:6379';
  if (await pings(local, 1500)) return { url: local, label: `shared ${local}`, stop: async () => undefined };
  const module = pathToFileURL(path.join(PRODUCT_ROOT, 'src', 'queue', 'redis-server-process.ts')).href;
  const { startRedisServer } = (await import(module)) as typeof import('../../src/queue/redis-server-process.ts');
  const server = await startRedisServer({ dir: path.join(TMP, `redis-${process.pid}`), persist: false });
  return { url: server.url, label: `private redis-server ${server.url}`, stop: server.stop };
}

/** A key prefix no other run uses (letters, digits and '-' only, so it is safe in a MATCH pattern). */
export function uniquePrefix(name: string): string {
  return `sybench-${name}-${process.pid}-${Date.now().toString(36)}`;
}

/** Deletes every key under `prefix:` with SCAN MATCH + UNLINK (never FLUSHALL). Returns how many. */
export async function deletePrefix(url: string, prefix: string): Promise<number> {
  if (!/^[A-Za-z0-9-]+$/.test(prefix)) throw new Error(`refusing to delete keys for an unusual prefix "${prefix}"`);
  const redis = new Redis(url, { maxRetriesPerRequest: 1 });
  let deleted = 0;
  try {
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
      cursor = next;
      if (keys.length > 0) deleted += await redis.unlink(...keys);
    } while (cursor !== '0');
  } finally {
    redis.disconnect();
  }
  return deleted;
}
