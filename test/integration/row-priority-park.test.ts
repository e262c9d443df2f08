import { Queue } from 'bullmq';
import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.ts';
import type { RowRunnerDeps } from '../../src/execution/row-runner.ts';
import { createProviderClients } from '../../src/models/provider-clients.ts';
import { PROMPT_QUEUE, promptJobId } from '../../src/queue/keys.ts';
import { rowClockKey } from '../../src/queue/row-priority.ts';
import type { BatchContexts } from '../../workers/batch-context.ts';
import { startPromptWorker, type PromptWorkerHandle } from '../../workers/prompt-worker.ts';
import { openRowGate } from '../helpers/open-row-gate.ts';
import { cleanupPrefix, trackedConnections, uniquePrefix } from '../helpers/redis.ts';

/** A parked row is out of the prioritized set the queue's clock is read from: parking it moves the clock up to its priority. */
describe('a row parked by a worker', () => {
  const space = { prefix: uniquePrefix('park-clock') };
  const connections = trackedConnections();
  const redis = connections.connect();
  let worker: PromptWorkerHandle | undefined;
  afterAll(async () => {
    await worker?.close();
    await cleanupPrefix(redis, space.prefix);
    connections.disconnectAll();
  });

  /** Every row parks for a minute, as one waiting for its rate-limit slot does. */
  function parkingBatches(): BatchContexts {
    const config = parseConfig({ providers: { sim: { base_url: 'http://127.0.0.1:1/v1' } }, models: { ok: { provider: 'sim', price: { input_per_mtok: 1, output_per_mtok: 2 } } }, default_model: 'ok' }, 'test');
    const runner: RowRunnerDeps = { config, providers: createProviderClients(config), gate: openRowGate().gate, plan: async () => ({ plan: { taskType: 'simple', routeReason: 'test', chain: ['ok'], skipped: [], promptTokens: 5, promptTokensCounted: false }, calls: [] }), sleep: async () => undefined };
    return { get: async () => ({ config, runner, detached: false, advance: async (_row, progress) => ({ kind: 'park', waitMs: 60_000, progress }) }), prime: () => undefined, stopCalls: () => undefined, whenBudgetSpent: () => undefined };
  }

  it("moves the queue's clock up to its priority, so a batch queued while no row waits starts level with it rather than ahead of it", async () => {
    const queue = new Queue(PROMPT_QUEUE, { connection: connections.connect(), prefix: space.prefix });
    // The clock as the batch's producer last read it, many turns before the row's.
    await redis.set(rowClockKey(queue), '2', 'EX', 60);
    await queue.add('prompt', { batchId: 'parks', row: 1, id: 'r1', messages: [{ role: 'user', content: 'Hello' }], metadata: {} }, { jobId: promptJobId('parks', 1, 1), priority: 9 });
    worker = startPromptWorker({ connection: connections.connect(), redis: connections.connect(), space, batches: parkingBatches(), logger: pino({ level: 'silent' }), concurrency: 1, lockMs: 5000 });
    await expect.poll(async () => (await queue.getRanges(['delayed'], 0, -1)).length, { timeout: 10_000 }).toBe(1);
    await expect.poll(() => redis.get(rowClockKey(queue)), { timeout: 5000 }).toBe('9');
    expect(await redis.ttl(rowClockKey(queue))).toBeGreaterThan(60);
    await queue.close();
  });
});
