import { spawnSync } from 'node:child_process';
import { hostname } from 'node:os';
import { Queue, Worker, type Job } from 'bullmq';
import { afterAll, describe, expect, it } from 'vitest';
import { PROMPT_QUEUE } from '../../src/queue/keys.ts';
import { registerWorker, releaseRowsOfDeadWorkers, workerRegistryKey } from '../../src/queue/worker-registry.ts';
import { cleanupPrefix, trackedConnections, uniquePrefix } from '../helpers/redis.ts';

const connections = trackedConnections();
const connect = connections.connect;

describe('worker registry: rows of a worker process that died on this machine', () => {
  const space = { prefix: uniquePrefix('worker-registry') };
  const redis = connect();
  afterAll(async () => {
    await cleanupPrefix(redis, space.prefix);
    connections.disconnectAll();
  });

  it('are handed back to the queue at once (counted as redelivered); live and other machines\' workers keep theirs', async () => {
    const queue = new Queue(PROMPT_QUEUE, { connection: connect(), prefix: space.prefix });
    await queue.addBulk([1, 2, 3].map((row) => ({ name: 'prompt', data: { row }, opts: { jobId: `b_${row}` } })));
    // Two rows taken by a worker that then "dies": its locks stay for a minute, nobody renews them.
    const doomed = new Worker(PROMPT_QUEUE, null, { connection: connect(), prefix: space.prefix, lockDuration: 60_000, autorun: false });
    expect(await doomed.getNextJob('deadworker:1')).toBeDefined();
    expect(await doomed.getNextJob('deadworker:2')).toBeDefined();
    // One row held by a worker on another machine: not ours to judge.
    expect(await doomed.getNextJob('remoteworker:1')).toBeDefined();
    await doomed.close();
    const deadPid = spawnSync(process.execPath, ['-e', '0']).pid;
    const registry = workerRegistryKey(space);
    await redis.hset(registry, {
      deadworker: JSON.stringify({ process: `${hostname()} pid ${deadPid}`, seen: Date.now() }),
      remoteworker: JSON.stringify({ process: 'another-machine pid 7', seen: Date.now() }),
      // Same hostname, another PID namespace (a container): its pid means nothing here.
      containerworker: JSON.stringify({ process: `${hostname()} pid ${deadPid}`, seen: Date.now(), pid_namespace: 'pid:[1]' }),
      staleworker: JSON.stringify({ process: 'gone-machine pid 8', seen: Date.now() - 3_600_000 }),
      garbled: 'not json',
    });

    const processed: Job[] = [];
    const rescuer = new Worker(PROMPT_QUEUE, async (job) => void processed.push(job), { connection: connect(), prefix: space.prefix, lockDuration: 60_000 });
    const registration = registerWorker(redis, space, rescuer.id);
    try {
      const released = await releaseRowsOfDeadWorkers(redis, space, rescuer);
      expect(released.rowsFrom).toEqual(new Map([[`${hostname()} pid ${deadPid}`, 2]]));
      expect(released.dead).toEqual([`${hostname()} pid ${deadPid}`]);
      await expect.poll(() => processed.map((job) => job.id).sort(), { timeout: 5000 }).toEqual(['b_1', 'b_2']);
      expect(processed.every((job) => job.stalledCounter === 1)).toBe(true);
      // The remote worker's row stays active under its lock.
      expect(await queue.getActive()).toHaveLength(1);
      expect(Object.keys(await redis.hgetall(registry)).sort()).toEqual(['containerworker', 'remoteworker', rescuer.id].sort());
    } finally {
      await rescuer.close();
      await registration.unregister();
      await queue.close();
    }
    expect(Object.keys(await redis.hgetall(registry)).sort()).toEqual(['containerworker', 'remoteworker']);
  });
});
