import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configSchema } from '../../src/config/schema.ts';
import { resumeOpenBatches, type OpenBatchesOptions } from '../../src/api/open-batches.ts';
import type { RunHost } from '../../src/batch/run-batch.ts';
import { BatchStore, type BatchMeta } from '../../src/queue/batch-state.ts';
import type { BackgroundCollection } from '../../src/api/background-collection.ts';
import { configFingerprint } from '../../src/config/config-fingerprint.ts';
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

  describe('a batch posted to a server with another config (QA: a second server ran a stopped one\'s batch on its own provider, limits and prices)', () => {
    const own = { fingerprint: configFingerprint(config, false), from: '--config /srv/team-b.yaml on host b1' };
    const posted = (batchId: string, fields: Partial<BatchMeta>) =>
      store.save({ batch_id: batchId, status: 'running', input: 'in.csv', input_kind: 'rows', builtin_config: false, out_dir: '/tmp/out', created_at: new Date(0).toISOString(), invalid_rows: 0, prompt_column: 'prompt', csv_delimiter: ',', served: true, ...fields }, config);
    const collected: string[] = [];
    const collecting = {
      start: (batchId: string, lease: { release(): Promise<void> }) => {
        collected.push(batchId);
        void lease.release();
      },
    } as unknown as BackgroundCollection;
    const serverOptions = (says: string[], collection: BackgroundCollection): OpenBatchesOptions => ({
      ...options({ redis, store, openPromptQueue: () => ({ getRanges: async () => [], close: async () => undefined }) } as unknown as RunHost['session'], says),
      host: { session: { redis, store, openPromptQueue: () => ({ getRanges: async () => [], close: async () => undefined }) } as unknown as RunHost['session'], config: { config, builtIn: false }, serverConfig: own, stop: new AbortController().signal },
      collection,
    });

    it('is left as it is, said once with the server and config it belongs to and what to do', async () => {
      await posted('team-a-1', { total: 1000, server_config: '3f2a9c1b20aa', server_config_from: '--config /srv/team-a.yaml on host a1' });
      await redis.del(openKey);
      await redis.sadd(openKey, 'team-a-1');
      const says: string[] = [];
      await resumeOpenBatches(serverOptions(says, unused('collection')));
      expect(says).toEqual([
        `[team-a-1] Left as it is: it was posted to a server with another config (--config /srv/team-a.yaml on host a1; config 3f2a9c1b20aa), and this server's (--config /srv/team-b.yaml on host b1; config ${own.fingerprint}) would run its 1,000 rows not finished with other providers, limits and prices. To finish it as it was posted, start \`switchyard serve\` with that config on this Redis and prefix; to run the rest with this server's config instead, post its file again here with batch_id=team-a-1.`,
      ]);
      // Still open, for the server it belongs to; and no lease was taken.
      expect(await redis.sismember(openKey, 'team-a-1')).toBe(1);
      expect(await redis.exists(store.keys('team-a-1').lease)).toBe(0);
    });

    // Their row count not known yet (their file was read by then: a resume reads it again): none is missing from the queue, which is not under test.
    it('is gone on with by a server with the same config, and so is one from before servers recorded theirs', async () => {
      await posted('same-config', { server_config: own.fingerprint, server_config_from: '--config /elsewhere/copy.yaml on host b2' });
      await posted('unrecorded', {});
      await redis.del(openKey);
      await redis.sadd(openKey, 'same-config', 'unrecorded');
      const says: string[] = [];
      await resumeOpenBatches(serverOptions(says, collecting));
      expect(collected.sort()).toEqual(['same-config', 'unrecorded']);
      expect(says.every((line) => line.includes('Going on with it'))).toBe(true);
    });
  });
});
