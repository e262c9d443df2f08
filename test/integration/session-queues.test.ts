import pino from 'pino';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { openSession } from '../../src/queue/session.ts';
import { cleanupPrefix, testRedisUrl, trackedConnections, uniquePrefix } from '../helpers/redis.ts';

describe("a session's prompt queues", () => {
  const prefix = uniquePrefix('session-queues');
  const connections = trackedConnections();
  const redis = connections.connect();
  afterAll(async () => {
    await cleanupPrefix(redis, prefix);
    connections.disconnectAll();
  });

  it('close their own Redis connection (QA soak: serve kept one per batch, 213 after 200 batches)', async () => {
    const saved = { url: process.env.REDIS_URL, prefix: process.env.SWITCHYARD_PREFIX };
    process.env.REDIS_URL = testRedisUrl();
    process.env.SWITCHYARD_PREFIX = prefix;
    const session = await openSession(pino({ level: 'silent' }), () => undefined);
    try {
      // Each queue's own connection ended, not a count of the server's clients (other test files share that Redis).
      const disconnect = vi.spyOn(Redis.prototype, 'disconnect');
      for (let i = 0; i < 5; i++) {
        const queue = session.openPromptQueue();
        await queue.getJobCounts('waiting'); // connected and used, as a batch's queue is
        await queue.close();
      }
      expect(disconnect).toHaveBeenCalledTimes(5);
      disconnect.mockRestore();
    } finally {
      await session.close();
      process.env.REDIS_URL = saved.url;
      process.env.SWITCHYARD_PREFIX = saved.prefix;
      if (saved.url === undefined) delete process.env.REDIS_URL;
      if (saved.prefix === undefined) delete process.env.SWITCHYARD_PREFIX;
    }
  });
});
