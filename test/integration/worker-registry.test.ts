import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { hostname } from 'node:os';
import { Queue, Worker, type Job } from 'bullmq';
import { afterAll, describe, expect, it } from 'vitest';
import { PROMPT_QUEUE } from '../../src/queue/keys.ts';
import { pidNamespace } from '../../src/queue/local-process.ts';
import { keyHolders, registerWorker, releaseRowsOfDeadWorkers, workerProcesses, workerRegistryKey } from '../../src/queue/worker-registry.ts';
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

describe('worker registry: which other worker processes hold a key (keyHolders), judged by Redis\' clock', () => {
  const space = { prefix: uniquePrefix('worker-registry-keys') };
  const ownConnections = trackedConnections();
  const redis = ownConnections.connect();
  const stopped: ChildProcess[] = [];
  afterAll(async () => {
    for (const child of stopped) {
      child.kill('SIGKILL');
      await once(child, 'exit');
    }
    await cleanupPrefix(redis, space.prefix);
    ownConnections.disconnectAll();
  });

  it('counts an entry heard from recently, and not one stamped by a clock that runs ahead, nor a local process stopped (Ctrl-Z) since its last heartbeat', async () => {
    const registry = workerRegistryKey(space);
    const minute = 60_000;
    // A suspended worker on this machine: its pid answers, its heartbeats stopped 5 minutes ago.
    const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 60_000)'], { stdio: 'ignore' });
    stopped.push(child);
    await once(child, 'spawn');
    child.kill('SIGSTOP');
    const namespace = pidNamespace();
    const local = { process: `${hostname()} pid ${child.pid}`, ...(namespace ? { pid_namespace: namespace } : {}) };
    await redis.hset(registry, {
      // Died 10 minutes ago on a machine whose clock runs an hour ahead: its last stamp looks 50 minutes in the future.
      aheadworker: JSON.stringify({ process: 'fast-clock pid 7', seen: Date.now() + 60 * minute - 10 * minute, keys: ['AHEAD_KEY'] }),
      stoppedworker: JSON.stringify({ ...local, seen: Date.now() - 5 * minute, keys: ['STOPPED_KEY'] }),
      remoteworker: JSON.stringify({ process: 'another-machine pid 8', seen: Date.now() - 30_000, keys: ['REMOTE_KEY'] }),
      stoppedjustnow: JSON.stringify({ ...local, seen: Date.now() - 30_000, keys: ['RECENT_LOCAL_KEY'] }),
    });
    const holds = keyHolders(redis, space, 0);
    expect({ ahead: await holds('AHEAD_KEY'), stopped: await holds('STOPPED_KEY'), remote: await holds('REMOTE_KEY'), recentLocal: await holds('RECENT_LOCAL_KEY') })
      .toEqual({ ahead: false, stopped: false, remote: true, recentLocal: true });
    expect(await workerProcesses(redis, space)).toEqual(['another-machine pid 8', local.process].sort());
  });

  it("stamps a worker's heartbeat with Redis' clock", async () => {
    const registration = registerWorker(redis, space, 'stamped');
    try {
      await expect.poll(() => redis.hget(workerRegistryKey(space), 'stamped')).toBeTruthy();
      const [seconds, micros] = await redis.time();
      const redisNow = Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
      const entry = JSON.parse((await redis.hget(workerRegistryKey(space), 'stamped'))!) as { seen: number; process: string; keys: string[] };
      expect(entry.process).toBe(`${hostname()} pid ${process.pid}`);
      expect(Array.isArray(entry.keys)).toBe(true);
      expect(redisNow - entry.seen).toBeGreaterThanOrEqual(0);
      expect(redisNow - entry.seen).toBeLessThan(5000);
    } finally {
      await registration.unregister();
    }
    expect(await redis.hget(workerRegistryKey(space), 'stamped')).toBeNull();
  });
});
