import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import { createPromptProcessor, type PromptJob } from '../../jobs/prompt.ts';
import type { BatchContext, BatchContexts } from '../../workers/batch-context.ts';
import { batchKeys } from '../../src/queue/keys.ts';
import { BatchStore } from '../../src/queue/batch-state.ts';
import { builtInConfig } from '../../src/config/defaults.ts';
import { freshProgress } from '../../src/execution/row-progress.ts';
import type { RowRunnerDeps } from '../../src/execution/row-runner.ts';
import { createBatchLookup } from '../../src/api/batch-lookup.ts';
import { currentWaiting, readBatchWaiting, WAITING_PROGRESS_GRACE_MS, WAITING_STALE_MS } from '../../src/queue/batch-waiting.ts';
import { cleanupPrefix, trackedConnections, uniquePrefix } from '../helpers/redis.ts';

/** The scripts run on `redis`, counted. */
function countingScripts(redis: Redis): { redis: Redis; scripts: () => number } {
  let scripts = 0;
  const proxy = new Proxy(redis, {
    get(target, property, receiver) {
      // Each run starts with EVALSHA; a Redis that has not seen the script yet answers NOSCRIPT and the
      // same run goes on as EVAL (lua-script.ts), which is not a second write.
      if (property === 'evalsha') scripts++;
      const value: unknown = Reflect.get(target, property, receiver);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
  return { redis: proxy, scripts: () => scripts };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('why a batch\'s rows wait reaches the batch (QA: the API said "running", 0 rows, for minutes; the reason was only in the workers\' logs)', () => {
  const space = { prefix: uniquePrefix('batch-waiting') };
  const connections = trackedConnections();
  const redis = connections.connect();
  afterAll(async () => {
    await cleanupPrefix(redis, space.prefix);
    connections.disconnectAll();
  });

  const note = (seconds: number) => `rows wait for fast's rate limit: models.fast.rpm (60, ...) lets one call start every 1.0 s, and the next free slot is ${seconds} s away`;
  const parking = (seconds: { next: number }): BatchContexts => {
    const context = {
      detached: false,
      runner: { sleep: async () => undefined } as unknown as RowRunnerDeps,
      advance: async () => ({ kind: 'park' as const, waitMs: seconds.next * 1000, progress: freshProgress(), note: note(seconds.next++) }),
    } as unknown as BatchContext;
    return { get: async () => context, prime: () => undefined, whenBudgetSpent: () => undefined, stopCalls: () => undefined };
  };

  it('is kept on the batch by the worker that parks its rows, written once in a while rather than per row, and shown in the batch view', async () => {
    const batchId = 'waits';
    const store = new BatchStore(redis, space);
    const now = new Date().toISOString();
    await store.save({ batch_id: batchId, status: 'running', input: 'in.csv', input_kind: 'rows', builtin_config: false, out_dir: '/tmp/nowhere', created_at: now, started_at: now, total: 40, invalid_rows: 0, prompt_column: 'prompt', csv_delimiter: ',' }, builtInConfig('http://127.0.0.1:1/v1'));
    const counted = countingScripts(redis);
    const process = createPromptProcessor({ redis: counted.redis, space, batches: parking({ next: 55 }), logger: pino({ level: 'silent' }) });
    const job = (row: number): PromptJob => ({ batchId, row, id: `r${row}`, messages: [{ role: 'user', content: 'hi' }], metadata: {} });
    for (let row = 1; row <= 40; row++) expect((await process(job(row), { jobId: `j${row}`, redelivered: false })).kind).toBe('park');
    await sleep(100);
    // One write for the 40 parked rows so far (the first); the latest note follows at the end of the interval.
    expect(counted.scripts()).toBe(1);
    const first = await readBatchWaiting(redis, batchKeys(space, batchId));
    expect(first.note).toMatchObject({ reason: note(55), finished: 0 });

    const lookup = createBatchLookup(store, () => false, async () => 1);
    const view = await lookup.view(batchId);
    expect(view.waiting).toEqual({ reason: note(55), since: new Date(first.note!.since).toISOString(), said_at: new Date(first.note!.said).toISOString() });
    expect(view.waiting!.since).toBe(view.waiting!.said_at);
  });

  it('keeps its key among the batch\'s own, which forget deletes (every key that starts with the meta key\'s name)', () => {
    const keys = batchKeys(space, 'any');
    expect(keys.waiting.startsWith(keys.meta)).toBe(true);
  });
});

describe('whether a kept note is current', () => {
  const said = 1_000_000;
  const note = { reason: 'rows wait for x', since: said - 30_000, said, until: said + 90_000, finished: 3 };

  it('shows it while said within the last minute or its wait is not over', () => {
    expect(currentWaiting(note, 3, said + 5_000)).toEqual({ reason: 'rows wait for x', since: new Date(said - 30_000).toISOString(), said_at: new Date(said).toISOString() });
    expect(currentWaiting({ ...note, until: said }, 3, said + WAITING_STALE_MS - 1)).not.toBeNull();
    // The wait said (90 s) is longer than a minute: shown to its end, then dropped.
    expect(currentWaiting(note, 3, said + 89_000)).not.toBeNull();
    expect(currentWaiting(note, 3, said + 91_000)).toBeNull();
    expect(currentWaiting({ ...note, until: said }, 3, said + WAITING_STALE_MS + 1)).toBeNull();
  });

  it('drops it once rows finished since it was last said, after a few seconds\' grace', () => {
    expect(currentWaiting(note, 4, said + WAITING_PROGRESS_GRACE_MS - 1)).not.toBeNull();
    expect(currentWaiting(note, 4, said + WAITING_PROGRESS_GRACE_MS + 1)).toBeNull();
    expect(currentWaiting(null, 0, said)).toBeNull();
  });
});
