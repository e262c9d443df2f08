import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configSchema } from '../../src/config/schema.ts';
import { createBatchContexts } from '../../src/queue/batch-context.ts';
import { BatchStore } from '../../src/queue/batch-state.ts';
import { cleanupPrefix, testRedisUrl, uniquePrefix } from '../helpers/redis.ts';

const configWith = (concurrency: number) =>
  configSchema.parse({ providers: { p: { base_url: 'http://127.0.0.1:1/v1' } }, models: { m: { provider: 'p' } }, default_model: 'm', concurrency });

describe('batch contexts in a long-running worker', () => {
  const prefix = uniquePrefix('batch-context');
  let redis: Redis;
  let store: BatchStore;
  beforeAll(() => {
    redis = new Redis(testRedisUrl());
    store = new BatchStore(redis, { prefix });
  });
  afterAll(async () => {
    await cleanupPrefix(redis, prefix);
    redis.disconnect();
  });

  const save = (batchId: string, concurrency: number, builtin = false) =>
    store.save({ batch_id: batchId, status: 'running', input: 'in.csv', input_kind: 'rows', builtin_config: builtin, out_dir: '/tmp/out', created_at: new Date().toISOString(), invalid_rows: 0, prompt_column: 'prompt', csv_delimiter: ',' }, configWith(concurrency));

  it('reads a batch config again after a while: the same context while it is unchanged, a new one after a resume changed it', async () => {
    let time = 0;
    const contexts = createBatchContexts(store, { reloadAfterMs: 1000, now: () => time });
    await save('b1', 8);
    const first = await contexts.get('b1');
    expect(first !== 'elsewhere' && first.config.concurrency).toBe(8);
    expect(await contexts.get('b1')).toBe(first);
    time += 1500; // reloaded, unchanged: the same clients
    expect(await contexts.get('b1')).toBe(first);
    await save('b1', 16); // a resume with another config
    expect(await contexts.get('b1')).toBe(first); // not yet: read every reloadAfterMs
    time += 1500;
    const second = await contexts.get('b1');
    expect(second).not.toBe(first);
    expect(second !== 'elsewhere' && second.config.concurrency).toBe(16);
  });

  it('leaves a batch on the built-in simulator to its own process, and never reloads a primed context', async () => {
    let time = 0;
    const contexts = createBatchContexts(store, { reloadAfterMs: 1000, now: () => time });
    await save('builtin', 8, true);
    expect(await contexts.get('builtin')).toBe('elsewhere');
    contexts.prime('builtin', configWith(4), undefined); // the process that runs it
    const primed = await contexts.get('builtin');
    time += 10_000;
    expect(await contexts.get('builtin')).toBe(primed);
    expect(primed !== 'elsewhere' && primed.config.concurrency).toBe(4);
  });
});
