import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UsageError } from '../../src/errors.ts';
import { acquireBatchLease } from '../../src/queue/batch-lease.ts';
import { cleanupPrefix, testRedisUrl, uniquePrefix } from '../helpers/redis.ts';

describe('batch lease: one collector per batch', () => {
  const prefix = uniquePrefix('lease');
  let redis: Redis;
  beforeAll(() => {
    redis = new Redis(testRedisUrl());
  });
  afterAll(async () => {
    await cleanupPrefix(redis, prefix);
    redis.disconnect();
  });

  it('is held while renewed, refused to a second taker, and free once released', async () => {
    const key = `${prefix}:a`;
    const first = await acquireBatchLease(redis, key, 'a', { leaseMs: 300 });
    await new Promise((resolve) => setTimeout(resolve, 500)); // past one lifetime: renewal keeps it
    expect(await redis.get(key)).toMatch(new RegExp(`^${hostname()} pid ${process.pid} `));
    // This process is alive, so a second taker here is refused at once.
    const started = Date.now();
    await expect(acquireBatchLease(redis, key, 'a', { leaseMs: 300 })).rejects.toThrow(UsageError);
    expect(Date.now() - started).toBeLessThan(200);
    await first.release();
    expect(await redis.exists(key)).toBe(0);
    await (await acquireBatchLease(redis, key, 'a')).release();
  });

  it('takes its lease back if it expired while Redis was away and nobody took it', async () => {
    const key = `${prefix}:d`;
    const lease = await acquireBatchLease(redis, key, 'd', { leaseMs: 300 });
    await redis.del(key); // as if it expired during an outage
    await new Promise((resolve) => setTimeout(resolve, 250));
    expect(await redis.get(key)).toMatch(new RegExp(`pid ${process.pid} `));
    expect(lease.lost.aborted).toBe(false);
    await redis.set(key, 'other-host pid 7 taken', 'PX', 5000); // now someone else holds it
    await new Promise((resolve) => setTimeout(resolve, 250));
    expect(lease.lost.aborted).toBe(true);
    await lease.release();
    expect(await redis.get(key)).toBe('other-host pid 7 taken'); // release leaves another's lease alone
  });

  it('stays released when a renewal in flight is answered after the release (NOSCRIPT, then EVAL)', async () => {
    const key = `${prefix}:e`;
    const client = new Redis(testRedisUrl());
    const lease = await acquireBatchLease(client, key, 'e', { leaseMs: 300 });
    // The next renewal's EVALSHA is answered NOSCRIPT only once the release has gone out: its EVAL
    // fallback then reaches Redis after the release's DEL, and the renewal script sets a missing key.
    const evalsha = client.evalsha.bind(client);
    let answerRenewal = (): void => undefined;
    const renewalAsked = new Promise<void>((asked) => {
      client.evalsha = (async () => {
        client.evalsha = evalsha;
        asked();
        await new Promise<void>((resolve) => (answerRenewal = resolve));
        throw new Error('NOSCRIPT No matching script. Please use EVAL.');
      }) as typeof client.evalsha;
    });
    await renewalAsked;
    const released = lease.release();
    setTimeout(() => answerRenewal(), 50);
    await released;
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(await redis.exists(key)).toBe(0);
    client.disconnect();
  });

  it('takes over at once from a dead process on this machine', async () => {
    const key = `${prefix}:b`;
    await redis.set(key, `${hostname()} pid 2147483646 dead01`, 'PX', 60_000);
    const started = Date.now();
    const lease = await acquireBatchLease(redis, key, 'b');
    expect(Date.now() - started).toBeLessThan(200);
    expect(await redis.get(key)).toMatch(new RegExp(`pid ${process.pid} `));
    await lease.release();
  });

  it.runIf(process.platform === 'linux')('takes over from a process killed but not yet reaped (a zombie)', async () => {
    // The shell backgrounds a child, then becomes a process that never reaps it. The child exits a
    // second later, after the exec: one that exited before it could be reaped by the shell itself.
    const parent = spawn('sh', ['-c', 'sleep 1 & echo $!; exec sleep 30'], { stdio: ['ignore', 'pipe', 'ignore'] });
    try {
      const [line] = (await once(parent.stdout, 'data')) as [Buffer];
      const pid = Number(line.toString().trim());
      await expect.poll(() => readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.[0], { timeout: 5000 }).toBe('Z');
      const key = `${prefix}:z`;
      await redis.set(key, `${hostname()} pid ${pid} zomb01`, 'PX', 60_000);
      const lease = await acquireBatchLease(redis, key, 'z');
      expect(lease.tookOverFrom).toBe(`${hostname()} pid ${pid}`);
      await lease.release();
    } finally {
      parent.kill();
    }
  });

  it.runIf(process.platform === 'linux')('judges a holder of the same hostname in another PID namespace (a container) as one elsewhere: waited out, not taken over', async () => {
    const deadPid = spawnSync(process.execPath, ['-e', '0']).pid;
    const key = `${prefix}:ns`;
    await redis.set(key, `${hostname()} pid ${deadPid} cont01 pid:[1]`, 'PX', 300);
    const lease = await acquireBatchLease(redis, key, 'ns', { leaseMs: 600 });
    expect(lease.tookOverFrom).toBeNull(); // it expired; nobody judged it by a pid of another namespace
    await lease.release();
  });

  it('waits out a holder on another machine that stops renewing, and refuses one that renews', async () => {
    const key = `${prefix}:c`;
    await redis.set(key, 'other-host pid 42 abc123', 'PX', 200);
    const lease = await acquireBatchLease(redis, key, 'c', { leaseMs: 400 });
    await lease.release();

    await redis.set(key, 'other-host pid 42 abc123', 'PX', 400);
    const renewing = setInterval(() => void redis.pexpire(key, 400), 100);
    try {
      await expect(acquireBatchLease(redis, key, 'c', { leaseMs: 400 })).rejects.toThrow(
        'batch c is being run by another process right now (other-host pid 42), which writes its outputs',
      );
    } finally {
      clearInterval(renewing);
    }
  });
});
