import { describe, expect, it } from 'vitest';
import { batchTable, describeBatch, statusJson } from '../../src/commands/status.ts';
import type { BatchMeta, BatchProgress } from '../../src/queue/batch-state.ts';

const meta: BatchMeta = {
  batch_id: 'b1',
  status: 'running',
  input: '/data/in.csv',
  input_kind: 'rows',
  builtin_config: false,
  out_dir: '/data/out',
  created_at: '2026-12-02T08:00:00.000Z',
  invalid_rows: 0,
  prompt_column: 'prompt',
  csv_delimiter: ',',
  cost_nanos: 0,
};
const progress: BatchProgress = { total: 10, estimatedTotal: null, finished: 4, succeeded: 4, failed: 0, costUsd: 0.001, status: 'running' };
const workersLine = (lines: string[]) => lines.find((line) => line.startsWith('  workers'));

describe('status <batch id>: the workers line', () => {
  it("names the worker processes on record beside Redis' count of connections", () => {
    expect(workersLine(describeBatch({ meta, progress, runBy: null, workers: 2, workerNames: ['a pid 1', 'b pid 2'] }))).toBe('  workers   2 workers are connected to this Redis (a pid 1, b pid 2)');
    expect(workersLine(describeBatch({ meta, progress, runBy: null, workers: 0, workerNames: [] }))).toBe('  workers   no worker is connected to this Redis (rows finish only while one runs)');
  });

  it('falls back to the processes on record when Redis will not list its clients, and says nothing when neither knows', () => {
    expect(workersLine(describeBatch({ meta, progress, runBy: null, workers: null, workerNames: ['a pid 1'] }))).toBe('  workers   1 worker process on record: a pid 1');
    expect(workersLine(describeBatch({ meta, progress, runBy: null, workers: null, workerNames: [] }))).toBeUndefined();
  });
});

describe('status: the cost of a batch whose models have no price', () => {
  it('is unknown, not $0', () => {
    const costLine = (lines: string[]) => lines.find((line) => line.startsWith('  cost'));
    expect(costLine(describeBatch({ meta, progress, unpriced: true }))).toBe('  cost      n/a (no price configured)');
    expect(costLine(describeBatch({ meta, progress }))).toBe('  cost      $0.00100');
    expect(batchTable([{ meta, progress, unpriced: true }], 1).find((line) => line.includes('b1'))).toMatch(/ n\/a +2026-12-02/);
  });
});

describe('status <batch id>: the models a run chose', () => {
  const modelsLine = (lines: string[]) => lines.find((line) => line.startsWith('  models'));
  it('names the --model, --ab split and --judge the resume keeps, and says nothing without them', () => {
    expect(modelsLine(describeBatch({ meta, progress, runBy: null, workers: 1 }))).toBeUndefined();
    const chosen = { ...meta, ab_split: [{ model: 'flash', weight: 0.8 }, { model: 'pro', weight: 0.2 }], judge_model: 'judge' };
    expect(modelsLine(describeBatch({ meta: chosen, progress, runBy: null, workers: 1 }))).toBe('  models    A/B split flash 80%, pro 20% (--ab); answers scored by judge (--judge)');
    expect(modelsLine(describeBatch({ meta: { ...meta, model_override: 'pro' }, progress, runBy: null, workers: 1 }))).toBe('  models    rows that name no model go to pro (--model)');
  });
});

describe('status <batch id>: what to do next about an unfinished batch nothing runs', () => {
  const nextLine = (lines: string[]) => lines.find((line) => line.startsWith('  next'));
  it('sends a batch whose run stopped to its resume, even with workers connected (its rows left the queue with its run)', () => {
    const stopped = describeBatch({ meta: { ...meta, detached: false }, progress, runBy: null, workers: 2 });
    // Not "running, stopped", which read as both at once (QA).
    expect(stopped[0]).toBe('b1  stopped while running');
    expect(nextLine(stopped)).toBe(
      '  next      its run stopped before the end: `switchyard run --resume b1` finishes it (if it was killed outright rather than stopped, the workers connected may still finish some rows it left queued; their answers are kept, not paid for again)',
    );
    const detached = describeBatch({ meta: { ...meta, detached: true }, progress, runBy: null, workers: 2 });
    expect(detached[0]).toBe('b1  running, not collected');
    expect(nextLine(detached)).toMatch(/^ {2}next {6}workers are taking its rows, but no process collects it: `switchyard collect b1`/);
    // A --detach batch with no worker connected waits for one: start one and collect, rather than a resume first.
    const waiting = describeBatch({ meta: { ...meta, detached: true }, progress, runBy: null, workers: 0 });
    expect(waiting[0]).toBe('b1  running, no worker');
    expect(nextLine(waiting)).toBe(
      '  next      its rows wait for a worker, and none is connected: start `switchyard worker` (same REDIS_URL and SWITCHYARD_PREFIX) and `switchyard collect b1` to write its outputs, or `switchyard run --resume b1` to finish it in one process',
    );
  });
});

describe('status <batch id>: a batch whose file could not be read to its end', () => {
  it('says what is wrong with the file and how to finish, instead of sending it to collect', () => {
    const inputError = 'the uploaded file: the quoted field at line 51 is never closed (close it; …). Rows before it that were queued run on; post the fixed file with batch_id=b1 to finish the batch without repeating them.';
    const lines = describeBatch({ meta: { ...meta, status: 'enqueuing', detached: true, input_error: inputError }, progress, runBy: null, workers: 2 });
    expect(lines.find((line) => line.startsWith('  next'))).toBe(`  next      its file could not be read to its end: ${inputError}`);
  });
});

describe('status <batch id>: when it started', () => {
  it('gives the batch\'s start, and a resume\'s beside it', () => {
    const started = (m: typeof meta) => describeBatch({ meta: m, progress, runBy: null, workers: 1 }).find((line) => line.startsWith('  started'));
    expect(started({ ...meta, started_at: meta.created_at })).toBe('  started   2026-12-02 08:00:00');
    expect(started({ ...meta, started_at: '2026-12-02T09:30:00.000Z' })).toBe('  started   2026-12-02 08:00:00, last run started 2026-12-02 09:30:00');
  });
});

describe('status <batch id>: a batch submitted over the HTTP API whose server stopped', () => {
  it('sends it back to the server, which goes on with it when started again', () => {
    const lines = describeBatch({ meta: { ...meta, detached: true }, progress, runBy: null, workers: 0, overApi: true });
    expect(lines.find((line) => line.startsWith('  next'))).toBe('  next      no server is running it: start `switchyard serve` again (same Redis and SWITCHYARD_PREFIX), and it goes on with it');
  });

  it('names the config it was posted with, the only one a server goes on with it under', () => {
    const posted = { ...meta, detached: true, server_config: '3f2a9c1b20aa', server_config_from: '--config /srv/team-a.yaml on host a1' };
    const lines = describeBatch({ meta: posted, progress, runBy: null, workers: 0, overApi: true });
    expect(lines.find((line) => line.startsWith('  next'))).toBe('  next      no server is running it: start `switchyard serve` with the config it was posted with (--config /srv/team-a.yaml on host a1), on the same Redis and SWITCHYARD_PREFIX, and it goes on with it');
  });
});

describe('status <batch id>: a finished batch submitted over the HTTP API', () => {
  it('says to post its file again, not to run `switchyard run --resume` (QA: its client may have no shell on the server)', () => {
    const next = (status: BatchMeta['status'], invalid = 0) => describeBatch({ meta: { ...meta, status, invalid_rows: invalid, detached: true }, progress: { ...progress, status }, runBy: null, overApi: true }).find((line) => line.startsWith('  next'));
    expect(next('completed_with_failures')).toBe('  next      posting its file again with batch_id=b1 runs the failed rows again (the succeeded ones are kept)');
    expect(next('budget_exceeded')).toBe("  next      post the file again with batch_id=b1 and a higher budget (its query parameter, in USD) to finish it (if the month's cap stopped it: the server needs a config with a higher budget.monthly_usd, or the next month)");
    expect(next('completed', 2)).toBe('  next      fix the invalid rows in its file, then post it again with batch_id=b1: only they run');
    expect(next('completed')).toBeUndefined();
  });

  it('says what a CLI resume does once `switchyard run --resume` ran it last (served false), as its rows do (review: they were told to post it again)', () => {
    const lines = describeBatch({ meta: { ...meta, status: 'budget_exceeded', served: false }, progress: { ...progress, status: 'budget_exceeded' }, runBy: null, overApi: true });
    const next = lines.find((line) => line.startsWith('  next'));
    expect(next).toContain('switchyard run --resume b1');
    expect(next).not.toContain('post');
  });
});

describe('status <batch id>: a cancel over the HTTP API under way', () => {
  it('says cancelling, as the API does, until the batch is cancelled', () => {
    const lines = describeBatch({ meta, progress, runBy: 'host pid 7', workers: 1, overApi: true, cancelling: true });
    expect(lines[0]).toBe('b1  running, cancelling');
    expect(lines.find((line) => line.startsWith('  next'))).toBe(
      '  next      being cancelled over the HTTP API: its queued rows come off the queue, the rows in hand finish, then its outputs are written (by host pid 7)',
    );
    const done = describeBatch({ meta: { ...meta, status: 'cancelled' }, progress, runBy: null, overApi: true, cancelling: true });
    expect(done[0]).toBe('b1  cancelled');
  });
});

describe('status <batch id>: a --detach batch being collected', () => {
  it('names its process as the collector, the workers doing the calls (QA: "run by" read as the process doing the work)', () => {
    const lines = describeBatch({ meta: { ...meta, detached: true }, progress, runBy: 'vm pid 9', workers: 2, workerNames: [] });
    expect(lines.find((line) => line.startsWith('  next'))).toBe('  next      in progress: workers take its rows, and vm pid 9 collects its outputs');
  });
});

describe('status --json', () => {
  it("gives a script the API's view of the batch with status's own state and next step (QA: no machine-readable form)", () => {
    const json = statusJson({ meta: { ...meta, detached: false }, progress, runBy: null, workers: 0, workerNames: [] });
    expect(json).toMatchObject({
      batch_id: 'b1',
      status: 'running',
      state: 'stopped while running',
      finished: false,
      rows: { total: 10, finished: 4, succeeded: 4, failed: 0, invalid: 0 },
      cost_usd: 0.001,
      run_by: null,
      workers: 0,
      budget_stop: null,
      next: 'its run stopped before the end: `switchyard run --resume b1` finishes it',
    });
    expect(json).not.toHaveProperty('links');
    expect(JSON.parse(JSON.stringify(json))).toEqual(json);
  });

  it("names the cap a budget stop met only while the batch stands stopped by it, not once a resume finished it (QA: a completed batch said budget_stop \"batch\")", () => {
    const finished = { ...progress, status: 'completed' as const };
    expect(statusJson({ meta: { ...meta, status: 'budget_exceeded', budget_stop: 'batch' }, progress: { ...progress, status: 'budget_exceeded' }, runBy: null })).toMatchObject({ budget_stop: 'batch' });
    expect(statusJson({ meta: { ...meta, status: 'completed', budget_stop: 'batch' }, progress: finished, runBy: null })).toMatchObject({ status: 'completed', budget_stop: null });
  });

  it('says a batch posted to the API was not started with --detach, though its server queues it that way (QA: a script ran collect on it)', () => {
    const json = statusJson({ meta: { ...meta, detached: true }, progress, runBy: 'vm pid 9', workers: 1, workerNames: [], overApi: true });
    expect(json).toMatchObject({ detached: false, over_api: true });
  });
});

describe('status: a finished batch whose file had invalid rows', () => {
  const done = { ...meta, status: 'completed' as const, invalid_rows: 2, finished_at: '2026-12-02T08:01:00.000Z' };
  const all = { ...progress, finished: 10, succeeded: 10, status: 'completed' as const };

  it('says so beside "completed", in the table and in detail (QA: "completed" beside a FAILED count of rows that never ran)', () => {
    const table = batchTable([{ meta: done, progress: all }], 1);
    expect(table.find((line) => line.includes('b1'))).toMatch(/^ {2}b1 +completed, 2 invalid rows {2}10\/10 {2}2 /);
    expect(describeBatch({ meta: done, progress: all })[0]).toBe('b1  completed, 2 invalid rows');
    expect(describeBatch({ meta: { ...done, invalid_rows: 1, status: 'completed_with_failures' }, progress: { ...all, succeeded: 9, failed: 1 } })[0]).toBe('b1  completed_with_failures, 1 invalid row');
    // Nothing to add to a batch without them, nor to one still running (its file may be read on).
    expect(describeBatch({ meta: { ...done, invalid_rows: 0 }, progress: all })[0]).toBe('b1  completed');
    expect(describeBatch({ meta: { ...meta, invalid_rows: 2 }, progress })[0]).toBe('b1  running');
  });

  it("leaves status --json's state as it was, for scripts that compare it: rows.invalid counts them", () => {
    const json = statusJson({ meta: done, progress: all });
    expect(json.state).toBe('completed');
    expect(json.rows).toMatchObject({ invalid: 2 });
  });
});

describe('status <batch id>: why its rows wait', () => {
  const waiting = { reason: "rows wait for fast's rate limit: the next free slot is 55 s away", since: '2026-12-02T08:00:05.000Z', said_at: '2026-12-02T08:00:35.000Z' };
  it('says what the workers keep on the batch, and when they said it (QA: only in the workers\' logs)', () => {
    const lines = describeBatch({ meta, progress, runBy: 'vm pid 9', workers: 1, waiting });
    expect(lines.find((line) => line.startsWith('  waiting'))).toBe("  waiting   rows wait for fast's rate limit: the next free slot is 55 s away (a worker said so at 08:00:35 UTC; so since 08:00:05 UTC)");
    expect(describeBatch({ meta, progress, runBy: 'vm pid 9', workers: 1 }).some((line) => line.startsWith('  waiting'))).toBe(false);
    expect(statusJson({ meta, progress, runBy: 'vm pid 9', workers: 1, waiting }).waiting).toEqual(waiting);
    expect(statusJson({ meta, progress, runBy: 'vm pid 9', workers: 1 }).waiting).toBeNull();
  });
});

describe('status: a batch whose run stopped part-way (QA: "running, stopped" read as both at once)', () => {
  it('says it stopped, and in which stage, in the list, the detail and --json alike', () => {
    const killed = { meta: { ...meta, detached: false }, progress, runBy: null, workers: 0 };
    expect(batchTable([killed], 1).find((line) => line.includes('b1'))).toMatch(/^ {2}b1 +stopped while running +4\/10 /);
    expect(describeBatch({ ...killed, meta: { ...killed.meta, status: 'enqueuing' } })[0]).toBe('b1  stopped while enqueuing');
    // A batch from before runs recorded --detach, nothing connected: stopped as well.
    expect(statusJson({ meta, progress, runBy: null, workers: 0 }).state).toBe('stopped while running');
  });
});
