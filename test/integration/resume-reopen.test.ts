import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { createPromptProcessor, type PromptJob } from '../../jobs/prompt.ts';
import type { BatchContexts } from '../../src/queue/batch-context.ts';
import { batchKeys } from '../../src/queue/keys.ts';
import { reopenRows } from '../../src/queue/reopen-rows.ts';
import { cleanupPrefix, trackedConnections, uniquePrefix } from '../helpers/redis.ts';

/**
 * A resume reads which rows succeeded, reopens the others and enqueues them. Meanwhile the
 * resume's own workers run jobs the earlier run left in the queue: a row can succeed between the
 * read and the enqueue. Neither its bits nor its cost may then be counted twice.
 */
describe('a resume reopening rows that jobs left in the queue are finishing meanwhile', () => {
  const space = { prefix: uniquePrefix('resume-reopen') };
  const connections = trackedConnections();
  const redis = connections.connect();
  afterAll(async () => {
    await cleanupPrefix(redis, space.prefix);
    connections.disconnectAll();
  });

  it('reopens only rows that still have not succeeded, atomically with the workers\' publish', async () => {
    const keys = batchKeys(space, 'reopen');
    // Row 3 succeeded after the producer's read (a queued job of the earlier run published it).
    await redis.pipeline().setbit(keys.finished, 2, 1).setbit(keys.finished, 3, 1).setbit(keys.succeeded, 3, 1).setbit(keys.finished, 5, 1).setbit(keys.succeeded, 5, 1).exec();
    const fingerprints = Buffer.alloc(4 * 4, 7);
    const meanwhile = await reopenRows(redis, keys, { firstRow: 2, fingerprints, reopen: [2, 3, 4], changed: [5] });
    expect([...meanwhile]).toEqual([3]);
    const bit = (key: string, row: number) => redis.getbit(key, row);
    // Row 2 (failed before) and 4 are reopened; row 3 keeps its bits: clearing its finished bit would leave the batch a row short.
    expect([await bit(keys.finished, 2), await bit(keys.finished, 3), await bit(keys.succeeded, 3)]).toEqual([0, 1, 1]);
    // Row 5 was edited in the file since it succeeded: it runs again whatever happened.
    expect([await bit(keys.finished, 5), await bit(keys.succeeded, 5)]).toEqual([0, 0]);
    expect(await redis.getrangeBuffer(keys.fingerprints, 8, 23)).toEqual(fingerprints);
  });

  it('a job a resume added does not call a model for a row that has succeeded since', async () => {
    const batchId = 'reopened-job';
    const keys = batchKeys(space, batchId);
    await redis.setbit(keys.succeeded, 9, 1);
    let contextsAsked = 0;
    const batches: BatchContexts = {
      get: async () => {
        contextsAsked++;
        throw new Error('the row would have been run');
      },
      prime: () => undefined,
    };
    const process = createPromptProcessor({ redis, space, batches, logger: pino({ level: 'silent' }) });
    const job: PromptJob = { batchId, row: 9, id: 'r9', messages: [{ role: 'user', content: 'hi' }], metadata: {}, reopened: true };
    expect(await process(job, { jobId: 'j9', redelivered: false })).toEqual({ kind: 'done', batchId, row: 'already-succeeded', costNanos: 0 });
    expect(contextsAsked).toBe(0);
    // A new batch's job (not reopened, first delivery) skips that read: it cannot have succeeded before.
    await expect(process({ ...job, reopened: undefined }, { jobId: 'j9', redelivered: false })).rejects.toThrow('the row would have been run');
    expect(contextsAsked).toBe(1);
  });
});
