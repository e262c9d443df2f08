import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { builtInConfig } from '../../src/config/defaults.ts';
import { collectBatch } from '../../src/output/collector.ts';
import { outputPaths } from '../../src/output/paths.ts';
import { BatchStore } from '../../src/queue/batch-state.ts';
import { tempDir } from '../helpers/files.ts';
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
});
