import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { usdToNanos } from '../../src/models/pricing.ts';
import { lateEventCount } from '../../src/output/late-calls.ts';
import { BatchStore } from '../../src/queue/batch-state.ts';
import { batchKeys } from '../../src/queue/keys.ts';
import { readRowEvents } from '../../src/output/row-events.ts';
import type { CallRecord, RowResult } from '../../src/output/records.ts';
import type { Report } from '../../src/output/report-json.ts';
import { runCli, spawnCli, waitFor, waitForOutput } from '../helpers/cli.ts';
import { readJsonLines, tempDir, writePromptsCsv, writeSimConfig } from '../helpers/files.ts';
import { useSimulatorAndRedis } from '../helpers/harness.ts';

/**
 * A worker paused past its lock (SIGSTOP here; a laptop asleep, a long GC) while its ensemble rows
 * wait for a slow member: it had saved the fast member's answer in each row's job, another worker
 * takes the jobs over with those answers and finishes the rows, then the paused one wakes. Both
 * publish the fast member's call: costs.jsonl held it twice (bought once, billed in the report
 * twice), and the woken worker went on to buy a synthesis of each row. Also a worker woken with its
 * calls timed out (QA): it retried them, paying again for rows another worker had finished, and
 * the records of the calls it parked with were lost.
 */
describe('a worker paused past its lock while another finishes its rows', () => {
  const h = useSimulatorAndRedis('paused-worker', { latency_ms: 5, models: { slow: { latency_ms: 3000 } } });
  const requestsTo = (model: string) => h.sim.stats().models[model]?.requests ?? 0;

  it('records each call once: the saved member answer is not published again by the late worker', async () => {
    const dir = await tempDir('paused-worker');
    const price = { input_per_mtok: 1, output_per_mtok: 2 };
    const config = await writeSimConfig(dir, h.sim.url, {
      models: { fast: { provider: 'sim', price }, slow: { provider: 'sim', price, fallbacks: [] }, judge: { provider: 'sim', price } },
      ensembles: { council: { members: ['fast', 'slow'], synthesizer: 'judge' } },
      default_model: 'fast',
    });
    const rows = 3;
    const input = await writePromptsCsv(dir, rows);
    const out = join(dir, 'out');
    await withPausedWorker([], async (paused, startTaker) => {
      const queued = await runCli(['run', input, '--config', config, '--out', out, '--batch-id', 'paused', '--detach', '--model', 'council'], h.env());
      expect(queued.code, queued.stdout + queued.stderr).toBe(0);
      // Every row's fast member has answered (and been saved in the row's job); the slow one is on its way.
      await waitFor(async () => requestsTo('fast') >= rows && requestsTo('slow') >= rows, 20_000);
      await new Promise((resolve) => setTimeout(resolve, 300));
      paused.kill('SIGSTOP');
      startTaker();
      await waitFor(async () => requestsTo('judge') >= rows, 40_000);
      expect((await runCli(['collect', 'paused'], h.env())).code).toBe(0);
      paused.kill('SIGCONT');
      // The woken worker's slow calls (answered or timed out: paid either way) are late calls, which collect adds.
      await untilLate('paused', rows, paused);
      expect((await runCli(['collect', 'paused'], h.env())).code).toBe(0);
    });

    const results = await readJsonLines<RowResult>(join(out, 'results.jsonl'));
    expect(results.map((r) => [r.row, r.status])).toEqual(Array.from({ length: rows }, (_, i) => [i + 1, 'succeeded']));
    const calls = await readJsonLines<CallRecord>(join(out, 'costs.jsonl'));
    // One record per request the simulator answered: the fast member was asked once per row, and
    // the synthesis only by the worker that holds the row (the woken one finds its claim gone first).
    expect(requestsTo('fast')).toBe(rows);
    expect(requestsTo('judge')).toBe(rows);
    expect(calls.filter((call) => call.model === 'fast')).toHaveLength(rows);
    expect(calls.filter((call) => call.model === 'slow')).toHaveLength(requestsTo('slow'));
    expect(calls.filter((call) => call.model === 'judge')).toHaveLength(requestsTo('judge'));
    expect(calls.some((call) => 'saved_as' in call)).toBe(false);
    const report = JSON.parse(await readFile(join(out, 'report.json'), 'utf8')) as Report;
    const sum = calls.reduce((total, call) => total + usdToNanos(call.cost_usd ?? 0), 0);
    expect(usdToNanos(report.totals.cost_usd ?? 0)).toBe(sum);
    expect(Number(await h.redis.hget(`${h.prefix}:batch:{paused}`, 'cost_nanos'))).toBe(sum);
  });

  it('records the woken worker\'s calls and makes no new ones for rows it no longer holds', async () => {
    h.sim.reset();
    const dir = await tempDir('paused-retry');
    // The calls take 3 s; a worker stopped for longer finds them timed out when it wakes (its clock ran on) and would retry them.
    const config = await writeSimConfig(dir, h.sim.url, { providers: { sim: { base_url: h.sim.url, timeout_ms: 5000 } } });
    const rows = 4;
    const input = await writePromptsCsv(dir, rows);
    const out = join(dir, 'out');
    await withPausedWorker([], async (paused, startTaker) => {
      const queued = await runCli(['run', input, '--config', config, '--out', out, '--batch-id', 'paused-retry', '--detach', '--model', 'slow'], h.env());
      expect(queued.code, queued.stdout + queued.stderr).toBe(0);
      await waitFor(async () => requestsTo('slow') >= rows, 20_000);
      paused.kill('SIGSTOP');
      startTaker();
      await waitFor(async () => requestsTo('slow') >= 2 * rows, 40_000);
      expect((await runCli(['collect', 'paused-retry'], h.env())).code).toBe(0);
      paused.kill('SIGCONT');
      // The woken worker's calls (timed out, or answered: either way paid) reach the batch's records: collect adds them.
      await untilLate('paused-retry', rows, paused);
      expect((await runCli(['collect', 'paused-retry'], h.env())).code).toBe(0);
    });

    const results = await readJsonLines<RowResult>(join(out, 'results.jsonl'));
    expect(results.map((r) => [r.row, r.status])).toEqual(Array.from({ length: rows }, (_, i) => [i + 1, 'succeeded']));
    // Each row asked twice, once by each worker: the woken one did not try again rows the other had.
    expect(requestsTo('slow')).toBe(2 * rows);
    const calls = await readJsonLines<CallRecord>(join(out, 'costs.jsonl'));
    expect(calls.filter((call) => call.model === 'slow')).toHaveLength(2 * rows);
    const sum = calls.reduce((total, call) => total + usdToNanos(call.cost_usd ?? 0), 0);
    expect(Number(await h.redis.hget(`${h.prefix}:batch:{paused-retry}`, 'cost_nanos'))).toBe(sum);
  });
  /**
   * Waits until `rows` rows' events came after the batch's outputs were written (status' late_rows),
   * and a second more. Read in Redis as status reads it, not by a status command each turn (one CLI
   * start a poll made the wait seconds late); status says it once, within that second.
   */
  async function untilLate(batchId: string, rows: number, paused: ReturnType<typeof spawnCli>): Promise<void> {
    const store = new BatchStore(h.redis, { prefix: h.prefix });
    let late = 0;
    await waitFor(async () => (late = await lateEventCount(store, batchId)) >= rows, 45_000).catch(() => {
      throw new Error(`${late} late rows of ${rows}; the woken worker said:\n${paused.output().stdout}${paused.output().stderr}`);
    });
    const [status] = await Promise.all([runCli(['status', batchId, '--json'], h.env()), new Promise((resolve) => setTimeout(resolve, 1000))]);
    expect(JSON.parse(status.stdout).late_rows).toBeGreaterThanOrEqual(rows);
  }

  /**
   * Waits until every request the simulator answered has its call recorded, in the outputs collected
   * or in the batch's late events (the woken worker's), and a second more for any call after them.
   */
  async function untilRecorded(batchId: string, out: string, paused: ReturnType<typeof spawnCli>): Promise<void> {
    const keys = batchKeys({ prefix: h.prefix }, batchId);
    const requests = () => Object.values(h.sim.stats().models).reduce((sum, model) => sum + (model?.requests ?? 0), 0);
    let recorded = 0;
    await waitFor(async () => {
      const late = await readRowEvents(h.redis, keys, (await h.redis.hget(keys.checkpoint, 'last_id')) ?? '0-0', 1000, 0);
      recorded = (await readJsonLines<CallRecord>(join(out, 'costs.jsonl'))).length + late.reduce((sum, event) => sum + event.callsJsonl.split('\n').length - 1, 0);
      return recorded >= requests();
    }, 45_000).catch(() => {
      throw new Error(`${recorded} calls recorded of ${requests()} answered; the woken worker said:\n${paused.output().stdout}${paused.output().stderr}`);
    });
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }

  /** Runs `steps` with a worker that is paused (SIGSTOP) meanwhile, and a second worker started; both stopped at the end. */
  async function withPausedWorker(args: string[], steps: (paused: ReturnType<typeof spawnCli>, startTaker: () => void) => Promise<void>): Promise<void> {
    const env = h.env();
    const paused = spawnCli(['worker', '--lock-ms', '5000', ...args], env);
    let taking: ReturnType<typeof spawnCli> | null = null;
    try {
      await waitForOutput(() => paused.output().stdout + paused.output().stderr, 'Worker', 20_000);
      await steps(paused, () => (taking = spawnCli(['worker', '--lock-ms', '5000'], env)));
    } finally {
      paused.kill('SIGCONT');
      paused.kill('SIGTERM');
      const taker = taking as ReturnType<typeof spawnCli> | null;
      taker?.kill('SIGTERM');
      await Promise.all([paused.done, taker?.done]);
    }
  }

  it('makes no call, once woken, for rows that waited in it for a call slot while another worker did them (review)', async () => {
    h.sim.reset();
    const dir = await tempDir('paused-slot');
    const config = await writeSimConfig(dir, h.sim.url);
    const rows = 3;
    const input = await writePromptsCsv(dir, rows);
    const out = join(dir, 'out');
    let afterTakeover = 0;
    // One call slot: the worker holds the 3 rows, 1 calling and 2 waiting for the slot.
    await withPausedWorker(['--concurrency', '1'], async (paused, startTaker) => {
      const queued = await runCli(['run', input, '--config', config, '--out', out, '--batch-id', 'paused-slot', '--detach', '--model', 'slow'], h.env());
      expect(queued.code, queued.stdout + queued.stderr).toBe(0);
      await waitFor(async () => requestsTo('slow') >= 1, 20_000);
      paused.kill('SIGSTOP');
      const before = requestsTo('slow');
      startTaker();
      await waitFor(async () => requestsTo('slow') >= before + rows, 40_000);
      expect((await runCli(['collect', 'paused-slot'], h.env())).code).toBe(0);
      afterTakeover = requestsTo('slow');
      paused.kill('SIGCONT');
      // Its call in flight, answered while it slept, is a late call: once that is recorded, its slot
      // has been free for the rows that waited for it (a second more), had they still called.
      await untilLate('paused-slot', 1, paused);
      expect((await runCli(['collect', 'paused-slot'], h.env())).code).toBe(0);
    });
    // The woken worker may finish the call it had in flight; it starts none.
    expect(requestsTo('slow')).toBe(afterTakeover);
    expect(await readJsonLines<CallRecord>(join(out, 'costs.jsonl'))).toHaveLength(afterTakeover);
  });

  it("records once a member's answer that a parked row saved, when the worker that took it up pauses and another finishes it (review)", async () => {
    h.sim.reset();
    const dir = await tempDir('paused-park');
    const price = { input_per_mtok: 1, output_per_mtok: 2 };
    const config = await writeSimConfig(dir, h.sim.url, {
      // slow: one call per 2 s, so row 2's slow member parks the row while its fast member has answered.
      models: { fast: { provider: 'sim', price }, slow: { provider: 'sim', price, fallbacks: [], rpm: 30 }, judge: { provider: 'sim', price } },
      ensembles: { council: { members: ['fast', 'slow'], synthesizer: 'judge' } },
      default_model: 'fast',
    });
    const rows = 2;
    const input = await writePromptsCsv(dir, rows);
    const out = join(dir, 'out');
    await withPausedWorker([], async (paused, startTaker) => {
      const queued = await runCli(['run', input, '--config', config, '--out', out, '--batch-id', 'paused-park', '--detach', '--model', 'council'], h.env());
      expect(queued.code, queued.stdout + queued.stderr).toBe(0);
      await waitFor(async () => requestsTo('slow') >= rows, 20_000);
      await new Promise((resolve) => setTimeout(resolve, 300));
      paused.kill('SIGSTOP');
      startTaker();
      await waitFor(async () => requestsTo('judge') >= rows, 40_000);
      expect((await runCli(['collect', 'paused-park'], h.env())).code).toBe(0);
      paused.kill('SIGCONT');
      // Which rows it woke with calls in flight depends on when it was stopped: wait for every call the simulator answered.
      await untilRecorded('paused-park', out, paused);
      expect((await runCli(['collect', 'paused-park'], h.env())).code).toBe(0);
    });
    const calls = await readJsonLines<CallRecord>(join(out, 'costs.jsonl'));
    for (const model of ['fast', 'slow', 'judge']) expect(calls.filter((call) => call.model === model), model).toHaveLength(requestsTo(model));
    expect(Number(await h.redis.hget(`${h.prefix}:batch:{paused-park}`, 'cost_nanos'))).toBe(calls.reduce((total, call) => total + usdToNanos(call.cost_usd ?? 0), 0));
  });
});
