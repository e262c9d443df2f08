import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { builtInConfig } from '../../src/config/defaults.ts';
import { CollectionTally } from '../../src/output/collection-tally.ts';
import { collectBatch } from '../../src/output/collector.ts';
import type { CallRecord, RowResult } from '../../src/output/records.ts';
import { fingerprintBytes, publishRowEvent } from '../../src/output/row-events.ts';
import { outputPaths } from '../../src/output/paths.ts';
import { BatchStore } from '../../src/queue/batch-state.ts';
import { readJsonLines, tempDir } from '../helpers/files.ts';
import { cleanupPrefix, testRedisUrl, uniquePrefix } from '../helpers/redis.ts';

describe('collector', () => {
  let redis: Redis;
  const prefix = uniquePrefix('collector');

  beforeAll(() => {
    redis = new Redis(testRedisUrl());
  });
  afterAll(async () => {
    await cleanupPrefix(redis, prefix);
    redis.disconnect();
  });

  it('ends soon after the producer records its total when no row will ever publish (every row invalid)', async () => {
    const store = new BatchStore(redis, { prefix });
    const outDir = await tempDir('collector');
    const now = new Date().toISOString();
    await store.save({ batch_id: 'all-invalid', status: 'enqueuing', input: 'in.csv', input_kind: 'rows', builtin_config: false, out_dir: outDir, created_at: now, invalid_rows: 0, prompt_column: 'prompt', csv_delimiter: ',' }, builtInConfig('http://127.0.0.1:1/v1'));

    const started = performance.now();
    // A long block: before the fix, the collector waited it out, as no event would end it.
    const collecting = collectBatch({ redis, store, batchId: 'all-invalid', paths: outputPaths(outDir), blockMs: 10_000 });
    await new Promise((resolve) => setTimeout(resolve, 50));
    await store.update('all-invalid', { status: 'running', total: 0, invalid_rows: 2 });

    expect(await collecting).toBe(true);
    expect(performance.now() - started).toBeLessThan(5_000);
  });

  it('stops with the damaged-batch message when the batch record is gone (Redis came back empty), instead of waiting for ever', async () => {
    const store = new BatchStore(redis, { prefix });
    const outDir = await tempDir('collector-gone');
    await store.save({ batch_id: 'gone', status: 'running', total: 5, input: 'in.csv', input_kind: 'rows', builtin_config: false, out_dir: outDir, created_at: new Date().toISOString(), invalid_rows: 0, prompt_column: 'prompt', csv_delimiter: ',' }, builtInConfig('http://127.0.0.1:1/v1'));
    const collecting = collectBatch({ redis, store, batchId: 'gone', paths: outputPaths(outDir), blockMs: 50 });
    collecting.catch(() => undefined);
    await new Promise((resolve) => setTimeout(resolve, 100));
    await redis.del(store.keys('gone').meta);
    await expect(collecting).rejects.toThrow(/^batch gone: its record in Redis is gone while it was in use: Redis lost its data \(restarted without persistence, or from an older snapshot\)/);
  });

  it('stops, saying to resume, when Redis comes back with older data (fewer rows finished, or the file not read yet)', async () => {
    const store = new BatchStore(redis, { prefix });
    for (const [batchId, goBack] of [
      ['went-back', (keys: ReturnType<typeof store.keys>) => redis.setbit(keys.finished, 2, 0)],
      ['reading-again', () => store.update('reading-again', { status: 'enqueuing' })],
    ] as const) {
      const outDir = await tempDir(`collector-${batchId}`);
      await store.save({ batch_id: batchId, status: 'running', total: 5, input: 'in.csv', input_kind: 'rows', builtin_config: false, out_dir: outDir, created_at: new Date().toISOString(), invalid_rows: 0, prompt_column: 'prompt', csv_delimiter: ',' }, builtInConfig('http://127.0.0.1:1/v1'));
      const keys = store.keys(batchId);
      await redis.setbit(keys.finished, 1, 1);
      await redis.setbit(keys.finished, 2, 1);
      const collecting = collectBatch({ redis, store, batchId, paths: outputPaths(outDir), blockMs: 20 });
      collecting.catch(() => undefined);
      await new Promise((resolve) => setTimeout(resolve, 150)); // it has seen 2 of 5 rows finished, the file read
      await goBack(keys);
      await expect(collecting).rejects.toThrow(new RegExp(`^batch ${batchId}: Redis came back with older data than it had \\(2 rows finished before, [12] now: .*\`switchyard run --resume ${batchId}\` writes every row once`));
    }
  });

  it("writes a superseded job's calls to costs.jsonl and counts them in the report, but not its answer", async () => {
    const store = new BatchStore(redis, { prefix });
    const outDir = await tempDir('collector-superseded');
    const batchId = 'superseded';
    const now = new Date().toISOString();
    await store.save({ batch_id: batchId, status: 'running', total: 1, input: 'in.csv', input_kind: 'rows', builtin_config: false, out_dir: outDir, created_at: now, invalid_rows: 0, prompt_column: 'prompt', csv_delimiter: ',' }, builtInConfig('http://127.0.0.1:1/v1'));
    const keys = store.keys(batchId);
    await redis.setrange(keys.fingerprints, 4, fingerprintBytes(2)); // row 1 was edited: its new content has fingerprint 2
    const result = (output: string): RowResult => ({ id: 'r1', row: 1, status: 'succeeded', model: 'm', output, usage: { input_tokens: 3, output_tokens: 5 }, cost_usd: 0.001, latency_ms: 5, attempts: 1, metadata: {}, task_type: null, route_reason: 'test', models_tried: ['m'], final_model: 'm', fallback_reason: null, completed_at: now });
    const call: CallRecord = { batch_id: batchId, row: 1, id: 'r1', model: 'm', attempt: 1, purpose: 'answer', task_type: null, chain_position: 0, status: 'succeeded', http_status: 200, input_tokens: 3, output_tokens: 5, cost_usd: 0.001, latency_ms: 5, started_at: now };
    expect((await publishRowEvent(redis, keys, { result: result('answer to the old wording'), calls: [call] }, 1_000_000, 1)).published).toBe(false);
    expect((await publishRowEvent(redis, keys, { result: result('answer to the new wording'), calls: [call] }, 1_000_000, 2)).published).toBe(true);

    const tally = new CollectionTally();
    const paths = outputPaths(outDir);
    expect(await collectBatch({ redis, store, batchId, paths, tally })).toBe(true);
    const journal = (await import('node:fs/promises').then((fs) => fs.readFile(paths.journal, 'utf8'))).trim().split('\n');
    expect(journal).toHaveLength(1);
    expect(journal[0]).toContain('answer to the new wording');
    expect(await readJsonLines<CallRecord>(paths.costs)).toHaveLength(2);
    // Both calls were paid for: the report (tallied as rows came) counts both, and one row.
    const report = tally.complete!.build({ batchId, startedAt: new Date(now), finishedAt: new Date() });
    expect(report.totals).toMatchObject({ rows: 1, succeeded: 1, calls: 2, cost_usd: 0.002 });
  });
});
