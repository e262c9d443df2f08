import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Queue } from 'bullmq';
import { afterAll, describe, expect, it } from 'vitest';
import { builtInConfig } from '../../src/config/defaults.ts';
import type { InputRow, ReadItem } from '../../src/input/row.ts';
import { BatchStore } from '../../src/queue/batch-state.ts';
import { parsePromptJobId, PROMPT_QUEUE } from '../../src/queue/keys.ts';
import { enqueueBatch } from '../../src/queue/producer.ts';
import { MAX_JOB_PRIORITY, ROWS_PER_PRIORITY } from '../../src/queue/row-priority.ts';
import { cleanupPrefix, trackedConnections, uniquePrefix } from '../helpers/redis.ts';

describe('batches on one queue', () => {
  const connections = trackedConnections();
  const redis = connections.connect();
  const prefixes: string[] = [];
  afterAll(async () => {
    for (const prefix of prefixes) await cleanupPrefix(redis, prefix);
    connections.disconnectAll();
  });

  async function queueSpace(name: string) {
    const space = { prefix: uniquePrefix(name) };
    prefixes.push(space.prefix);
    const store = new BatchStore(redis, space);
    const queue = new Queue(PROMPT_QUEUE, { connection: connections.connect(), prefix: space.prefix });
    const enqueue = async (batchId: string, rows: number) => {
      await store.save({ batch_id: batchId, status: 'enqueuing', input: 'in.csv', input_kind: 'rows', builtin_config: false, out_dir: tmpdir(), created_at: new Date().toISOString(), invalid_rows: 0, prompt_column: 'prompt', csv_delimiter: ',' }, builtInConfig('http://127.0.0.1:1/v1'));
      const items = (async function* (): AsyncGenerator<ReadItem> {
        for (let n = 1; n <= rows; n++) {
          const value: InputRow = { row: n, line: n + 1, id: `${batchId}-${n}`, messages: [{ role: 'user', content: `q${n}` }], metadata: {} };
          yield { kind: 'row', value };
        }
      })();
      await enqueueBatch({ queue, store, batchId, items, errorsPath: join(tmpdir(), `${space.prefix}-${batchId}-errors.jsonl`), chunkSize: 500, resume: false, fingerprintIds: true, runStartedAt: Date.now() });
    };
    /** The queued rows in the order workers will take them, as "batch:row". */
    const order = async () => (await redis.zrange(queue.keys['prioritized']!, '0', '-1')).map((id) => `${parsePromptJobId(id)!.batchId}:${parsePromptJobId(id)!.row}`);
    /** Each queued row's priority, in the order workers will take them (BullMQ's score is priority * 2^32 + a counter). */
    const priorities = async () => {
      const flat = await redis.zrange(queue.keys['prioritized']!, '0', '-1', 'WITHSCORES');
      return flat.filter((_, i) => i % 2 === 1).map((score) => Math.floor(Number(score) / 2 ** 32));
    };
    return { queue, enqueue, order, priorities };
  }

  it('take turns: a batch queued behind a large one starts at once, not after its rows (fair share)', async () => {
    const { queue, enqueue, order } = await queueSpace('fair-share');
    await enqueue('large', 20 * ROWS_PER_PRIORITY);
    await enqueue('small', 2 * ROWS_PER_PRIORITY);
    const taken = await order();
    expect(taken).toHaveLength(22 * ROWS_PER_PRIORITY);
    // large's first turn, small's, large's second, small's second, then the rest of large, each in row order.
    const turn = (batch: string, from: number) => Array.from({ length: ROWS_PER_PRIORITY }, (_, i) => `${batch}:${from + i}`);
    expect(taken.slice(0, 4 * ROWS_PER_PRIORITY)).toEqual([...turn('large', 1), ...turn('small', 1), ...turn('large', ROWS_PER_PRIORITY + 1), ...turn('small', ROWS_PER_PRIORITY + 1)]);
    expect(taken.slice(4 * ROWS_PER_PRIORITY)).toEqual(Array.from({ length: 18 * ROWS_PER_PRIORITY }, (_, i) => `large:${2 * ROWS_PER_PRIORITY + 1 + i}`));
    await queue.close();
  });

  it('a batch that comes once the queue has moved on starts where it stands, not ahead of every waiting row', async () => {
    const { queue, enqueue, order } = await queueSpace('fair-late');
    await enqueue('first', 10 * ROWS_PER_PRIORITY);
    // Workers took first's first six turns meanwhile.
    await redis.zpopmin(queue.keys['prioritized']!, 6 * ROWS_PER_PRIORITY);
    await enqueue('later', 2 * ROWS_PER_PRIORITY);
    const taken = await order();
    const turn = (batch: string, from: number) => Array.from({ length: ROWS_PER_PRIORITY }, (_, i) => `${batch}:${from + i}`);
    expect(taken.slice(0, 4 * ROWS_PER_PRIORITY)).toEqual([...turn('first', 6 * ROWS_PER_PRIORITY + 1), ...turn('later', 1), ...turn('first', 7 * ROWS_PER_PRIORITY + 1), ...turn('later', ROWS_PER_PRIORITY + 1)]);
    expect(taken).toHaveLength(6 * ROWS_PER_PRIORITY);
    await queue.close();
  });

  it("stays within BullMQ's largest priority once the queue's clock reaches it, and reads that clock back from scores near 2^53", async () => {
    const { queue, enqueue, order, priorities } = await queueSpace('fair-limit');
    // A clock this far on: a queue that took about 134 million rows within an hour of each other.
    await redis.set(queue.toKey('row-clock'), String(MAX_JOB_PRIORITY - 1), 'EX', 60);
    await enqueue('late', 3 * ROWS_PER_PRIORITY);
    // addBulk refuses a priority past the limit: the rows past it share the limit, in row order.
    expect(await priorities()).toEqual([...Array<number>(ROWS_PER_PRIORITY).fill(MAX_JOB_PRIORITY - 1), ...Array<number>(2 * ROWS_PER_PRIORITY).fill(MAX_JOB_PRIORITY)]);
    // The clock read back from those scores (up to 2^53 - 1) is the lowest waiting, exactly: a batch after it starts level with the first turn.
    await redis.del(queue.toKey('row-clock'));
    await enqueue('later', 1);
    const taken = await order();
    expect(taken.slice(0, ROWS_PER_PRIORITY + 1)).toEqual([...Array.from({ length: ROWS_PER_PRIORITY }, (_, i) => `late:${i + 1}`), 'later:1']);
    expect(await redis.get(queue.toKey('row-clock'))).toBe(String(MAX_JOB_PRIORITY - 1));
    await queue.close();
  });
});
