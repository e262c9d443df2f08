import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { BatchStore } from '../queue/batch-state.ts';
import type { KeySpace } from '../queue/keys.ts';
import { connectRedis, ensureRedis, redactUrl } from '../queue/redis-connection.ts';

/** A command's link to Redis: the connection, the batch store and the key prefix in use. */
export interface Session {
  redis: Redis;
  store: BatchStore;
  space: KeySpace;
  redisLabel: string;
  /** A connection of its own for a BullMQ Queue or Worker (blocking reads allowed); closed with the session. */
  connectWorker(): Redis;
  close(): Promise<void>;
}

export function keySpaceFromEnv(env: NodeJS.ProcessEnv = process.env): KeySpace {
  return { prefix: env.SWITCHYARD_PREFIX?.trim() || 'sy' };
}

export async function openSession(logger: Logger, say: (line: string) => void): Promise<Session> {
  const ensured = await ensureRedis({ dataDir: '.switchyard', log: say });
  const redis = connectRedis(ensured.url);
  redis.on('error', (error) => logger.error({ err: error }, 'redis connection error'));
  const space = keySpaceFromEnv();
  const extra: Redis[] = [];
  return {
    redis,
    store: new BatchStore(redis, space),
    space,
    redisLabel: redactUrl(ensured.url),
    connectWorker() {
      const connection = connectRedis(ensured.url, { role: 'worker' });
      connection.on('error', (error) => logger.error({ err: error }, 'redis worker connection error'));
      extra.push(connection);
      return connection;
    },
    async close() {
      for (const connection of extra) connection.disconnect();
      await redis.quit().catch(() => redis.disconnect());
      await ensured.stop();
    },
  };
}
