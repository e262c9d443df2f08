import { Redis, ReplyError } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { describeFileTrouble, describeRedisTrouble } from '../../src/errors.ts';

describe('describeRedisTrouble', () => {
  it("tells a Redis refusal from a bug, with Redis' own first line and what to check", () => {
    const refusal = new ReplyError("MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist to disk.\nmore");
    expect(describeRedisTrouble(refusal)).toBe(
      "Redis refused a command: MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist to disk.\n" +
        'Check the Redis server (its log, free disk, maxmemory, that it is not a read-only replica), then run the same command again: it goes on from where it stopped.',
    );
    expect(describeRedisTrouble(new TypeError('x is undefined'))).toBeNull();
    expect(describeRedisTrouble('not an error')).toBeNull();
  });

  it('says Redis stayed away when a command ran out of retries', async () => {
    // Nothing listens on port 1; one retry, so the command gives up at once.
    const redis = new Redis({ port: 1, maxRetriesPerRequest: 1, retryStrategy: () => 10, lazyConnect: false });
    redis.on('error', () => undefined);
    const error = await redis.get('k').catch((e: unknown) => e);
    redis.disconnect();
    expect(describeRedisTrouble(error)).toMatch(/^Redis did not answer for too long \(Reached the max retries per request limit \(which is 1\)\..*\)\nOnce it is back, run the same command again: it goes on/s);
  });
});

describe('describeFileTrouble', () => {
  it('names the file and the reason for disk and permission errors, and leaves the rest alone', () => {
    const full = Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', path: '/data/out/costs.jsonl' });
    expect(describeFileTrouble(full)).toBe('cannot use /data/out/costs.jsonl: the disk is full [ENOSPC]. Fix that, then run the same command again: it goes on from where it stopped.');
    expect(describeFileTrouble(Object.assign(new Error('x'), { code: 'ENOSPC', syscall: 'write' }))).toBe(
      'a file write failed (in the outputs folder, most likely): the disk is full [ENOSPC]. Fix that, then run the same command again: it goes on from where it stopped.',
    );
    expect(describeFileTrouble(Object.assign(new Error('x'), { code: 'EBADF', path: '/x' }))).toBeNull();
  });
});
