import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Queue } from 'bullmq';
import { afterAll, describe, expect, it } from 'vitest';
import { builtInConfig } from '../../src/config/defaults.ts';
import type { InputRow, ReadItem } from '../../src/input/row.ts';
import { BatchStore } from '../../src/queue/batch-state.ts';
import { PROMPT_QUEUE } from '../../src/queue/keys.ts';
import { CHUNK_MAX_PROMPT_BYTES, enqueueBatch, MIN_PENDING_ROWS, pendingRowsAllowed, rowPromptBytes } from '../../src/queue/producer.ts';
import { cleanupPrefix, trackedConnections, uniquePrefix } from '../helpers/redis.ts';

const ROW_BYTES = 100 * 1024;

/** A 100 KB contract, in German: its umlauts are two bytes each in Redis. */
function contractRow(n: number): InputRow {
  const clause = 'Der Auftragnehmer haftet für Schäden aus grober Fahrlässigkeit. ';
  const text = clause.repeat(Math.ceil(ROW_BYTES / Buffer.byteLength(clause)));
  return { row: n, line: n, id: `c${n}`, messages: [{ role: 'user', content: `Summarize contract ${n}:\n${text}` }], metadata: {} };
}

describe('rows queued ahead of the workers, by their prompts\' size', () => {
  const space = { prefix: uniquePrefix('enqueue-bytes') };
  const connections = trackedConnections();
  const redis = connections.connect();
  afterAll(async () => {
    await cleanupPrefix(redis, space.prefix);
    connections.disconnectAll();
  });

  it('allows max_pending rows, or fewer as the average prompt gets larger, never fewer than the floor', () => {
    const mb = 1024 * 1024;
    expect(pendingRowsAllowed(5000, 64 * mb, 4 * 1024 * 1000, 1000)).toBe(5000); // 4 KB prompts: 64 MB holds more
    expect(pendingRowsAllowed(5000, 64 * mb, 100 * 1024 * 1000, 1000)).toBe(655); // 100 KB contracts
    expect(pendingRowsAllowed(5000, 64 * mb, 50 * mb, 10)).toBe(MIN_PENDING_ROWS); // 5 MB documents
    expect(pendingRowsAllowed(5000, undefined, 50 * mb, 10)).toBe(5000);
    expect(pendingRowsAllowed(5000, 64 * mb, 0, 0)).toBe(5000);
    expect(rowPromptBytes({ row: 1, line: 1, id: 'a', messages: [{ role: 'system', content: 'ü' }, { role: 'user', content: '契約' }], metadata: {} })).toBe(2 + 6);
  });

  it('does not queue a file of 100 KB prompts whole under max_pending rows (QA: 3,000 contracts put 280 MB in Redis, the run at 520 MB)', async () => {
    const batchId = 'large-prompts';
    const store = new BatchStore(redis, space);
    await store.save({ batch_id: batchId, status: 'enqueuing', input: 'in.jsonl', input_kind: 'rows', builtin_config: false, out_dir: tmpdir(), created_at: new Date().toISOString(), invalid_rows: 0, prompt_column: 'prompt', csv_delimiter: ',' }, builtInConfig('http://127.0.0.1:1/v1'));
    const real = new Queue(PROMPT_QUEUE, { connection: connections.connect(), prefix: space.prefix });
    const chunks: number[] = [];
    const queue = new Proxy(real, {
      get(target, property, receiver) {
        if (property !== 'addBulk') return Reflect.get(target, property, receiver);
        return async (jobs: Parameters<Queue['addBulk']>[0]) => {
          chunks.push(jobs.reduce((sum, job) => sum + rowPromptBytes(job.data as InputRow), 0));
          return target.addBulk(jobs);
        };
      },
    });
    // No worker finishes a row: the producer reads on only while there is room, then waits.
    const stop = new AbortController();
    const done = enqueueBatch({
      queue,
      store,
      batchId,
      items: (async function* (): AsyncGenerator<ReadItem> {
        for (let n = 1; n <= 200; n++) yield { kind: 'row', value: contractRow(n) };
      })(),
      errorsPath: join(tmpdir(), `${space.prefix}-errors.jsonl`),
      chunkSize: 500,
      resume: false,
      fingerprintIds: true,
      runStartedAt: Date.now(),
      maxPending: 5000,
      maxPendingBytes: 4 * 1024 * 1024,
      signal: stop.signal,
    });
    await new Promise((resolve) => setTimeout(resolve, 1500));
    stop.abort();
    const counts = await done;
    // 4 MB of 100 KB prompts is about 40 rows; the chunk in hand when the room ran out may pass it by one chunk.
    const chunkRows = Math.ceil(CHUNK_MAX_PROMPT_BYTES / ROW_BYTES) + 1;
    expect(counts.enqueued).toBeGreaterThanOrEqual(40);
    expect(counts.enqueued).toBeLessThanOrEqual(41 + chunkRows);
    for (const bytes of chunks) expect(bytes).toBeLessThan(CHUNK_MAX_PROMPT_BYTES + 2 * ROW_BYTES);
    await real.obliterate({ force: true });
    await real.close();
  });
});
