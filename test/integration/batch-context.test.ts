import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configSchema } from '../../src/config/schema.ts';
import { createBatchContexts } from '../../workers/batch-context.ts';
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

  const save = (batchId: string, concurrency: number, builtin = false, startedAt = new Date()) =>
    store.save(
      { batch_id: batchId, status: 'running', input: 'in.csv', input_kind: 'rows', builtin_config: builtin, out_dir: '/tmp/out', created_at: new Date(0).toISOString(), started_at: startedAt.toISOString(), invalid_rows: 0, prompt_column: 'prompt', csv_delimiter: ',' },
      configWith(concurrency),
    );

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
    contexts.prime('builtin', configWith(4), undefined, undefined, 5_000, false); // the process that runs it
    const primed = await contexts.get('builtin', 5_000);
    time += 10_000;
    expect(await contexts.get('builtin', 5_000)).toBe(primed);
    expect(primed !== 'elsewhere' && primed.config.concurrency).toBe(4);
    // A job queued by a later run (elsewhere) of the batch: its config is read again.
    await save('builtin', 8, true, new Date(9_000));
    expect(await contexts.get('builtin', 9_000)).toBe('elsewhere');
  });

  it("reads a batch's config again at once for a job queued by a run that started after it was read", async () => {
    const contexts = createBatchContexts(store, { reloadAfterMs: 30_000, now: () => 0 });
    await save('resumed', 8, false, new Date(1_000));
    const first = await contexts.get('resumed', 1_000);
    expect(first !== 'elsewhere' && first.config.concurrency).toBe(8);
    await save('resumed', 16, false, new Date(2_000)); // a resume with another config
    // Rows the first run queued go on with the context in hand; the resume's own read the new config.
    expect(await contexts.get('resumed', 1_000)).toBe(first);
    const [a, b] = await Promise.all([contexts.get('resumed', 2_000), contexts.get('resumed', 2_000)]);
    expect(a).toBe(b); // one read for the rows that find it stale together
    expect(a !== 'elsewhere' && a.config.concurrency).toBe(16);
    expect(await contexts.get('resumed', 1_000)).toBe(a);
  });
});
