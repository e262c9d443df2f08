import { tmpdir } from 'node:os';
import { Queue } from 'bullmq';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { builtInConfig } from '../../src/config/defaults.ts';
import { BatchStore } from '../../src/queue/batch-state.ts';
import { PROMPT_QUEUE, promptJobId } from '../../src/queue/keys.ts';
import { unqueueOrphanedBatches } from '../../src/queue/unqueue-batch.ts';
import { cleanupPrefix, trackedConnections, uniquePrefix } from '../helpers/redis.ts';

/**
 * A run's start looks at the queue twice: for the rows of batches whose run is gone (taken off), and
 * for the other batches' rows its own take turns with (said). Listing the queue's ids takes ~0.1 s per
 * 50,000 (QA: it was listed once for each, 0.2 s of a run's start behind a queued batch of 50,000).
 */
describe("a run's start, with other batches' rows queued", () => {
  const space = { prefix: uniquePrefix('queue-at-start') };
  const connections = trackedConnections();
  const redis = connections.connect();
  afterAll(async () => {
    await cleanupPrefix(redis, space.prefix);
    connections.disconnectAll();
  });

  it("takes off the rows of a batch whose run is gone and counts the others' waiting rows, listing each queued job once", async () => {
    const store = new BatchStore(redis, space);
    const save = (batchId: string, detached: boolean) =>
      store.save({ batch_id: batchId, status: 'running', detached, input: 'in.csv', input_kind: 'rows', builtin_config: false, out_dir: tmpdir(), created_at: new Date().toISOString(), invalid_rows: 0, prompt_column: 'prompt', csv_delimiter: ',' }, builtInConfig('http://127.0.0.1:1/v1'));
    // The run's own batch (rows an earlier run left), a batch whose run was killed (no lease), a --detach'ed one.
    await Promise.all([save('own', false), save('killed', false), save('detached', true)]);
    const queue = new Queue(PROMPT_QUEUE, { connection: connections.connect(), prefix: space.prefix });
    const add = (batchId: string, rows: number, delay = 0) => queue.addBulk(Array.from({ length: rows }, (_, i) => ({ name: 'prompt', data: { row: i + 1 }, opts: { jobId: promptJobId(batchId, i + 1 + (delay > 0 ? 1000 : 0), 7), delay } })));
    await add('own', 3);
    await add('killed', 4);
    await add('killed', 2, 600_000);
    await add('detached', 5);
    // Parked rows do not take turns with this run's rows until they wake: not counted.
    await add('detached', 6, 600_000);

    const listing = vi.spyOn(queue, 'getRanges');
    try {
      const start = await unqueueOrphanedBatches(queue, store, 'own');
      expect([...start.orphans]).toEqual([['killed', { removed: 6, kept: 0, carried: 0 }]]);
      expect(start.othersWaiting).toBe(5);
      // Each of the 20 queued jobs listed once, for both answers.
      const listed = (await Promise.all(listing.mock.results.map((result) => result.value as Promise<string[]>))).flat();
      expect(listed).toHaveLength(3 + 6 + 11);
      expect(new Set(listed).size).toBe(listed.length);
    } finally {
      listing.mockRestore();
    }
    // The own batch's rows and the detached batch's stay.
    expect(await queue.getJobCounts('waiting', 'prioritized', 'delayed')).toMatchObject({ waiting: 8, delayed: 6 });
    await queue.close();
  });
});
