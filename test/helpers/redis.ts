/**
 * Redis for tests. The global setup (./global-setup.ts) provides one URL to every test file;
 * each test works under its own key prefix and deletes only keys under that prefix.
 */
import { randomBytes } from 'node:crypto';
import { Redis as IORedis, type Redis } from 'ioredis';
import { inject } from 'vitest';

declare module 'vitest' {
  export interface ProvidedContext {
    /** The Redis every test uses: REDIS_URL, a testcontainers Redis, or a private redis-server. */
    redisUrl: string;
  }
}

/** The Redis URL from the global setup. */
export function testRedisUrl(): string {
  return inject('redisUrl');
}

let counter = 0;

/**
 * A key/queue prefix no other test, file or run shares, e.g. `t-retry-policy-4123-1-9f3a1c`.
 * Use it as BullMQ's `prefix` and as Switchyard's KeySpace prefix. Only [a-z0-9-], so it needs no
 * escaping in MATCH patterns and is valid in BullMQ names.
 */
export function uniquePrefix(name: string): string {
  const slug = name.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '').slice(0, 32) || 'test';
  counter += 1;
  return `t-${slug}-${process.pid}-${counter}-${randomBytes(3).toString('hex')}`;
}

/** Deletes every key that starts with `prefix` (SCAN MATCH, never FLUSHALL); returns how many. */
export async function cleanupPrefix(redis: Redis, prefix: string): Promise<number> {
  if (prefix === '') throw new Error('cleanupPrefix needs a non-empty prefix');
  const pattern = `${prefix.replace(/[*?[\]\\]/g, '\\$&')}*`;
  let cursor = '0';
  let deleted = 0;
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 500);
    cursor = next;
    if (keys.length > 0) deleted += await redis.unlink(...keys);
  } while (cursor !== '0');
  return deleted;
}

/**
 * Connections to the test Redis as BullMQ wants them (blocking reads allowed), each remembered so
 * `disconnectAll` closes every one after the tests.
 */
export function trackedConnections(): { connect(): Redis; readonly opened: readonly Redis[]; disconnectAll(): void } {
  const opened: Redis[] = [];
  return {
    connect() {
      const connection = new IORedis(testRedisUrl(), { maxRetriesPerRequest: null });
      opened.push(connection);
      return connection;
    },
    opened,
    disconnectAll() {
      for (const connection of opened) connection.disconnect();
    },
  };
}
