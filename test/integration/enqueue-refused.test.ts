import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Queue } from 'bullmq';
import { afterAll, describe, expect, it } from 'vitest';
import { builtInConfig } from '../../src/config/defaults.ts';
import type { InputRow, ReadItem } from '../../src/input/row.ts';
import { BatchStore } from '../../src/queue/batch-state.ts';
import { batchKeys, PROMPT_QUEUE } from '../../src/queue/keys.ts';
import { enqueueBatch } from '../../src/queue/producer.ts';
import { isRedisRefusal, whileRedisRefuses } from '../../src/queue/redis-outage.ts';
import { cleanupPrefix, trackedConnections, uniquePrefix } from '../helpers/redis.ts';

const oom = () => Object.assign(new Error("OOM command not allowed when used memory > 'maxmemory'."), { name: 'ReplyError' });

describe('writes a full Redis refuses', () => {
  const space = { prefix: uniquePrefix('enqueue-refused') };
  const connections = trackedConnections();
  const redis = connections.connect();
  afterAll(async () => {
    await cleanupPrefix(redis, space.prefix);
    connections.disconnectAll();
  });

  it('are told from other errors, a MULTI aborted for one among them', () => {
    expect(isRedisRefusal(oom())).toBe(true);
    expect(isRedisRefusal(Object.assign(new Error("EXECABORT Transaction discarded because of: OOM command not allowed when used memory > 'maxmemory'."), { name: 'ReplyError' }))).toBe(true);
    expect(isRedisRefusal(Object.assign(new Error('EXECABORT Transaction discarded because of previous errors.'), { name: 'ReplyError', previousErrors: [oom()] }))).toBe(true);
    expect(isRedisRefusal(Object.assign(new Error('ERR wrong number of arguments'), { name: 'ReplyError' }))).toBe(false);
  });

  it('are tried again while refused, up to the wait, and other errors are not', async () => {
    let tries = 0;
    const said: string[] = [];
    const wait = { waitMs: 60_000, onRefusal: (source: string) => void said.push(source) };
    const noSleep = async () => undefined;
    expect(await whileRedisRefuses('writing', async () => (++tries < 3 ? Promise.reject(oom()) : 'done'), wait, noSleep)).toBe('done');
    expect([tries, said]).toEqual([3, ['writing', 'writing']]);
    await expect(whileRedisRefuses('writing', async () => Promise.reject(new Error('other')), wait, noSleep)).rejects.toThrow('other');
    await expect(whileRedisRefuses('writing', async () => Promise.reject(oom()), { ...wait, waitMs: 0 }, noSleep)).rejects.toThrow('OOM');
  });

  it("queue a chunk again without the rows that finished meanwhile (QA: a refused addBulk's rows that ran were queued and paid for again)", async () => {
    const batchId = 'refused-chunk';
    const store = new BatchStore(redis, space);
    await store.save({ batch_id: batchId, status: 'enqueuing', input: 'in.csv', input_kind: 'rows', builtin_config: false, out_dir: tmpdir(), created_at: new Date().toISOString(), invalid_rows: 0, prompt_column: 'prompt', csv_delimiter: ',' }, builtInConfig('http://127.0.0.1:1/v1'));
    const real = new Queue(PROMPT_QUEUE, { connection: connections.connect(), prefix: space.prefix });
    let calls = 0;
    // The first addBulk queues rows 1-2 and is refused for the rest; rows 1-2 then run and finish (their jobs removed).
    const queue = new Proxy(real, {
      get(target, property, receiver) {
        if (property !== 'addBulk') return Reflect.get(target, property, receiver);
        return async (jobs: Parameters<Queue['addBulk']>[0]) => {
          if (++calls > 1) return target.addBulk(jobs);
          const added = await target.addBulk(jobs.slice(0, 2));
          for (const job of added) await job.remove();
          await redis.setbit(batchKeys(space, batchId).finished, 1, 1);
          await redis.setbit(batchKeys(space, batchId).finished, 2, 1);
          throw oom();
        };
      },
    });
    const rows: InputRow[] = [1, 2, 3, 4].map((n) => ({ row: n, line: n + 1, id: `r${n}`, messages: [{ role: 'user', content: `q${n}` }], metadata: {} }));
    const said: string[] = [];
    const counts = await enqueueBatch({
      queue,
      store,
      batchId,
      items: (async function* (): AsyncGenerator<ReadItem> {
        for (const value of rows) yield { kind: 'row', value };
      })(),
      errorsPath: join(tmpdir(), `${space.prefix}-errors.jsonl`),
      chunkSize: 100,
      resume: false,
      fingerprintIds: true,
      runStartedAt: Date.now(),
      refusals: { waitMs: 60_000, onRefusal: (source) => void said.push(source) },
    });
    expect(counts).toMatchObject({ enqueued: 4 });
    expect(said).toEqual(['queueing the file']);
    expect((await real.getJobs(['waiting', 'prioritized'])).map((job) => (job.data as { row: number }).row).sort()).toEqual([3, 4]);
    await real.close();
  });
});
