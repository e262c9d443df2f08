import { Queue, UnrecoverableError } from 'bullmq';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.ts';
import { advanceRow, type RowRunnerDeps } from '../../src/execution/row-runner.ts';
import { createProviderClients } from '../../src/models/provider-clients.ts';
import type { CallRecord, RowResult } from '../../src/output/records.ts';
import { readRowEvents, type StreamEntry } from '../../src/output/row-events.ts';
import type { BatchContexts } from '../../workers/batch-context.ts';
import { batchKeys, PROMPT_QUEUE, promptJobId } from '../../src/queue/keys.ts';
import { startSimulator, type Simulator } from '../../src/sim/server.ts';
import { startPromptWorker, type PromptWorkerHandle } from '../../workers/prompt-worker.ts';
import { openRowGate } from '../helpers/open-row-gate.ts';
import { cleanupPrefix, trackedConnections, uniquePrefix } from '../helpers/redis.ts';

/** A prompt job that crashes after its model call (Redis trouble, a bug) keeps that call's cost record. */
describe('a prompt job that crashes after calling a model', () => {
  const space = { prefix: uniquePrefix('worker-crash') };
  const connections = trackedConnections();
  const connect = connections.connect;
  let sim: Simulator;
  let queue: Queue;
  let worker: PromptWorkerHandle | undefined;
  beforeAll(async () => {
    sim = await startSimulator({});
    queue = new Queue(PROMPT_QUEUE, { connection: connect(), prefix: space.prefix });
  });
  afterAll(async () => {
    await worker?.close();
    await queue.close();
    await cleanupPrefix(connections.opened[0]!, space.prefix);
    connections.disconnectAll();
    await sim.close();
  });

  /** One batch whose gate throws on the first `crashes` settlements, as a Redis error would (or `error`). */
  function batchesCrashingOnSettle(crashes: number, error: () => Error = () => new Error('Connection is closed.')): BatchContexts {
    const config = parseConfig({ providers: { sim: { base_url: sim.url } }, models: { ok: { provider: 'sim', price: { input_per_mtok: 1, output_per_mtok: 2 } } }, default_model: 'ok' }, 'test');
    let settled = 0;
    const { gate } = openRowGate({
      settle: async () => {
        if (++settled <= crashes) throw error();
      },
    });
    const runner: RowRunnerDeps = {
      config,
      providers: createProviderClients(config),
      gate,
      plan: async () => ({ plan: { taskType: 'simple', routeReason: 'test', chain: ['ok'], skipped: [], promptTokens: 5, promptTokensCounted: false }, calls: [] }),
      sleep: async () => undefined,
    };
    return { get: async () => ({ config, runner, detached: false, advance: (row, progress) => advanceRow(row, progress, runner) }), prime: () => undefined, stopCalls: () => undefined, whenBudgetSpent: () => undefined };
  }

  async function runOneRow(batchId: string, crashes: number, error?: () => Error): Promise<{ result: RowResult; calls: CallRecord[] }> {
    await worker?.close();
    worker = startPromptWorker({ connection: connect(), redis: connect(), space, batches: batchesCrashingOnSettle(crashes, error), logger: pino({ level: 'silent' }), concurrency: 1, lockMs: 5000 });
    const data = { batchId, row: 1, id: 'r1', messages: [{ role: 'user', content: 'Hello' }], metadata: {} };
    await queue.add('prompt', data, { jobId: promptJobId(batchId, 1, 1), attempts: 3, backoff: { type: 'fixed', delay: 10 }, removeOnComplete: true, removeOnFail: true });
    const keys = batchKeys(space, batchId);
    let events: StreamEntry[] = [];
    await expect.poll(async () => (events = await readRowEvents(connections.opened[0]!, keys, '0', 10, 0)).length, { timeout: 10_000 }).toBe(1);
    const event = events[0]!;
    return { result: JSON.parse(event.resultJson) as RowResult, calls: event.callsJsonl.trim().split('\n').map((line) => JSON.parse(line) as CallRecord) };
  }

  it('records the call made before the crash beside the retry that answers', async () => {
    const { result, calls } = await runOneRow('crash-once', 1);
    expect(result).toMatchObject({ status: 'succeeded', attempts: 2 });
    expect(calls.map((call) => `${call.attempt}:${call.status}`)).toEqual(['1:succeeded', '2:succeeded']);
    // The row's cost counts both calls: both were paid for.
    expect(result.cost_usd).toBeCloseTo((calls[0]!.cost_usd ?? 0) + (calls[1]!.cost_usd ?? 0), 12);
  });

  it("puts every crashed attempt's call in the failed result once BullMQ gives up", async () => {
    const { result, calls } = await runOneRow('crash-always', Number.POSITIVE_INFINITY);
    expect(result).toMatchObject({ status: 'failed', error: { code: 'unexpected_error' } });
    expect(result.error?.message).toContain('Connection is closed.');
    expect(calls.map((call) => call.attempt)).toEqual([1, 2, 3]);
  });

  it('gives a failed result to a row BullMQ gives up on with attempts left (its claim lost too often), instead of leaving the batch a row short', async () => {
    // What BullMQ fails a row with after its claim was lost past maxStalledCount: no retry follows, whatever attempts remain.
    const { result } = await runOneRow('stalled-out', 1, () => new UnrecoverableError('job stalled more than allowable limit'));
    expect(result).toMatchObject({ status: 'failed', error: { code: 'unexpected_error' } });
    expect(result.error?.message).toMatch(/its claim on the row was lost 4 times .*--resume$/);
  });

  it('gives a failed result to a job whose data it cannot read (queued by another version), from its id, instead of leaving the batch a row short', async () => {
    await worker?.close();
    worker = startPromptWorker({ connection: connect(), redis: connect(), space, batches: batchesCrashingOnSettle(0), logger: pino({ level: 'silent' }), concurrency: 1, lockMs: 5000 });
    await queue.add('prompt', { batch: 'old-shape', line: 7 }, { jobId: promptJobId('old-version', 7, 12345), attempts: 2, backoff: { type: 'fixed', delay: 10 }, removeOnComplete: true, removeOnFail: true });
    let events: StreamEntry[] = [];
    await expect.poll(async () => (events = await readRowEvents(connections.opened[0]!, batchKeys(space, 'old-version'), '0', 10, 0)).length, { timeout: 10_000 }).toBe(1);
    const result = JSON.parse(events[0]!.resultJson) as RowResult;
    expect(result).toMatchObject({ row: 7, status: 'failed', error: { code: 'unexpected_error' } });
    expect(result.error?.message).toMatch(/its job's data could not be read \(.*\): queued by another version of Switchyard\? Run the batch again with --resume/);
  });
});
