import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { redisUnhealthy } from '../../src/api/redis-health.ts';
import { testRedisUrl } from '../helpers/redis.ts';

const redis = new Redis(testRedisUrl(), { lazyConnect: false, maxRetriesPerRequest: 1 });
afterAll(() => redis.disconnect());

function busyFor(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until);
}

describe('redisUnhealthy', () => {
  it('is null for a Redis that answers', async () => {
    await redis.ping();
    expect(await redisUnhealthy({ redis, redisLabel: 'test' }, 1_000)).toBeNull();
  });

  it("does not call Redis hung when its reply waited on this process's own busy event loop past the deadline (flaky 503s as serve started)", async () => {
    await redis.ping();
    const health = redisUnhealthy({ redis, redisLabel: 'test' }, 50);
    busyFor(300); // the PONG arrives meanwhile, the 50 ms timer expires too
    expect(await health).toBeNull();
  });
});
