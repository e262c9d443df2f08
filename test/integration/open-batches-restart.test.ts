import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configSchema } from '../../src/config/schema.ts';
import { resumeOpenBatches, type OpenBatchesOptions } from '../../src/api/open-batches.ts';
import type { RunHost } from '../../src/batch/run-batch.ts';
import { BatchStore } from '../../src/queue/batch-state.ts';
import { apiCancellingBatchesKey, apiOpenBatchesKey } from '../../src/queue/keys.ts';
import { cleanupPrefix, testRedisUrl, uniquePrefix } from '../helpers/redis.ts';

const config = configSchema.parse({ providers: { p: { base_url: 'http://127.0.0.1:1/v1' } }, models: { m: { provider: 'p' } }, default_model: 'm' });

/** The steps of a starting server that looks at an open batch which turned out finished: none but Redis' are reached. */
const unused = <T>(name: string): T =>
  new Proxy(
    {},
    {
      get: () => {
        throw new Error(`${name} was not to be used`);
      },
    },
  ) as T;

describe('a server starting up, taking up the batches left open', () => {
  const prefix = uniquePrefix('open-restart');
  const openKey = apiOpenBatchesKey({ prefix });
  const cancellingKey = apiCancellingBatchesKey({ prefix });
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

  const save = (batchId: string, status: 'completed' | 'enqueuing') =>
    store.save({ batch_id: batchId, status, input: 'in.csv', input_kind: 'rows', builtin_config: false, out_dir: '/tmp/out', created_at: new Date(0).toISOString(), invalid_rows: 0, prompt_column: 'prompt', csv_delimiter: ',' }, config);

  const options = (session: RunHost['session'], says: string[]): OpenBatchesOptions => ({
    host: { session, config: { config, builtIn: false }, stop: new AbortController().signal },
    collection: unused('collection'),
    starter: unused('starter'),
    say: (line) => says.push(line),
    openKey,
    cancellingKey,
    cancel: () => Promise.reject(new Error('no cancel here')),
  });

  it('takes a finished batch out of the open set', async () => {
    await save('ended', 'completed');
    await redis.sadd(openKey, 'ended');
    const says: string[] = [];
    await resumeOpenBatches(options({ redis, store } as unknown as RunHost['session'], says));
    expect(await redis.sismember(openKey, 'ended')).toBe(0);
    expect(says).toEqual([]);
  });

  it("leaves the open mark of a batch posted again (to another server) after its finished status was read: that run's, not the old one's", async () => {
    await save('again', 'completed');
    await redis.sadd(openKey, 'again');
    // The other server's post lands between this server's read of the batch and its clean-up: its
    // status goes back to enqueuing, then it is marked open (batch-start.ts), its run under way.
    const racing = Object.create(store) as BatchStore;
    racing.loadWithProgress = async (batchId) => {
      const seen = await store.loadWithProgress(batchId);
      await save('again', 'enqueuing');
      await redis.sadd(openKey, 'again');
      return seen;
    };
    await resumeOpenBatches(options({ redis, store: racing } as unknown as RunHost['session'], []));
    expect(await redis.sismember(openKey, 'again')).toBe(1);
  });
});
