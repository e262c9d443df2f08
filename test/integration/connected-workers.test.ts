import { Queue, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectedWorkerCount, watchConnectedWorkers } from '../../src/queue/connected-workers.ts';
import { PROMPT_QUEUE } from '../../src/queue/keys.ts';
import { cleanupPrefix, trackedConnections, uniquePrefix } from '../helpers/redis.ts';

const connections = trackedConnections();
const connect = connections.connect;

describe('worker processes connected to the prompts queue', () => {
  const prefix = uniquePrefix('connected-workers');
  let redis: Redis;
  let queue: Queue;
  beforeAll(() => {
    redis = connect();
    queue = new Queue(PROMPT_QUEUE, { connection: connect(), prefix });
  });
  afterAll(async () => {
    await queue.close();
    await cleanupPrefix(redis, prefix);
    connections.disconnectAll();
  });

  it('are counted as they come and go, and a watcher says when the last one went and when one came back', async () => {
    expect(await connectedWorkerCount(queue)).toBe(0);
    const changes: number[] = [];
    const stop = watchConnectedWorkers(queue, 0, 50, (count) => changes.push(count));
    try {
      const worker = new Worker(PROMPT_QUEUE, async () => undefined, { connection: connect(), prefix });
      await worker.waitUntilReady();
      await expect.poll(() => connectedWorkerCount(queue), { timeout: 5000 }).toBe(1);
      await expect.poll(() => changes, { timeout: 5000 }).toEqual([1]);
      // A worker of another prefix (another Switchyard installation on this Redis) does not count.
      const elsewhere = new Worker(PROMPT_QUEUE, async () => undefined, { connection: connect(), prefix: `${prefix}-other` });
      await elsewhere.waitUntilReady();
      expect(await connectedWorkerCount(queue)).toBe(1);
      await elsewhere.close();
      await worker.close();
      await expect.poll(() => changes, { timeout: 5000 }).toEqual([1, 0]);
      expect(await connectedWorkerCount(queue)).toBe(0);
    } finally {
      stop();
    }
  });
});
