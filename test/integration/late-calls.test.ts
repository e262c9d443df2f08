import { appendFile, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { usdToNanos } from '../../src/models/pricing.ts';
import { publishCallsOnly } from '../../src/output/row-events.ts';
import type { CallRecord } from '../../src/output/records.ts';
import type { Report } from '../../src/output/report-json.ts';
import { batchKeys } from '../../src/queue/keys.ts';
import { runCli } from '../helpers/cli.ts';
import { readJsonLines, tempDir, writePromptsCsv, writeSimConfig } from '../helpers/files.ts';
import { useSimulatorAndRedis } from '../helpers/harness.ts';

/**
 * A worker paused past queue.lock_ms (SIGSTOP, a laptop asleep) while another did its rows, that
 * then finishes them after the batch's outputs were written: its calls were paid for and counted in
 * the batch's cost, but were never in costs.jsonl or the report (QA chaos run: $0.781 by status,
 * $0.6247 by the report).
 */
describe('calls of rows finished after the outputs were written', () => {
  const h = useSimulatorAndRedis('late-calls', { latency_ms: 1 });

  it('status says so, and collect adds them to costs.jsonl and the report', async () => {
    const dir = await tempDir('late-calls');
    const config = await writeSimConfig(dir, h.sim.url);
    const out = join(dir, 'out');
    const run = await runCli(['run', await writePromptsCsv(dir, 5), '--config', config, '--out', out, '--batch-id', 'late'], h.env());
    expect(run.code, run.stderr).toBe(0);
    const before = await readJsonLines<CallRecord>(join(out, 'costs.jsonl'));
    // The paused worker's publish of row 2, done again by it after the batch was written.
    const lateCall: CallRecord = { ...before.find((call) => call.row === 2)!, started_at: new Date().toISOString() };
    await publishCallsOnly(h.redis, batchKeys({ prefix: h.prefix }, 'late'), 2, [lateCall], usdToNanos(lateCall.cost_usd ?? 0));

    const status = await runCli(['status', 'late'], h.env());
    expect(status.stdout).toContain('late      1 row finished again after the outputs were written (a worker paused past queue.lock_ms while another did it): its calls are counted in the cost here but not yet in costs.jsonl and the report: `switchyard collect late` adds them');

    // A collect killed before, between its append and its checkpoint, left part of a record: cut off, as the collector does.
    await appendFile(join(out, 'costs.jsonl'), '{"batch_id":"late","row":2,');
    const collected = await runCli(['collect', 'late'], h.env());
    expect(collected.code, collected.stderr).toBe(0);
    expect(collected.stdout).toContain('Added to costs.jsonl: 1 call of rows finished again after the outputs were written');
    expect(collected.stdout).not.toContain('Written again, as they were missing');
    const calls = await readJsonLines<CallRecord>(join(out, 'costs.jsonl'));
    expect(calls).toEqual([...before, lateCall]);
    const report = JSON.parse(await readFile(join(out, 'report.json'), 'utf8')) as Report;
    expect(report.totals.calls).toBe(6);
    expect(usdToNanos(report.totals.cost_usd ?? 0)).toBe(calls.reduce((sum, call) => sum + usdToNanos(call.cost_usd ?? 0), 0));
    // The batch's cost in Redis, which counted the late call all along, agrees with the report now.
    expect(Number(await h.redis.hget(`${h.prefix}:batch:{late}`, 'cost_nanos'))).toBe(usdToNanos(report.totals.cost_usd ?? 0));
    expect((await runCli(['status', 'late'], h.env())).stdout).not.toContain('late      ');
    // Collected once: a second collect adds nothing.
    expect((await runCli(['collect', 'late'], h.env())).stdout).not.toContain('Added to costs.jsonl');
    expect(await readJsonLines<CallRecord>(join(out, 'costs.jsonl'))).toHaveLength(6);
  });
});
