import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import { createPromptProcessor, type PromptJob } from '../../jobs/prompt.ts';
import type { BatchContext, BatchContexts } from '../../workers/batch-context.ts';
import { batchKeys } from '../../src/queue/keys.ts';
import type { RowResult } from '../../src/output/records.ts';
import type { RowRunnerDeps } from '../../src/execution/row-runner.ts';
import { readRowEvents } from '../../src/output/row-events.ts';
import { cleanupPrefix, trackedConnections, uniquePrefix } from '../helpers/redis.ts';

/** Redis as a full one (maxmemory, noeviction) answers a script that writes: the first `times` of them. */
function refusingScripts(redis: Redis, times: number): { redis: Redis; refused: () => number } {
  let refused = 0;
  const proxy = new Proxy(redis, {
    get(target, property, receiver) {
      if (property === 'evalsha' && refused < times) {
        return async () => {
          refused++;
          throw Object.assign(new Error("OOM command not allowed when used memory > 'maxmemory'."), { name: 'ReplyError' });
        };
      }
      const value: unknown = Reflect.get(target, property, receiver);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
  return { redis: proxy, refused: () => refused };
}

describe("a row's result that a full Redis refuses", () => {
  const space = { prefix: uniquePrefix('publish-refused') };
  const connections = trackedConnections();
  const redis = connections.connect();
  afterAll(async () => {
    await cleanupPrefix(redis, space.prefix);
    connections.disconnectAll();
  });

  const answered: RowResult = {
    ...{ id: 'r1', row: 1, status: 'succeeded', model: 'm', output: 'the answer', usage: { input_tokens: 3, output_tokens: 5 }, cost_usd: 0.000001, latency_ms: 5, attempts: 1 },
    ...{ metadata: {}, task_type: null, route_reason: 'test', models_tried: ['m'], final_model: 'm', fallback_reason: null, completed_at: new Date().toISOString() },
  };
  const contexts = (advanced: { calls: number }): BatchContexts => {
    const context = {
      detached: false,
      runner: { sleep: async () => undefined } as unknown as RowRunnerDeps,
      advance: async () => {
        advanced.calls++;
        return { kind: 'finished' as const, event: { result: answered, calls: [] }, costNanos: 1000 };
      },
    } as unknown as BatchContext;
    return { get: async () => context, prime: () => undefined, whenBudgetSpent: () => undefined, stopCalls: () => undefined };
  };
  const job: PromptJob = { batchId: 'full', row: 1, id: 'r1', messages: [{ role: 'user', content: 'hi' }], metadata: {} };

  it('is offered again until Redis takes it, not given up so that the row is run and paid for again (QA: 53 calls paid twice)', async () => {
    const advanced = { calls: 0 };
    const full = refusingScripts(redis, 3);
    const refusals: string[] = [];
    const process = createPromptProcessor({ redis: full.redis, space, batches: contexts(advanced), logger: pino({ level: 'silent' }), refusals: { waitMs: 60_000, onRefusal: (source) => void refusals.push(source) } });
    expect(await process(job, { jobId: 'j1', redelivered: false })).toEqual({ kind: 'done', batchId: 'full', row: 'succeeded', costNanos: 1000 });
    expect(full.refused()).toBe(3);
    expect(refusals).toEqual(['recording a row', 'recording a row', 'recording a row']);
    expect(advanced.calls).toBe(1);
    const events = await readRowEvents(redis, batchKeys(space, 'full'), '0-0', 10, 0);
    expect(events.map((event) => event.row)).toEqual([1]);
  });

  it('is given up as crashed once it has waited refusedWaitMs', async () => {
    const full = refusingScripts(redis, 1000);
    const process = createPromptProcessor({ redis: full.redis, space, batches: contexts({ calls: 0 }), logger: pino({ level: 'silent' }), refusals: { waitMs: 0, onRefusal: () => undefined } });
    expect(await process({ ...job, batchId: 'still-full' }, { jobId: 'j2', redelivered: false })).toMatchObject({ kind: 'crashed' });
    expect(full.refused()).toBe(1);
  });
});
