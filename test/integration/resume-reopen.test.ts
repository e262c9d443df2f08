import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Queue } from 'bullmq';
import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { createPromptProcessor, type PromptJob } from '../../jobs/prompt.ts';
import type { BatchContexts } from '../../workers/batch-context.ts';
import { builtInConfig } from '../../src/config/defaults.ts';
import type { InputRow, ReadItem } from '../../src/input/row.ts';
import { rowFingerprint } from '../../src/input/row-fingerprint.ts';
import { BatchStore } from '../../src/queue/batch-state.ts';
import { batchKeys, batchOfJobId, PROMPT_QUEUE, promptJobId } from '../../src/queue/keys.ts';
import { enqueueBatch } from '../../src/queue/producer.ts';
import { unqueueBatch } from '../../src/queue/unqueue-batch.ts';
import { reopenRows } from '../../src/queue/reopen-rows.ts';
import type { RowResult } from '../../src/output/records.ts';
import { fingerprintBytes, publishRowEvent, readRowEvents } from '../../src/output/row-events.ts';
import { cleanupPrefix, trackedConnections, uniquePrefix } from '../helpers/redis.ts';

/**
 * A resume reads which rows succeeded, reopens the others and enqueues them. Meanwhile the
 * resume's own workers run jobs the earlier run left in the queue: a row can succeed between the
 * read and the enqueue. Neither its bits nor its cost may then be counted twice.
 */
function answeredRow(row: number): RowResult {
  return {
    ...{ id: `r${row}`, row, status: 'succeeded', model: 'm', output: 'old answer', usage: { input_tokens: 3, output_tokens: 5 }, cost_usd: 0.000001, latency_ms: 5, attempts: 1 },
    ...{ metadata: {}, task_type: null, route_reason: 'test', models_tried: ['m'], final_model: 'm', fallback_reason: null, completed_at: new Date().toISOString() },
  };
}

describe('a resume reopening rows that jobs left in the queue are finishing meanwhile', () => {
  const space = { prefix: uniquePrefix('resume-reopen') };
  const connections = trackedConnections();
  const redis = connections.connect();
  afterAll(async () => {
    await cleanupPrefix(redis, space.prefix);
    connections.disconnectAll();
  });

  it("reopens only rows that have not finished since the producer's read, atomically with the workers' publish", async () => {
    const keys = batchKeys(space, 'reopen');
    const bit = (key: string, row: number) => redis.getbit(key, row);
    // As read: rows 2 and 3 had failed, rows 4, 5 and 6 had not finished, row 7 had succeeded with other content.
    // Since: queued jobs of the earlier run finished row 3 (succeeded), row 5 (succeeded) and row 6 (failed).
    const since = redis.pipeline().setbit(keys.finished, 2, 1).setbit(keys.finished, 3, 1).setbit(keys.succeeded, 3, 1);
    await since.setbit(keys.finished, 5, 1).setbit(keys.succeeded, 5, 1).setbit(keys.finished, 6, 1).setbit(keys.finished, 7, 1).setbit(keys.succeeded, 7, 1).exec();
    const fingerprints = Buffer.alloc(6 * 4, 7);
    const meanwhile = await reopenRows(redis, keys, { firstRow: 2, fingerprints, failed: [2, 3], unfinished: [4, 5, 6], changed: [7], restored: [] });
    expect([...meanwhile].sort()).toEqual([3, 5, 6]);
    // Row 2 is reopened; rows 3, 5 and 6 keep their bits: cleared, with their jobs gone, the batch would stay a row short.
    expect(await Promise.all([2, 3, 4, 5, 6].map((row) => bit(keys.finished, row)))).toEqual([0, 1, 0, 1, 1]);
    expect(await Promise.all([3, 5, 6].map((row) => bit(keys.succeeded, row)))).toEqual([1, 1, 0]);
    // Row 7 was edited in the file since it succeeded: it runs again whatever happened.
    expect([await bit(keys.finished, 7), await bit(keys.succeeded, 7)]).toEqual([0, 0]);
    expect(await redis.getrangeBuffer(keys.fingerprints, 8, 31)).toEqual(fingerprints);
  });

  it("a withdrawn row that a job of the earlier run finishes is recorded and paid for, but not counted as finished", async () => {
    const keys = batchKeys(space, 'withdrawn');
    // Row 4 became invalid in the file (or the file got shorter) while its old job was still queued.
    await redis.setbit(keys.withdrawn, 4, 1);
    const result = answeredRow(4);
    await publishRowEvent(redis, keys, { result, calls: [] }, 1000, undefined);
    expect([await redis.getbit(keys.finished, 4), await redis.getbit(keys.succeeded, 4)]).toEqual([0, 0]);
    expect(await redis.hget(keys.meta, 'cost_nanos')).toBe('1000');
    expect((await readRowEvents(redis, keys, '0-0', 10, 0)).map((entry) => entry.row)).toEqual([4]);
    // A row that is not withdrawn counts as usual.
    await publishRowEvent(redis, keys, { result: answeredRow(5), calls: [] }, 0, undefined);
    expect([await redis.getbit(keys.finished, 5), await redis.getbit(keys.succeeded, 5)]).toEqual([1, 1]);
  });

  it('a job whose row was edited in the file since it was queued publishes its calls, not its answer', async () => {
    const keys = batchKeys(space, 'superseded');
    // The resume recorded row 3's new fingerprint (7) and queued it anew; the old job (fingerprint 6) finishes.
    await redis.setrange(keys.fingerprints, 3 * 4, fingerprintBytes(7));
    const call = { batch_id: 'superseded', row: 3, id: 'r3', model: 'm', attempt: 1, status: 'succeeded' };
    expect((await publishRowEvent(redis, keys, { result: answeredRow(3), calls: [call as never] }, 1000, 6)).published).toBe(false);
    expect([await redis.getbit(keys.finished, 3), await redis.getbit(keys.succeeded, 3)]).toEqual([0, 0]);
    expect(await redis.hget(keys.meta, 'cost_nanos')).toBe('1000'); // paid for all the same
    const [stale] = await readRowEvents(redis, keys, '0-0', 10, 0);
    expect(stale).toMatchObject({ row: 3, resultJson: '' });
    expect(JSON.parse(stale!.callsJsonl)).toEqual(call);
    // The new job's answer counts; so does a job from before jobs carried a fingerprint.
    expect((await publishRowEvent(redis, keys, { result: answeredRow(3), calls: [] }, 0, 7)).published).toBe(true);
    expect((await publishRowEvent(redis, keys, { result: answeredRow(4), calls: [] }, 0, undefined)).published).toBe(true);
    expect([await redis.getbit(keys.finished, 3), await redis.getbit(keys.succeeded, 3), await redis.getbit(keys.finished, 4)]).toEqual([1, 1, 1]);
  });

  it('a re-delivered job whose row was edited since it was queued drops itself before calling a model', async () => {
    const batchId = 'superseded-job';
    await redis.setrange(batchKeys(space, batchId).fingerprints, 2 * 4, fingerprintBytes(7));
    const batches: BatchContexts = {
      get: async () => {
        throw new Error('the row would have been run');
      },
      prime: () => undefined,
      whenBudgetSpent: () => undefined,
      stopCalls: () => undefined,
    };
    const process = createPromptProcessor({ redis, space, batches, logger: pino({ level: 'silent' }) });
    const job: PromptJob = { batchId, row: 2, id: 'r2', messages: [{ role: 'user', content: 'old wording' }], metadata: {}, fingerprint: 6 };
    expect(await process(job, { jobId: 'j2', redelivered: true })).toEqual({ kind: 'done', batchId, row: 'superseded', costNanos: 0 });
    await expect(process({ ...job, fingerprint: 7 }, { jobId: 'j2', redelivered: true })).rejects.toThrow('the row would have been run');
  });

  it('a job a resume added does not call a model for a row that has succeeded since', async () => {
    const batchId = 'reopened-job';
    const keys = batchKeys(space, batchId);
    await redis.setbit(keys.succeeded, 9, 1);
    let contextsAsked = 0;
    const batches: BatchContexts = {
      get: async () => {
        contextsAsked++;
        throw new Error('the row would have been run');
      },
      prime: () => undefined,
      whenBudgetSpent: () => undefined,
      stopCalls: () => undefined,
    };
    const process = createPromptProcessor({ redis, space, batches, logger: pino({ level: 'silent' }) });
    const job: PromptJob = { batchId, row: 9, id: 'r9', messages: [{ role: 'user', content: 'hi' }], metadata: {}, reopened: true };
    expect(await process(job, { jobId: 'j9', redelivered: false })).toEqual({ kind: 'done', batchId, row: 'already-succeeded', costNanos: 0 });
    expect(contextsAsked).toBe(0);
    // A new batch's job (not reopened, first delivery) skips that read: it cannot have succeeded before.
    await expect(process({ ...job, reopened: undefined }, { jobId: 'j9', redelivered: false })).rejects.toThrow('the row would have been run');
    expect(contextsAsked).toBe(1);
  });

  it('a resume queues a row edited since its job was queued under a new job id, and removes the old job', async () => {
    const batchId = 'edited-queued';
    const queue = new Queue(PROMPT_QUEUE, { connection: connections.connect(), prefix: space.prefix });
    const store = new BatchStore(redis, space);
    await store.save({ batch_id: batchId, status: 'enqueuing', input: 'in.csv', input_kind: 'rows', builtin_config: false, out_dir: tmpdir(), created_at: new Date().toISOString(), invalid_rows: 0, prompt_column: 'prompt', csv_delimiter: ',' }, builtInConfig('http://127.0.0.1:1/v1'));
    const row = (n: number, prompt: string): InputRow => ({ row: n, line: n + 1, id: `r${n}`, messages: [{ role: 'user', content: prompt }], metadata: {} });
    const enqueue = (rows: InputRow[], resume: boolean) =>
      enqueueBatch({ queue, store, batchId, items: (async function* (): AsyncGenerator<ReadItem> { for (const value of rows) yield { kind: 'row', value }; })(), errorsPath: join(tmpdir(), `${space.prefix}-errors.jsonl`), chunkSize: 100, resume, fingerprintIds: true, runStartedAt: Date.now() });
    const before = [row(1, 'one'), row(2, 'two'), row(3, 'three')];
    await enqueue(before, false); // no workers: the jobs stay queued, as after a killed run
    const after = [row(1, 'one'), row(2, 'TWO reworded'), row(3, 'three')];
    const counts = await enqueue(after, true);
    expect(counts).toMatchObject({ enqueued: 3, alreadySucceeded: 0, changedSinceSucceeded: 0 });
    const ids = (await queue.getJobs(['waiting', 'prioritized'])).map((job) => job.id).sort();
    expect(ids).toEqual([promptJobId(batchId, 1, rowFingerprint(after[0]!, true)), promptJobId(batchId, 2, rowFingerprint(after[1]!, true)), promptJobId(batchId, 3, rowFingerprint(after[2]!, true))].sort());
    expect((await queue.getJob(promptJobId(batchId, 2, rowFingerprint(after[1]!, true))))?.data).toMatchObject({ messages: [{ content: 'TWO reworded' }], fingerprint: rowFingerprint(after[1]!, true), reopened: true });
    await queue.close();
  });

  it("a stopped run takes its batch's queued rows off the queue, publishing a parked row's calls, and leaves another batch's", async () => {
    const queue = new Queue(PROMPT_QUEUE, { connection: connections.connect(), prefix: space.prefix });
    const job = (batchId: string, row: number, extra: Record<string, unknown> = {}) => ({ name: 'prompt', data: { batchId, row, ...extra }, opts: { jobId: promptJobId(batchId, row, 1000 + row) } });
    // Row 3 is parked for a retry's backoff after a failed call: that call was paid for.
    const call = { batch_id: 'stopped', row: 3, id: 'r3', model: 'm', attempt: 1, purpose: 'answer', status: 'failed', http_status: 500, input_tokens: 10, output_tokens: 0, cost_usd: 0.000002, latency_ms: 40, started_at: new Date().toISOString() };
    await queue.addBulk([job('stopped', 1), job('stopped', 2), job('stopped_2', 1), job('other', 1)]);
    await queue.add('prompt', { batchId: 'stopped', row: 3, progress: { calls: [call] } }, { jobId: promptJobId('stopped', 3, 1003), delay: 60_000 });
    await queue.add('prompt', { batchId: 'stopped', row: 4 }, { jobId: promptJobId('stopped', 4, 1004), delay: 60_000 });
    expect(await unqueueBatch(queue, new BatchStore(redis, space), 'stopped')).toEqual({ removed: 4, kept: 0, carried: 0, elsewhere: 0 });
    const left = (await queue.getRanges(['waiting', 'prioritized', 'delayed'], 0, -1)).filter((id) => !id.startsWith('edited-queued_')); // the test above's
    expect(left.sort()).toEqual([promptJobId('other', 1, 1001), promptJobId('stopped_2', 1, 1001)].sort());
    // The parked row's call is in the batch's stream, without a result, and in its running cost.
    const keys = batchKeys(space, 'stopped');
    const events = await readRowEvents(redis, keys, '0-0', 10, 0);
    expect(events.map((e) => [e.row, e.resultJson, JSON.parse(e.callsJsonl) as unknown])).toEqual([[3, '', call]]);
    expect(await redis.hget(keys.meta, 'cost_nanos')).toBe('2000');
    expect([batchOfJobId(promptJobId('stopped_2', 1, 7)), batchOfJobId(promptJobId('stopped', 12, 7)), batchOfJobId('other-id')]).toEqual(['stopped_2', 'stopped', null]);
    await queue.obliterate({ force: true });
    await queue.close();
  });

  it('a job back in the queue after its row was written (its worker lost its claim after publishing) comes off with nothing published or carried again', async () => {
    const queue = new Queue(PROMPT_QUEUE, { connection: connections.connect(), prefix: space.prefix });
    const store = new BatchStore(redis, space);
    const batchId = 'written-twice';
    const keys = batchKeys(space, batchId);
    await store.save({ batch_id: batchId, status: 'running', input: 'in.csv', input_kind: 'rows', builtin_config: false, out_dir: tmpdir(), created_at: new Date().toISOString(), invalid_rows: 0, prompt_column: 'prompt', csv_delimiter: ',' }, builtInConfig('http://127.0.0.1:1/v1'));
    const fingerprint = rowFingerprint({ row: 1, line: 2, id: 'r1', messages: [{ role: 'user', content: 'q1' }], metadata: {} }, true);
    const answerCall = { batch_id: batchId, row: 1, id: 'r1', model: 'flash', attempt: 1, purpose: 'answer', task_type: 'simple', chain_position: 0, status: 'succeeded', http_status: 200, input_tokens: 10, output_tokens: 5, cost_usd: 0.000003, latency_ms: 40, started_at: '2026-12-03T03:00:00.000Z' };
    // The row was answered, judged and written; its job, checkpointed before the judge's call, is back in the queue.
    const fingerprints = Buffer.alloc(8);
    fingerprints.writeUInt32BE(fingerprint, 4);
    await redis.setrange(keys.fingerprints, 0, fingerprints);
    await redis.setbit(keys.finished, 1, 1);
    await redis.setbit(keys.succeeded, 1, 1);
    const data = { batchId, row: 1, id: 'r1', messages: [{ role: 'user', content: 'q1' }], metadata: {}, fingerprint, progress: { calls: [answerCall], judging: { answer: answeredRow(1), progress: { calls: [] } } } };
    await queue.add('prompt', data, { jobId: promptJobId(batchId, 1, fingerprint) });
    expect(await unqueueBatch(queue, store, batchId)).toEqual({ removed: 1, kept: 0, carried: 0, elsewhere: 0 });
    expect(await readRowEvents(redis, keys, '0-0', 10, 0)).toEqual([]); // its answer's call is on record once, with the row
    expect(await redis.exists(keys.carried)).toBe(0); // nothing for a resume to score again
    await queue.obliterate({ force: true });
    await queue.close();
  });

  it('a stopped run keeps a parked judged row\'s answer for the resume, which queues it again with the row if unchanged and records no call twice', async () => {
    const queue = new Queue(PROMPT_QUEUE, { connection: connections.connect(), prefix: space.prefix });
    const store = new BatchStore(redis, space);
    const batchId = 'carried';
    const keys = batchKeys(space, batchId);
    await store.save({ batch_id: batchId, status: 'running', input: 'in.csv', input_kind: 'rows', builtin_config: false, out_dir: tmpdir(), created_at: new Date().toISOString(), invalid_rows: 0, prompt_column: 'prompt', csv_delimiter: ',' }, builtInConfig('http://127.0.0.1:1/v1'));
    const row = (n: number, prompt: string): InputRow => ({ row: n, line: n + 1, id: `r${n}`, messages: [{ role: 'user', content: prompt }], metadata: {} });
    const call = (n: number, purpose: 'answer' | 'judge') => ({ batch_id: batchId, row: n, id: `r${n}`, model: purpose === 'answer' ? 'flash' : 'judge', attempt: 1, purpose, task_type: 'simple', chain_position: 0, status: 'succeeded', http_status: 200, input_tokens: 10, output_tokens: 5, cost_usd: 0.000003, latency_ms: 40, started_at: '2026-12-03T03:00:00.000Z' });
    // Rows 1 and 2 were answered and wait for the judge, parked; row 2 is then edited in the file.
    const parked = (n: number) => ({ batchId, row: n, id: `r${n}`, messages: [{ role: 'user', content: `q${n}` }], metadata: {}, fingerprint: rowFingerprint(row(n, `q${n}`), true), progress: { calls: [call(n, 'answer')], judging: { answer: answeredRow(n), progress: { calls: [] } } } });
    for (const n of [1, 2]) await queue.add('prompt', parked(n), { jobId: promptJobId(batchId, n, rowFingerprint(row(n, `q${n}`), true)), delay: 60_000 });
    expect(await unqueueBatch(queue, store, batchId)).toEqual({ removed: 2, kept: 0, carried: 2, elsewhere: 0 });
    // Their answers' calls are recorded now, once, as the stop's outputs need them.
    expect((await readRowEvents(redis, keys, '0-0', 10, 0)).map((e) => [e.row, e.resultJson]).sort()).toEqual([[1, ''], [2, '']]);
    expect(await redis.hget(keys.meta, 'cost_nanos')).toBe('6000');
    expect(await redis.hlen(keys.carried)).toBe(2);

    const counts = await enqueueBatch({ queue, store, batchId, items: (async function* (): AsyncGenerator<ReadItem> { yield { kind: 'row', value: row(1, 'q1') }; yield { kind: 'row', value: row(2, 'q2 edited') }; })(), errorsPath: join(tmpdir(), `${space.prefix}-carried-errors.jsonl`), chunkSize: 100, resume: true, fingerprintIds: true, runStartedAt: Date.now() });
    expect(counts).toMatchObject({ enqueued: 2, carriedAnswers: 1 });
    const job = async (n: number, prompt: string) => (await queue.getJob(promptJobId(batchId, n, rowFingerprint(row(n, prompt), true))))?.data as PromptJob;
    const resumed = await job(1, 'q1');
    expect(resumed.progress?.judging?.answer.output).toBe('old answer');
    expect(resumed.progress?.calls).toEqual([{ ...call(1, 'answer'), recorded: true }]);
    expect((await job(2, 'q2 edited')).progress).toBeUndefined(); // another prompt now: its old answer is no use
    expect(await redis.exists(keys.carried)).toBe(0);

    // The row, once judged, publishes the judge's call alone; the answer's is on record already.
    const published = await publishRowEvent(redis, keys, { result: answeredRow(1), calls: [...resumed.progress!.calls, call(1, 'judge') as never] }, 6000, resumed.fingerprint);
    expect(published).toEqual({ published: true, costNanos: 3000 });
    const last = (await readRowEvents(redis, keys, '0-0', 10, 0)).at(-1)!;
    expect(last.callsJsonl.trim().split('\n').map((line) => (JSON.parse(line) as { purpose: string }).purpose)).toEqual(['judge']);
    expect(await redis.hget(keys.meta, 'cost_nanos')).toBe('9000');
    await queue.obliterate({ force: true });
    await queue.close();
  });
});
