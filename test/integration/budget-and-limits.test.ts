import { readFile, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.ts';
import { createRedisRowGate } from '../../src/execution/redis-row-gate.ts';
import { usdToNanos } from '../../src/models/pricing.ts';
import { BatchStore } from '../../src/queue/batch-state.ts';
import type { CallRecord, RowResult } from '../../src/output/records.ts';
import type { Report } from '../../src/output/report-json.ts';
import { runCli, spawnCli } from '../helpers/cli.ts';
import { readJsonLines, tempDir, writePromptsCsv } from '../helpers/files.ts';
import { useSimulatorAndRedis } from '../helpers/harness.ts';

describe('budgets and rate limits shared through Redis', () => {
  const h = useSimulatorAndRedis('budget-limits', { latency_ms: 2 });

  it('a row the budget has no room for on its model goes on to a cheaper model of its chain, and ends budget_exceeded only when none fits (QA)', async () => {
    const dir = await tempDir('budget-cheaper');
    const cfg = join(dir, 'switchyard.yaml');
    // pricey's call could cost about $0.1 at most, cheap's a thousandth of that.
    const models = { pricey: { provider: 'sim', price: { input_per_mtok: 1000, output_per_mtok: 1000 }, fallbacks: ['cheap'] }, cheap: { provider: 'sim', price: { input_per_mtok: 1, output_per_mtok: 1 } } };
    await writeFile(cfg, stringify({ providers: { sim: { base_url: h.sim.url } }, models, default_model: 'pricey', max_tokens: 100 }));
    const out = join(dir, 'out');
    const run = await runCli(['run', await writePromptsCsv(dir, 40), '--config', cfg, '--out', out, '--batch-id', 'budget-cheaper', '--budget', '1', '--concurrency', '4'], h.env());
    expect(run.code, run.stderr).toBe(0);
    const results = await readJsonLines<RowResult>(join(out, 'results.jsonl'));
    expect(results.every((r) => r.status === 'succeeded')).toBe(true);
    const onCheap = results.filter((r) => r.final_model === 'cheap');
    expect(onCheap.length).toBeGreaterThan(20); // pricey answered the rows until its calls no longer fit
    expect(onCheap[0]!.fallback_reason).toMatch(/^pricey: the budget has no room for its call \(.*\), so a cheaper fallback is tried/);
    const spent = (await readJsonLines<CallRecord>(join(out, 'costs.jsonl'))).reduce((sum, c) => sum + usdToNanos(c.cost_usd ?? 0), 0);
    expect(spent).toBeLessThanOrEqual(usdToNanos(1));
  });

  it('--budget stops spending, marks the rest budget_exceeded, and --resume with a higher budget finishes them', async () => {
    const dir = await tempDir('budget');
    const cfg = join(dir, 'switchyard.yaml');
    // An absurd price makes each call cost about $0.1, so a $1 budget runs out after a handful of rows.
    await writeFile(cfg, stringify({ providers: { sim: { base_url: h.sim.url } }, models: { pricey: { provider: 'sim', price: { input_per_mtok: 1000, output_per_mtok: 1000 } } }, default_model: 'pricey', max_tokens: 100 }));
    const input = await writePromptsCsv(dir, 40);
    const out = join(dir, 'out');
    const first = await runCli(['run', input, '--config', cfg, '--out', out, '--batch-id', 'budget', '--budget', '1', '--concurrency', '4'], h.env());
    expect(first.code).toBe(1);
    const results = await readJsonLines<RowResult>(join(out, 'results.jsonl'));
    expect(results).toHaveLength(40);
    const stopped = results.filter((r) => r.error?.code === 'budget_exceeded');
    expect(first.stdout).toContain(`Budget reached: ${stopped.length} rows not finished (calls already made for them are kept, not paid for again). Finish them with: switchyard run --resume budget --budget <higher USD>`);
    const done = results.filter((r) => r.status === 'succeeded');
    expect(done.length).toBeGreaterThan(3);
    expect(stopped.length).toBe(40 - done.length);
    expect(stopped[0]!.error!.message).toMatch(/--budget/);
    const spent = (await readJsonLines<CallRecord>(join(out, 'costs.jsonl'))).reduce((sum, c) => sum + usdToNanos(c.cost_usd ?? 0), 0);
    expect(spent).toBeLessThanOrEqual(usdToNanos(1));
    expect(await h.redis.hget(`${h.prefix}:batch:{budget}`, 'status')).toBe('budget_exceeded');
    // The batch's own cap stopped it: status says to raise --budget.
    expect(await h.redis.hget(`${h.prefix}:batch:{budget}`, 'budget_stop')).toBe('batch');
    expect((await runCli(['status', 'budget'], h.env())).stdout).toContain('next      `switchyard run --resume budget --budget <more USD>` finishes it');

    // Resumed without more budget, it is told why its rows will stop again, before any is queued.
    const again = await runCli(['run', '--resume', 'budget'], h.env());
    expect(again.code).toBe(1);
    expect(again.stdout).toMatch(/Warning: batch budget stopped at a budget \(its own is \$1(\.00)?, \$[\d.]+ spent\) and this run raises none: its rows that still need a call may end budget_exceeded again\. Give a higher --budget/);
    const resumed = await runCli(['run', '--resume', 'budget', '--budget', '100'], h.env());
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(resumed.stdout).not.toContain('stopped at a budget');
    const final = await readJsonLines<RowResult>(join(out, 'results.jsonl'));
    expect(final.map((r) => r.row)).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));
    expect(final.every((r) => r.status === 'succeeded')).toBe(true);
    // Rows that succeeded before were kept, not paid for again.
    const calls = await readJsonLines<CallRecord>(join(out, 'costs.jsonl'));
    expect(calls.filter((c) => c.status === 'succeeded')).toHaveLength(40);
  });

  it("a resume follows its config's budget.batch_usd, raised (QA: the first run's was kept, the new one ignored without a word)", async () => {
    const dir = await tempDir('budget-config');
    const configWith = async (name: string, budget: Record<string, number>) => {
      const path = join(dir, name);
      await writeFile(path, stringify({ providers: { sim: { base_url: h.sim.url } }, models: { pricey: { provider: 'sim', price: { input_per_mtok: 1000, output_per_mtok: 1000 } } }, default_model: 'pricey', max_tokens: 100, budget }));
      return path;
    };
    const input = await writePromptsCsv(dir, 30);
    const out = join(dir, 'out');
    const first = await runCli(['run', input, '--config', await configWith('one.yaml', { batch_usd: 1 }), '--out', out, '--batch-id', 'budgetcfg', '--concurrency', '4'], h.env());
    expect(first.code, first.stderr).toBe(1);
    expect(first.stdout).toContain('Budget reached');

    const same = await runCli(['run', '--resume', 'budgetcfg', '--config', await configWith('same.yaml', { batch_usd: 1 })], h.env());
    expect(same.stdout).toMatch(/Warning: batch budgetcfg stopped at a budget \(its own is \$1(\.00)?, \$[\d.]+ spent\) and this run raises none/);
    const raised = await runCli(['run', '--resume', 'budgetcfg', '--config', await configWith('more.yaml', { batch_usd: 100 })], h.env());
    expect(raised.code, raised.stdout + raised.stderr).toBe(0);
    expect(raised.stdout).not.toContain('stopped at a budget');
    expect(raised.stdout).toContain('Rows     30 of 30 succeeded');
    const status = await runCli(['status', 'budgetcfg'], h.env());
    expect(status.stdout).toMatch(/of a \$100(\.00)? budget/);
  });

  it('refuses to start when the month\'s cap is spent already, before anything is queued, exit 2', async () => {
    const dir = await tempDir('budget-month-spent');
    const cfg = join(dir, 'switchyard.yaml');
    await writeFile(cfg, stringify({ providers: { sim: { base_url: h.sim.url } }, models: { pricey: { provider: 'sim', price: { input_per_mtok: 1, output_per_mtok: 1 } } }, default_model: 'pricey', budget: { monthly_usd: 3.5 } }));
    const input = await writePromptsCsv(dir, 5);
    const month = new Date().toISOString().slice(0, 7);
    await h.redis.hset(`${h.prefix}:budget:month:${month}`, 'spent', usdToNanos(11.69));
    try {
      const run = await runCli(['run', input, '--config', cfg, '--out', join(dir, 'out'), '--batch-id', 'monthspent'], h.env());
      expect(run.code).toBe(2);
      expect(run.stderr).toContain(`the month's budget is spent: calls on this Redis cost $11.69 in ${month} (UTC), and budget.monthly_usd is $3.50, so every row that needs a call would end budget_exceeded. Raise budget.monthly_usd in the config and run again, or run it next month.`);
      expect(await h.redis.exists(`${h.prefix}:batch:{monthspent}`)).toBe(0);
    } finally {
      await h.redis.del(`${h.prefix}:budget:month:${month}`);
    }
  });

  it("counts a month as spent when what is left cannot hold a call (a batch stopped by the cap ends just short of it), whatever unpriced model the pinned rows never reach", async () => {
    const dir = await tempDir('budget-month-short');
    const cfg = join(dir, 'switchyard.yaml');
    const models = { pricey: { provider: 'sim', price: { input_per_mtok: 1, output_per_mtok: 1 } }, free: { provider: 'sim' } };
    await writeFile(cfg, stringify({ providers: { sim: { base_url: h.sim.url } }, models, default_model: 'pricey', max_tokens: 1000, budget: { monthly_usd: 3.5 } }));
    const input = await writePromptsCsv(dir, 5);
    const month = new Date().toISOString().slice(0, 7);
    // $0.0005 left; a call reserves at least 1,000 output tokens at $1/M: $0.001.
    await h.redis.hset(`${h.prefix}:budget:month:${month}`, 'spent', usdToNanos(3.4995));
    try {
      const run = await runCli(['run', input, '--config', cfg, '--out', join(dir, 'out'), '--batch-id', 'monthshort', '--model', 'pricey'], h.env());
      expect(run.code, run.stdout).toBe(2);
      expect(run.stderr).toContain("the month's budget is spent: calls on this Redis cost $3.50 in");
      expect(run.stderr).toContain('(the $0.000500 left is less than the least a call reserves: $0.00100 on pricey, max_tokens 1000 at its output price)');
      expect(run.stdout).not.toContain('no price for free');
      // Unpinned, a row may reach the unpriced model: a warning, and the batch runs.
      const open = await runCli(['run', input, '--config', cfg, '--out', join(dir, 'out-open'), '--batch-id', 'monthshort-open'], h.env());
      expect(open.code, open.stderr).toBe(1);
      expect(open.stdout + open.stderr).toContain('only rows answered by a model with no price can run, the others end budget_exceeded');
    } finally {
      await h.redis.del(`${h.prefix}:budget:month:${month}`);
    }
  });

  it('once the budget is spent, rows parked for a rate-limited model\'s slots end at once instead of each waiting out its slot', async () => {
    const dir = await tempDir('budget-rpm');
    const cfg = join(dir, 'switchyard.yaml');
    // One call a second, about $0.1 each: a $0.5 budget holds a few; the other rows' slots reach 20 s ahead.
    await writeFile(cfg, stringify({ providers: { sim: { base_url: h.sim.url } }, models: { pricey: { provider: 'sim', rpm: 60, price: { input_per_mtok: 1000, output_per_mtok: 2000 } } }, default_model: 'pricey', max_tokens: 100 }));
    const input = await writePromptsCsv(dir, 20);
    const out = join(dir, 'out');
    const started = Date.now();
    const run = await runCli(['run', input, '--config', cfg, '--out', out, '--batch-id', 'budget-rpm', '--budget', '0.5', '--concurrency', '4'], h.env());
    const tookMs = Date.now() - started;
    expect(run.code, run.stderr).toBe(1);
    const results = await readJsonLines<RowResult>(join(out, 'results.jsonl'));
    const refused = results.filter((r) => r.error?.code === 'budget_exceeded');
    expect(refused.length).toBeGreaterThan(10);
    expect(refused.length + results.filter((r) => r.status === 'succeeded').length).toBe(20);
    // Waiting out every booked slot took about 20 s (19.7 s measured before the rows were woken).
    expect(tookMs).toBeLessThan(12_000);
    const spent = (await readJsonLines<CallRecord>(join(out, 'costs.jsonl'))).reduce((sum, c) => sum + usdToNanos(c.cost_usd ?? 0), 0);
    expect(spent).toBeLessThanOrEqual(usdToNanos(0.5));
  });

  it('rows the monthly cap refused are finished by a resume with a config that raises it, as the summary says', async () => {
    const dir = await tempDir('budget-month');
    const config = (monthlyUsd: number) => stringify({ providers: { sim: { base_url: h.sim.url } }, models: { pricey: { provider: 'sim', price: { input_per_mtok: 1000, output_per_mtok: 1000 } } }, default_model: 'pricey', max_tokens: 100, budget: { monthly_usd: monthlyUsd } });
    const tight = join(dir, 'tight.yaml');
    const roomy = join(dir, 'roomy.yaml');
    await writeFile(tight, config(1));
    await writeFile(roomy, config(100));
    const input = await writePromptsCsv(dir, 30);
    const out = join(dir, 'out');
    const first = await runCli(['run', input, '--config', tight, '--out', out, '--batch-id', 'month', '--concurrency', '4'], h.env());
    expect(first.code).toBe(1);
    const stopped = (await readJsonLines<RowResult>(join(out, 'results.jsonl'))).filter((r) => r.error?.code === 'budget_exceeded');
    expect(stopped.length).toBeGreaterThan(0);
    expect(stopped[0]!.error!.message).toMatch(/of the monthly budget of \$1\.00 is spent .*raise budget\.monthly_usd or wait for next month$/);
    // Not --budget, which a month's cap does not heed.
    expect(first.stdout).toContain(`Budget reached: ${stopped.length} rows not finished (calls already made for them are kept, not paid for again). Finish them with: switchyard run --resume month --config <a config with a higher budget.monthly_usd> (or the same command next month)`);

    expect(await h.redis.hget(`${h.prefix}:batch:{month}`, 'month_cap_refused')).toBe('true');
    const resumed = await runCli(['run', '--resume', 'month', '--config', roomy], h.env());
    expect(resumed.code, resumed.stdout + resumed.stderr).toBe(0);
    // The first run's note that the month's cap refused it is not the resume's, which it did not refuse.
    expect(await h.redis.hget(`${h.prefix}:batch:{month}`, 'month_cap_refused')).toBeNull();
    expect((await readJsonLines<RowResult>(join(out, 'results.jsonl'))).every((r) => r.status === 'succeeded')).toBe(true);
  });

  it("tells a batch run by `switchyard serve` that the month's cap stopped it what the server needs and to post its file again, not what to run; a posted batch resumed by the CLI what to run (review: it was told to post it again)", async () => {
    const config = parseConfig({ providers: { sim: { base_url: h.sim.url } }, models: { pricey: { provider: 'sim', price: { input_per_mtok: 1, output_per_mtok: 1 } } }, default_model: 'pricey', budget: { monthly_usd: 1 } }, 'test');
    const space = { prefix: h.prefix };
    const store = new BatchStore(h.redis, space);
    const month = new Date().toISOString().slice(0, 7);
    await h.redis.hset(`${h.prefix}:budget:month:${month}`, 'spent', usdToNanos(1));
    await h.redis.set(store.keys('gate-api').submittedOverApi, '1');
    await h.redis.set(store.keys('gate-resumed').submittedOverApi, '1');
    try {
      const refusal = (batchId: string, served?: boolean) => createRedisRowGate({ redis: h.redis, space, store, batchId, config, served }).budgetRefusal(usdToNanos(0.01));
      expect(await refusal('gate-api', true)).toMatch(/ of the monthly budget of \$1\.00 is spent \(.*\); the server needs a config with a higher budget\.monthly_usd, or the next month; then post the file again with batch_id=gate-api to finish it$/);
      // Posted over the API (its marker is set), now resumed by `switchyard run --resume`: its user has a shell and a config.
      expect(await refusal('gate-resumed', false)).toMatch(/; raise budget\.monthly_usd or wait for next month$/);
      expect(await refusal('gate-cli')).toMatch(/; raise budget\.monthly_usd or wait for next month$/);
    } finally {
      await h.redis.del(`${h.prefix}:budget:month:${month}`, store.keys('gate-api').submittedOverApi, store.keys('gate-api').meta, store.keys('gate-resumed').submittedOverApi, store.keys('gate-resumed').meta, store.keys('gate-cli').meta);
    }
  });

  it('a model with no price runs under a budget (which cannot limit it, and the run says so)', async () => {
    const dir = await tempDir('budget-unpriced');
    const cfg = join(dir, 'switchyard.yaml');
    await writeFile(cfg, stringify({ providers: { sim: { base_url: h.sim.url } }, models: { free: { provider: 'sim' } }, default_model: 'free' }));
    const input = await writePromptsCsv(dir, 12);
    const out = join(dir, 'out');
    // Its calls reserve an estimate of 0; settling one crashed the budget script ("-0") and every row with it.
    const run = await runCli(['run', input, '--config', cfg, '--out', out, '--budget', '1'], h.env());
    expect(run.code, run.stdout + run.stderr).toBe(0);
    expect(run.stdout).toContain('Warning: no price for free: their calls get cost_usd null in costs.jsonl and the report, and no budget limits them.');
    expect((await readJsonLines<RowResult>(join(out, 'results.jsonl'))).filter((r) => r.status === 'succeeded')).toHaveLength(12);
    expect(await readJsonLines<CallRecord>(join(out, 'costs.jsonl'))).toHaveLength(12);

    // Nor does a monthly cap that other batches' spending has passed refuse it: its calls take nothing from the month.
    const models = { free: { provider: 'sim' }, pricey: { provider: 'sim', price: { input_per_mtok: 1000, output_per_mtok: 1000 } } };
    const uncapped = join(dir, 'uncapped.yaml');
    await writeFile(uncapped, stringify({ providers: { sim: { base_url: h.sim.url } }, models, default_model: 'pricey' }));
    const spend = await runCli(['run', input, '--config', uncapped, '--out', join(dir, 'spend')], h.env());
    expect(spend.code, spend.stdout + spend.stderr).toBe(0);
    const capped = join(dir, 'capped.yaml');
    await writeFile(capped, stringify({ providers: { sim: { base_url: h.sim.url } }, models, default_model: 'free', budget: { monthly_usd: 0.001 } }));
    const free = await runCli(['run', input, '--config', capped, '--out', join(dir, 'free')], h.env());
    expect(free.code, free.stdout + free.stderr).toBe(0);
    expect((await readJsonLines<RowResult>(join(dir, 'free', 'results.jsonl'))).filter((r) => r.status === 'succeeded')).toHaveLength(12);
  });

  it('a budget is spent on what calls cost, not on what their max_tokens estimates hold while in flight', async () => {
    const dir = await tempDir('budget-held');
    const cfg = join(dir, 'switchyard.yaml');
    const price = { input_per_mtok: 1000, output_per_mtok: 1000 };
    await writeFile(cfg, stringify({ providers: { sim: { base_url: h.sim.url } }, models: { pricey: { provider: 'sim', price } }, default_model: 'pricey', max_tokens: 1000 }));
    const input = await writePromptsCsv(dir, 30);
    const out = join(dir, 'out');
    // Each call is reserved at about $1 (max_tokens 1000 at $1,000 per 1M) but answers in under 200
    // tokens. $6 holds six estimates at once: refusing on held estimates failed 19 of the 30 rows
    // (spending about $2); waiting for them to settle runs all 30 for about $3.
    const run = await runCli(['run', input, '--config', cfg, '--out', out, '--batch-id', 'budget-held', '--budget', '6', '--concurrency', '16'], h.env());
    const results = await readJsonLines<RowResult>(join(out, 'results.jsonl'));
    const spent = (await readJsonLines<CallRecord>(join(out, 'costs.jsonl'))).reduce((sum, c) => sum + usdToNanos(c.cost_usd ?? 0), 0);
    expect(spent).toBeLessThanOrEqual(usdToNanos(6));
    expect(results.filter((r) => r.status !== 'succeeded').map((r) => r.error?.message)).toEqual([]);
    expect(run.code, run.stderr).toBe(0);
  });

  it('a call that timed out is paid for: its prompt, counted, in costs.jsonl, the report and the budget', async () => {
    const silent = createServer(() => undefined); // takes each request and never answers
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    try {
      const dir = await tempDir('budget-timeout');
      const cfg = join(dir, 'switchyard.yaml');
      const providers = { silent: { base_url: `http://127.0.0.1:${(silent.address() as AddressInfo).port}/v1`, timeout_ms: 200 } };
      const models = { stuck: { provider: 'silent', price: { input_per_mtok: 1000, output_per_mtok: 1000 } } };
      await writeFile(cfg, stringify({ providers, models, default_model: 'stuck', max_tokens: 10, retry: { max_attempts: 2, base_delay_ms: 1, max_delay_ms: 5 }, breaker: { failure_threshold: 1000 } }));
      const input = await writePromptsCsv(dir, 3);
      const out = join(dir, 'out');
      const run = await runCli(['run', input, '--config', cfg, '--out', out, '--batch-id', 'timeouts', '--budget', '100'], h.env());
      expect(run.code, run.stderr).toBe(1);
      const results = await readJsonLines<RowResult>(join(out, 'results.jsonl'));
      expect(results.map((r) => r.error?.code)).toEqual(['timeout', 'timeout', 'timeout']);
      const calls = await readJsonLines<CallRecord>(join(out, 'costs.jsonl'));
      expect(calls).toHaveLength(6);
      for (const call of calls) {
        const row = results.find((r) => r.row === call.row)!;
        expect(call.input_tokens).toBe(row.usage.input_tokens / 2); // the prompt of its row, counted, each of the two calls
        expect(call).toMatchObject({ status: 'failed', error_code: 'timeout', http_status: null, output_tokens: 0, usage_estimated: true, cost_usd: (call.input_tokens * 1000) / 1e6 });
      }
      const spent = calls.reduce((sum, c) => sum + usdToNanos(c.cost_usd ?? 0), 0);
      expect(spent).toBeGreaterThan(0);
      const report = JSON.parse(await readFile(join(out, 'report.json'), 'utf8')) as Report;
      expect(usdToNanos(report.totals.cost_usd)).toBe(spent);
      expect(report.totals).toMatchObject({ failed_calls: 6, usage_estimated_calls: 6, input_tokens: calls.reduce((sum, c) => sum + c.input_tokens, 0) });
      expect(Number(await h.redis.hget(`${h.prefix}:batch:{timeouts}:budget`, 'spent'))).toBe(spent);
    } finally {
      silent.closeAllConnections();
      silent.close();
    }
  });

  it('two worker processes share one requests-per-minute limit', async () => {
    h.sim.reset();
    const dir = await tempDir('shared');
    const cfg = join(dir, 'switchyard.yaml');
    // 1,200 rpm at 98% headroom: one call every ~51 ms across ALL workers, whatever their number.
    await writeFile(cfg, stringify({ providers: { sim: { base_url: h.sim.url } }, models: { limited: { provider: 'sim', rpm: 1200 } }, default_model: 'limited', limits: { headroom: 0.98 } }));
    const input = await writePromptsCsv(dir, 100);
    const out = join(dir, 'out');
    const worker = spawnCli(['worker', '--concurrency', '16'], h.env());
    try {
      const run = await runCli(['run', input, '--config', cfg, '--out', out, '--batch-id', 'shared', '--concurrency', '16'], h.env());
      expect(run.code, run.stderr).toBe(0);
    } finally {
      worker.kill('SIGTERM');
      await worker.done;
    }
    const stats = h.sim.stats().models.limited!;
    expect(stats.requests).toBe(100);
    expect(stats.by_status[429] ?? 0).toBe(0);
    // 100 calls paced for 1,200 rpm take >= 99 intervals of ~51 ms (two unshared limiters would take half that).
    const spanMs = stats.last_request_at! - stats.first_request_at!;
    expect(spanMs).toBeGreaterThan(99 * 51 * 0.95);
    expect(spanMs).toBeLessThan(99 * 51 * 3);
  });
});

describe('waiting for a rate-limit slot parks the row instead of holding a worker slot', () => {
  const h = useSimulatorAndRedis('parking', { latency_ms: 2 });

  it('with one worker slot, rows of an unlimited model finish while rows of a limited one wait their turn', async () => {
    const dir = await tempDir('parking');
    const cfg = join(dir, 'switchyard.yaml');
    // "slow" allows one call a second; "free" has no limit. One worker slot in all.
    await writeFile(cfg, stringify({ providers: { sim: { base_url: h.sim.url } }, models: { slow: { provider: 'sim', rpm: 60 }, free: { provider: 'sim' } }, default_model: 'free', limits: { headroom: 1 } }));
    const input = await writePromptsCsv(dir, 10, { model: (row) => (row <= 5 ? 'slow' : 'free') });
    const out = join(dir, 'out');
    const run = await runCli(['run', input, '--config', cfg, '--out', out, '--batch-id', 'parking', '--concurrency', '1'], h.env());
    expect(run.code, run.stderr).toBe(0);
    const results = await readJsonLines<RowResult>(join(out, 'results.jsonl'));
    const done = (r: RowResult) => Date.parse(r.completed_at);
    const slow = results.filter((r) => r.model === 'slow');
    const free = results.filter((r) => r.model === 'free');
    // The five paced calls span about four seconds; the free rows did not queue behind them.
    expect(Math.max(...slow.map(done)) - Math.min(...slow.map(done))).toBeGreaterThan(3500);
    expect(Math.max(...free.map(done))).toBeLessThan(Math.max(...slow.map(done)) - 2000);
    // Waiting used no attempts: every row made exactly one call.
    expect(results.every((r) => r.status === 'succeeded' && r.attempts === 1)).toBe(true);
  });
});

describe('budget.monthly_usd counts every batch on this Redis', () => {
  const h = useSimulatorAndRedis('budget-month-all', { latency_ms: 2, models: { 'broken-400': { fail_status: 400 } } });

  it("says the month's cap, not --budget, is what to raise when it stopped the batch (QA: both pointed at --budget)", async () => {
    const dir = await tempDir('budget-month-stop');
    const month = `${h.prefix}:budget:month:${new Date().toISOString().slice(0, 7)}`;
    await h.redis.del(month);
    try {
      const cfg = join(dir, 'capped.yaml');
      await writeFile(cfg, stringify({ providers: { sim: { base_url: h.sim.url } }, models: { pricey: { provider: 'sim', price: { input_per_mtok: 1000, output_per_mtok: 1000 } } }, default_model: 'pricey', max_tokens: 100, budget: { monthly_usd: 0.5 } }));
      const first = await runCli(['run', await writePromptsCsv(dir, 20), '--config', cfg, '--out', join(dir, 'out'), '--batch-id', 'monthstop', '--concurrency', '2'], h.env());
      expect(first.code, first.stderr).toBe(1);
      expect(await h.redis.hget(`${h.prefix}:batch:{monthstop}`, 'budget_stop')).toBe('month');
      const resumed = await runCli(['run', '--resume', 'monthstop', '--budget', '5'], h.env());
      expect(resumed.stdout + resumed.stderr).toContain("Warning: batch monthstop stopped at the month's cap (budget.monthly_usd $0.500) and this run's config does not raise it");
      const status = await runCli(['status', 'monthstop'], h.env());
      expect(status.stdout).toContain("next      the month's cap stopped it: `switchyard run --resume monthstop --config <a config with a higher budget.monthly_usd>` finishes it");
    } finally {
      await h.redis.del(month);
    }
  });

  it("names the month's cap for an ensemble row it refused (review: the cap was read off the end of the row's message)", async () => {
    const dir = await tempDir('budget-month-ensemble');
    const month = `${h.prefix}:budget:month:${new Date().toISOString().slice(0, 7)}`;
    await h.redis.del(month);
    try {
      const cfg = join(dir, 'capped.yaml');
      // pricey's call could cost about $0.1, past the month's cap; broken answers every call 400. The row's
      // message lists pricey's refusal, then broken's 400, so it ends with the 400, not with the cap.
      const models = { pricey: { provider: 'sim', price: { input_per_mtok: 1000, output_per_mtok: 1000 } }, broken: { provider: 'sim', upstream: 'broken-400' }, free: { provider: 'sim' } };
      const ensembles = { both: { members: ['pricey', 'broken'], synthesizer: 'free', min_answers: 1 } };
      await writeFile(cfg, stringify({ providers: { sim: { base_url: h.sim.url } }, models, ensembles, default_model: 'free', max_tokens: 100, budget: { monthly_usd: 0.01 } }));
      const out = join(dir, 'out');
      const run = await runCli(['run', await writePromptsCsv(dir, 2), '--config', cfg, '--out', out, '--batch-id', 'monthensemble', '--model', 'both'], h.env());
      expect(run.code, run.stderr).toBe(1);
      const results = await readJsonLines<RowResult>(join(out, 'results.jsonl'));
      expect(results.map((r) => r.error?.code)).toEqual(['budget_exceeded', 'budget_exceeded']);
      // The month's cap cannot hold the whole row (pricey's call with the synthesis'), so no member is called at all.
      expect(results[0]!.error!.message).toMatch(/^ensemble "both", its 2 members and synthesis: not run: .*the monthly budget of \$0\.0100 is spent .*raise budget\.monthly_usd or wait for next month$/);
      expect(run.stdout).toContain('Finish them with: switchyard run --resume monthensemble --config <a config with a higher budget.monthly_usd> (or the same command next month)');
      expect(await h.redis.hget(`${h.prefix}:batch:{monthensemble}`, 'budget_stop')).toBe('month');
      expect((await runCli(['status', 'monthensemble'], h.env())).stdout).toContain("next      the month's cap stopped it");
    } finally {
      await h.redis.del(month);
    }
  });

  it('adds what batches without a monthly cap spend to the month, so a capped batch sees it', async () => {
    const dir = await tempDir('budget-month-all');
    const models = { pricey: { provider: 'sim', price: { input_per_mtok: 1000, output_per_mtok: 1000 } } };
    const uncapped = join(dir, 'uncapped.yaml');
    const capped = join(dir, 'capped.yaml');
    await writeFile(uncapped, stringify({ providers: { sim: { base_url: h.sim.url } }, models, default_model: 'pricey', max_tokens: 100 }));
    const first = await runCli(['run', await writePromptsCsv(dir, 10), '--config', uncapped, '--out', join(dir, 'first'), '--batch-id', 'uncapped', '--budget', '100'], h.env());
    expect(first.code, first.stderr).toBe(0);
    const spent = (await readJsonLines<CallRecord>(join(dir, 'first', 'costs.jsonl'))).reduce((sum, c) => sum + usdToNanos(c.cost_usd ?? 0), 0);
    const month = `${h.prefix}:budget:month:${new Date().toISOString().slice(0, 7)}`;
    expect(Number(await h.redis.hget(month, 'spent'))).toBe(spent);
    expect(await h.redis.pttl(month)).toBeGreaterThan(30 * 86_400_000);

    // A cap the first batch alone has used up: the next batch under it is refused before it queues a row.
    await writeFile(capped, stringify({ providers: { sim: { base_url: h.sim.url } }, models, default_model: 'pricey', max_tokens: 100, budget: { monthly_usd: spent / 1e9 } }));
    const second = await runCli(['run', await writePromptsCsv(dir, 3), '--config', capped, '--out', join(dir, 'second'), '--batch-id', 'capped'], h.env());
    expect(second.code).toBe(2);
    expect(second.stderr).toContain("the month's budget is spent");
    // Just under the cap, with less left than a call reserves ($0.101: a token in, 100 out, at $1,000/M), it is spent all the same.
    await writeFile(capped, stringify({ providers: { sim: { base_url: h.sim.url } }, models, default_model: 'pricey', max_tokens: 100, budget: { monthly_usd: spent / 1e9 + 0.0001 } }));
    const third = await runCli(['run', await writePromptsCsv(dir, 3), '--config', capped, '--out', join(dir, 'third'), '--batch-id', 'capped2'], h.env());
    expect(third.code).toBe(2);
    expect(third.stderr).toContain('(the $0.000100 left is less than the least a call reserves: $0.101 on pricey, max_tokens 100 at its output price)');
  });
});
