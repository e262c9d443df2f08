import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { CallRecord, RowResult } from '../../src/output/records.ts';
import { runCli, spawnCli, waitFor } from '../helpers/cli.ts';
import { readJsonLines, tempDir, writePromptsCsv, writeSimConfig } from '../helpers/files.ts';
import { useSimulatorAndRedis } from '../helpers/harness.ts';

/**
 * A worker killed while its rows retry in the worker (a backoff shorter than inline_wait_ms) or while
 * an ensemble's other members still work: the calls those rows made before the kill are on record
 * after the resume, not only paid for (QA chaos run: timed-out calls, billed, and members' answers,
 * bought again, were missing from costs.jsonl).
 */
describe('kill -9 while rows are between calls', () => {
  const h = useSimulatorAndRedis('kill-mid-retry', { latency_ms: 5, models: { down: { fail_status: 503 }, slow: { latency_ms: 4000 } } });
  const requestsTo = (model: string) => h.sim.stats().models[model]?.requests ?? 0;
  // Rows sleep between their calls in the worker, where the kill finds them.
  const retryInWorker = { retry: { max_attempts: 3, base_delay_ms: 3000, max_delay_ms: 3000 }, limits: { inline_wait_ms: 10_000 } };

  it('keeps the failed calls of a row that retries: each is in costs.jsonl once', async () => {
    h.sim.reset();
    const dir = await tempDir('kill-mid-retry');
    const config = await writeSimConfig(dir, h.sim.url, {
      models: { down: { provider: 'sim', fallbacks: ['fast'], price: { input_per_mtok: 1, output_per_mtok: 2 } }, fast: { provider: 'sim', price: { input_per_mtok: 1, output_per_mtok: 2 } } },
      default_model: 'down',
      ...retryInWorker,
    });
    const input = await writePromptsCsv(dir, 8);
    const out = join(dir, 'out');
    const first = spawnCli(['run', input, '--config', config, '--out', out, '--batch-id', 'mid-retry', '--concurrency', '8'], h.env());
    await waitFor(async () => requestsTo('down') >= 8, 20_000);
    await new Promise((resolve) => setTimeout(resolve, 300));
    first.kill('SIGKILL');
    await first.done;
    const beforeKill = requestsTo('down');

    const resumed = await runCli(['run', '--resume', 'mid-retry', '--config', config], h.env());
    expect(resumed.code, resumed.stdout + resumed.stderr).toBe(0);
    const results = await readJsonLines<RowResult>(join(out, 'results.jsonl'));
    expect(results.map((r) => [r.row, r.status, r.final_model])).toEqual(Array.from({ length: 8 }, (_, i) => [i + 1, 'succeeded', 'fast']));
    const calls = await readJsonLines<CallRecord>(join(out, 'costs.jsonl'));
    // Every call the simulator answered has its record; a call cut off by the kill may not (rows sleep 0-3 s between calls: rarely one).
    expect(beforeKill).toBeGreaterThanOrEqual(8);
    expect(requestsTo('down') - calls.filter((call) => call.model === 'down').length).toBeLessThanOrEqual(1);
    // Rows whose 503 came once down's circuit had opened (5 failures) go on to fast before the kill: on a
    // loaded machine one such call can be the one the kill cuts off (CI: 9 requests, 8 records). None twice.
    const fastCalls = calls.filter((call) => call.model === 'fast').length;
    expect(fastCalls).toBeLessThanOrEqual(requestsTo('fast'));
    expect(requestsTo('fast') - fastCalls).toBeLessThanOrEqual(1);
    expect(new Set(calls.filter((call) => call.model === 'fast' && call.status === 'succeeded').map((call) => call.row)).size).toBe(8);
  });

  it("keeps an ensemble member's answer while another member still works: it is not bought again", async () => {
    h.sim.reset();
    const dir = await tempDir('kill-mid-ensemble');
    const price = { input_per_mtok: 1, output_per_mtok: 2 };
    const config = await writeSimConfig(dir, h.sim.url, {
      models: { fast: { provider: 'sim', price }, slow: { provider: 'sim', price, fallbacks: [] }, judge: { provider: 'sim', price } },
      ensembles: { council: { members: ['fast', 'slow'], synthesizer: 'judge' } },
      default_model: 'fast',
    });
    const input = await writePromptsCsv(dir, 6);
    const out = join(dir, 'out');
    const first = spawnCli(['run', input, '--config', config, '--out', out, '--batch-id', 'mid-ensemble', '--concurrency', '12', '--model', 'council'], h.env());
    // The fast member has answered every row; the slow one takes 4 s.
    await waitFor(async () => requestsTo('fast') >= 6, 20_000);
    await new Promise((resolve) => setTimeout(resolve, 500));
    first.kill('SIGKILL');
    await first.done;
    expect(requestsTo('judge')).toBe(0);

    const resumed = await runCli(['run', '--resume', 'mid-ensemble', '--config', config], h.env());
    expect(resumed.code, resumed.stdout + resumed.stderr).toBe(0);
    const results = await readJsonLines<RowResult>(join(out, 'results.jsonl'));
    expect(results.map((r) => [r.row, r.status])).toEqual(Array.from({ length: 6 }, (_, i) => [i + 1, 'succeeded']));
    // The fast member was asked once per row, before the kill, and each answer is on record.
    expect(requestsTo('fast')).toBe(6);
    const calls = await readJsonLines<CallRecord>(join(out, 'costs.jsonl'));
    expect(calls.filter((call) => call.model === 'fast')).toHaveLength(6);
    expect(calls.filter((call) => call.model === 'judge')).toHaveLength(6);
  });
});
