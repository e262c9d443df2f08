import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { usdToNanos } from '../../src/models/pricing.ts';
import type { CallRecord, RowResult } from '../../src/output/records.ts';
import type { Report } from '../../src/output/report-json.ts';
import { killRunThenResume, runCli, spawnCli, waitFor } from '../helpers/cli.ts';
import { readJsonLines, tempDir, writePromptsCsv, writeSimConfig } from '../helpers/files.ts';
import { useSimulatorAndRedis } from '../helpers/harness.ts';
import { startSimulator } from '../../src/sim/server.ts';

const MODELS = ['alpha', 'beta', 'down', 'judge'];

describe('ensembles: members answer, a synthesizer writes one answer from theirs', () => {
  // "down" answers every call with a 500: a member that fails after its retries.
  const h = useSimulatorAndRedis('ensemble', { latency_ms: 2, models: { down: { fail_status: 500 }, refused: { fail_status: 400 } } });
  const configWith = (dir: string, ensemble: Record<string, unknown>) =>
    writeSimConfig(dir, h.sim.url, { retry: { max_attempts: 2, base_delay_ms: 1, max_delay_ms: 5 }, ensembles: { council: { members: ['alpha', 'beta', 'down'], synthesizer: 'judge', ...ensemble } } }, MODELS);

  it('answers each row with the synthesis, keeps every member answer, and records every call', async () => {
    h.sim.reset();
    const dir = await tempDir('ensemble');
    const config = await configWith(dir, {});
    const input = await writePromptsCsv(dir, 5, { model: (row) => (row === 5 ? 'council' : undefined) });
    const out = join(dir, 'out');
    const ran = await runCli(['run', input, '--config', config, '--out', out, '--batch-id', 'council', '--model', 'council'], h.env());
    expect(ran.code, ran.stdout + ran.stderr).toBe(0);
    expect(ran.stdout).toMatch(/Ensemble +20 member calls \(\$[\d.]+\), 5 synthesis calls \(\$[\d.]+\)/);

    const results = await readJsonLines<RowResult>(join(out, 'results.jsonl'));
    expect(results).toHaveLength(5);
    for (const result of results) {
      expect(result).toMatchObject({ status: 'succeeded', model: 'judge', final_model: 'judge', attempts: 5 });
      expect(result.output).toBeTruthy();
      expect(result.route_reason).toBe('ensemble "council": 2 of 3 members answered, synthesized by judge');
      expect(result.ensemble?.members.map((m) => [m.model, m.status, m.error?.code ?? null])).toEqual([
        ['alpha', 'succeeded', null],
        ['beta', 'succeeded', null],
        ['down', 'failed', 'server_error'],
      ]);
      expect(result.ensemble?.members.slice(0, 2).every((m) => (m.output ?? '').length > 0)).toBe(true);
    }

    // Per row: alpha, beta, two failed calls to "down", then the synthesis; each a cost record.
    const calls = await readJsonLines<CallRecord>(join(out, 'costs.jsonl'));
    expect(calls).toHaveLength(25);
    expect(calls.filter((c) => c.purpose === 'synthesis').map((c) => c.model)).toEqual(Array(5).fill('judge'));
    expect(calls.filter((c) => c.purpose === 'ensemble_member' && c.status === 'failed')).toHaveLength(10);
    const report = JSON.parse(await readFile(join(out, 'report.json'), 'utf8')) as Report;
    expect(report.totals.cost_usd).toBe(calls.reduce((sum, c) => sum + usdToNanos(c.cost_usd!), 0) / 1e9);
    expect(report.extra_calls).toMatchObject({ ensemble_member_calls: 20, synthesis_calls: 5, rows_on_fallback: 0 });
    expect(report.models.judge).toMatchObject({ rows: 5, calls: 5 });
    expect(report.ensembles.council).toMatchObject({ rows: 5, succeeded: 5, failed: 0, cost_usd: report.totals.cost_usd });
    expect(ran.stdout).toMatch(/Ensembles \(members and synthesis together\)\n {2}council {2}5 rows {2}0 failed {2}\$[\d.]+ {2}p50 +[\d.]+ m?s {2}p95 +[\d.]+ m?s/);
    expect(await readFile(join(out, 'report.md'), 'utf8')).toContain('## Ensembles');
    // The synthesizer read the request and both answers: far more prompt tokens than a member.
    const stats = h.sim.stats().models;
    expect(stats.judge!.prompt_tokens / 5).toBeGreaterThan(2 * (stats.alpha!.prompt_tokens / 5));
  });

  it('parks a row while a member waits for its rate limit, and calls each member once per row', async () => {
    h.sim.reset();
    const dir = await tempDir('ensemble-parked');
    const price = { input_per_mtok: 0.1, output_per_mtok: 0.2 };
    // beta at 120 requests a minute: its calls are 0.5 s apart, so most rows wait for beta parked.
    const models = { alpha: { provider: 'sim', price }, beta: { provider: 'sim', price, rpm: 120 }, judge: { provider: 'sim', price } };
    const config = await writeSimConfig(dir, h.sim.url, { models, ensembles: { pair: { members: ['alpha', 'beta'], synthesizer: 'judge' } } }, MODELS);
    const input = await writePromptsCsv(dir, 4);
    const out = join(dir, 'out');
    const ran = await runCli(['run', input, '--config', config, '--out', out, '--batch-id', 'parked', '--model', 'pair'], h.env());
    expect(ran.code, ran.stdout + ran.stderr).toBe(0);
    const results = await readJsonLines<RowResult>(join(out, 'results.jsonl'));
    expect(results.map((r) => r.status)).toEqual(Array(4).fill('succeeded'));
    const stats = h.sim.stats().models;
    expect([stats.alpha!.requests, stats.beta!.requests, stats.judge!.requests]).toEqual([4, 4, 4]);
    expect((await readJsonLines<CallRecord>(join(out, 'costs.jsonl'))).length).toBe(12);
  });

  it('a run stopped while rows wait for the synthesis keeps the members\' answers for the resume, which retries only the failed member', async () => {
    h.sim.reset();
    const dir = await tempDir('ensemble-stopped');
    const price = { input_per_mtok: 0.1, output_per_mtok: 0.2 };
    const models = (synthesizer: Record<string, unknown>) => ({ alpha: { provider: 'sim', price }, beta: { provider: 'sim', price }, down: { provider: 'sim', price }, judge: { provider: 'sim', price, ...synthesizer } });
    // One synthesis a second: the members have all answered within a second, then rows wait for it parked.
    const settings = (synthesizer: Record<string, unknown>) => ({ models: models(synthesizer), retry: { max_attempts: 2, base_delay_ms: 1, max_delay_ms: 5 }, ensembles: { council: { members: ['alpha', 'beta', 'down'], synthesizer: 'judge' } } });
    const config = await writeSimConfig(dir, h.sim.url, settings({ rpm: 60 }), MODELS);
    const input = await writePromptsCsv(dir, 6);
    const out = join(dir, 'out');
    // Under a budget, each row holds its calls to come (ensemble-row.ts reserveWholeRow): the stop releases those of the rows it takes off the queue.
    const first = spawnCli(['run', input, '--config', config, '--out', out, '--batch-id', 'council-stopped', '--model', 'council', '--budget', '100'], h.env());
    const stats = () => h.sim.stats().models;
    await waitFor(async () => stats().alpha?.requests === 6 && stats().beta?.requests === 6 && stats().down?.requests === 12 && (stats().judge?.requests ?? 0) >= 1, 20_000);
    first.kill('SIGINT');
    expect((await first.done).code).toBe(130);
    const carriedRows = await h.redis.hlen(`${h.prefix}:batch:{council-stopped}:carried`);
    expect(carriedRows).toBeGreaterThan(0);
    expect(await h.redis.hget(`${h.prefix}:batch:{council-stopped}:budget`, 'reserved')).toBe('0');

    await writeSimConfig(dir, h.sim.url, settings({}), MODELS);
    const resumed = await runCli(['run', '--resume', 'council-stopped', '--config', config, '--budget', '100'], h.env());
    expect(resumed.code, resumed.stdout + resumed.stderr).toBe(0);
    // The members that answered were not called again; the failed one was retried, as a failed row is on resume.
    expect([stats().alpha?.requests, stats().beta?.requests, stats().down?.requests, stats().judge?.requests]).toEqual([6, 6, 12 + 2 * carriedRows, 6]);
    const results = await readJsonLines<RowResult>(join(out, 'results.jsonl'));
    expect(results.map((r) => [r.row, r.status, r.ensemble?.members.map((m) => m.status)])).toEqual([1, 2, 3, 4, 5, 6].map((row) => [row, 'succeeded', ['succeeded', 'succeeded', 'failed']]));
    const calls = await readJsonLines<CallRecord>(join(out, 'costs.jsonl'));
    expect(calls).toHaveLength(6 + 6 + 12 + 2 * carriedRows + 6);
    expect(new Set(calls.map((c) => JSON.stringify(c))).size).toBe(calls.length);
    for (const result of results) expect(usdToNanos(result.cost_usd!)).toBe(calls.filter((c) => c.row === result.row).reduce((sum, c) => sum + usdToNanos(c.cost_usd!), 0));
    const report = JSON.parse(await readFile(join(out, 'report.json'), 'utf8')) as Report;
    expect(report.totals.cost_usd).toBe(calls.reduce((sum, c) => sum + usdToNanos(c.cost_usd!), 0) / 1e9);
  });

  it('a row whose whole ensemble the budget cannot hold is refused before any member is paid; the resume with a higher budget runs it', async () => {
    h.sim.reset();
    const dir = await tempDir('ensemble-budget');
    const cheap = { input_per_mtok: 0.1, output_per_mtok: 0.2 };
    // The synthesizer's call is priced far beyond a $0.1 budget (about $10 reserved); the members' cost next to nothing.
    const models = { alpha: { provider: 'sim', price: cheap }, beta: { provider: 'sim', price: cheap }, judge: { provider: 'sim', price: { input_per_mtok: 10_000, output_per_mtok: 10_000 } } };
    const config = await writeSimConfig(dir, h.sim.url, { models, ensembles: { council: { members: ['alpha', 'beta'], synthesizer: 'judge' } } }, Object.keys(models));
    const input = await writePromptsCsv(dir, 4);
    const out = join(dir, 'out');
    const first = await runCli(['run', input, '--config', config, '--out', out, '--batch-id', 'council-budget', '--model', 'council', '--budget', '0.1'], h.env());
    expect(first.code, first.stdout + first.stderr).toBe(1);
    const failed = await readJsonLines<RowResult>(join(out, 'results.jsonl'));
    expect(failed.map((r) => [r.status, r.error?.code, r.cost_usd, r.ensemble?.members.map((m) => m.error?.code)])).toEqual(Array(4).fill(['failed', 'budget_exceeded', 0, ['budget_exceeded', 'budget_exceeded']]));
    expect(failed[0]!.error?.message).toMatch(/^ensemble "council", its 2 members and synthesis: not run: it could cost up to \$[\d.]+ and \$0 of the batch budget of \$0\.100 is spent .*resume with a higher --budget to finish$/);
    const stats = () => h.sim.stats().models;
    expect([stats().alpha, stats().beta, stats().judge]).toEqual([undefined, undefined, undefined]);
    expect(await readJsonLines<CallRecord>(join(out, 'costs.jsonl'))).toEqual([]);
    // Nothing held is left behind: the refused reservation took nothing.
    expect(Number((await h.redis.hget(`${h.prefix}:batch:{council-budget}:budget`, 'reserved')) ?? 0)).toBe(0);

    const resumed = await runCli(['run', '--resume', 'council-budget', '--budget', '1000'], h.env());
    expect(resumed.code, resumed.stdout + resumed.stderr).toBe(0);
    expect([stats().alpha?.requests, stats().beta?.requests, stats().judge?.requests]).toEqual([4, 4, 4]);
    const results = await readJsonLines<RowResult>(join(out, 'results.jsonl'));
    expect(results.map((r) => [r.row, r.status, r.model, r.ensemble?.members.map((m) => m.status)])).toEqual([1, 2, 3, 4].map((row) => [row, 'succeeded', 'judge', ['succeeded', 'succeeded']]));
    const calls = await readJsonLines<CallRecord>(join(out, 'costs.jsonl'));
    expect(calls.map((c) => `${c.row}:${c.model}`).sort()).toEqual([1, 2, 3, 4].flatMap((row) => [`${row}:alpha`, `${row}:beta`, `${row}:judge`]));
    const report = JSON.parse(await readFile(join(out, 'report.json'), 'utf8')) as Report;
    expect(report.totals.cost_usd).toBe(calls.reduce((sum, c) => sum + usdToNanos(c.cost_usd!), 0) / 1e9);
    expect(report.ensembles.council).toMatchObject({ rows: 4, succeeded: 4, failed: 0 });
    // Every hold was settled or released: what is spent is the batch's cost, nothing is held.
    const budget = await h.redis.hgetall(`${h.prefix}:batch:{council-budget}:budget`);
    expect([Number(budget.spent), budget.reserved]).toEqual([usdToNanos(report.totals.cost_usd), '0']);
    expect((await runCli(['status', 'council-budget'], h.env())).stdout).toContain('4/4 finished: 4 succeeded, 0 failed');
  });

  it('a budget that holds a few whole rows at a time: the rows it starts answer, and no row pays members without an answer (QA: 57 of 60 rows did)', async () => {
    h.sim.reset();
    const dir = await tempDir('ensemble-budget-edge');
    const cheap = { input_per_mtok: 1, output_per_mtok: 1 };
    // A row holds about $1.1 before its members start (the synthesis' prompt taken to hold both answers
    // at their max_tokens, 50) and spends about $0.3: $5 starts 4 rows at a time, and more as they settle.
    const models = { alpha: { provider: 'sim', price: cheap }, beta: { provider: 'sim', price: cheap }, judge: { provider: 'sim', price: { input_per_mtok: 1000, output_per_mtok: 1000 } } };
    const config = await writeSimConfig(dir, h.sim.url, { models, max_tokens: 50, ensembles: { council: { members: ['alpha', 'beta'], synthesizer: 'judge' } } }, Object.keys(models));
    const input = await writePromptsCsv(dir, 40);
    const out = join(dir, 'out');
    const ran = await runCli(['run', input, '--config', config, '--out', out, '--batch-id', 'council-budget-edge', '--model', 'council', '--budget', '5'], h.env());
    expect(ran.code, ran.stdout + ran.stderr).toBe(1);
    const results = await readJsonLines<RowResult>(join(out, 'results.jsonl'));
    const calls = await readJsonLines<CallRecord>(join(out, 'costs.jsonl'));
    const succeeded = results.filter((r) => r.status === 'succeeded');
    const failed = results.filter((r) => r.status === 'failed');
    expect(succeeded.length).toBeGreaterThanOrEqual(4);
    expect(failed.length).toBeGreaterThan(0);
    expect(new Set(failed.map((r) => r.error?.code))).toEqual(new Set(['budget_exceeded']));
    // The rows the budget could not finish made no call: nothing was bought for them.
    const paidWithoutAnswer = calls.filter((c) => failed.some((r) => r.row === c.row));
    expect(paidWithoutAnswer.map((c) => `${c.row}:${c.purpose}`)).toEqual([]);
    for (const result of succeeded) expect(calls.filter((c) => c.row === result.row).map((c) => c.purpose).sort()).toEqual(['ensemble_member', 'ensemble_member', 'synthesis']);
    const spent = calls.reduce((sum, c) => sum + usdToNanos(c.cost_usd!), 0);
    expect(spent).toBeLessThanOrEqual(usdToNanos(5));
    const budget = await h.redis.hgetall(`${h.prefix}:batch:{council-budget-edge}:budget`);
    expect([Number(budget.spent), budget.reserved]).toEqual([spent, '0']);
  });

  it("a resumed row that holds its members' answers runs its synthesis alone under a budget that could not hold the whole row", async () => {
    h.sim.reset();
    const dir = await tempDir('ensemble-budget-carried');
    const cheap = { input_per_mtok: 0.1, output_per_mtok: 0.2 };
    const dear = { input_per_mtok: 10_000, output_per_mtok: 10_000 };
    // The members cost about $0.58 each at most, more than the resume's $0.5; the synthesis next to nothing.
    // The first run's synthesizer answers 500s (the simulator's "down"), so the rows fail holding their answers.
    const settings = (judge: Record<string, unknown>) => ({
      models: { alpha: { provider: 'sim', price: dear }, beta: { provider: 'sim', price: dear }, judge: { provider: 'sim', price: cheap, ...judge } },
      retry: { max_attempts: 2, base_delay_ms: 1, max_delay_ms: 5 },
      ensembles: { council: { members: ['alpha', 'beta'], synthesizer: 'judge' } },
    });
    const config = await writeSimConfig(dir, h.sim.url, settings({ upstream: 'down' }), MODELS);
    const input = await writePromptsCsv(dir, 3);
    const out = join(dir, 'out');
    expect((await runCli(['run', input, '--config', config, '--out', out, '--batch-id', 'council-budget-carried', '--model', 'council'], h.env())).code).toBe(1);
    expect(await h.redis.hlen(`${h.prefix}:batch:{council-budget-carried}:carried`)).toBe(3);
    await writeSimConfig(dir, h.sim.url, settings({}), MODELS);
    const resumed = await runCli(['run', '--resume', 'council-budget-carried', '--config', config, '--budget', '0.5'], h.env());
    expect(resumed.code, resumed.stdout + resumed.stderr).toBe(0);
    const stats = h.sim.stats().models;
    expect([stats.alpha?.requests, stats.beta?.requests, stats.judge?.requests]).toEqual([3, 3, 3]);
    expect((await readJsonLines<RowResult>(join(out, 'results.jsonl'))).map((r) => r.status)).toEqual(['succeeded', 'succeeded', 'succeeded']);
  });

  it('a row that failed because a member did not answer keeps the answers of the others for a re-run, unless the row was edited or its ensemble has other members', async () => {
    h.sim.reset();
    const dir = await tempDir('ensemble-failed-member');
    const price = { input_per_mtok: 0.1, output_per_mtok: 0.2 };
    // "down" fails every call (the simulator's 500s) until the re-run's config sends it to "spare".
    const settings = (down: Record<string, unknown>, duo: string[]) => ({
      models: { alpha: { provider: 'sim', price }, beta: { provider: 'sim', price }, down: { provider: 'sim', price, ...down }, judge: { provider: 'sim', price } },
      retry: { max_attempts: 2, base_delay_ms: 1, max_delay_ms: 5 },
      ensembles: { council: { members: ['alpha', 'down'], synthesizer: 'judge' }, duo: { members: duo, synthesizer: 'judge' } },
    });
    const config = await writeSimConfig(dir, h.sim.url, settings({}, ['alpha', 'down']), MODELS);
    const input = await writePromptsCsv(dir, 4, { model: (row) => (row === 4 ? 'duo' : 'council') });
    const out = join(dir, 'out');
    const run = () => runCli(['run', input, '--config', config, '--out', out, '--batch-id', 'council-member'], h.env());
    const first = await run();
    expect(first.code, first.stdout + first.stderr).toBe(1);
    const failed = await readJsonLines<RowResult>(join(out, 'results.jsonl'));
    expect(failed.map((r) => [r.error?.code, r.ensemble?.members.map((m) => m.status)])).toEqual(Array(4).fill(['ensemble_failed', ['succeeded', 'failed']]));
    const stats = () => h.sim.stats().models;
    expect([stats().alpha?.requests, stats().down?.requests, stats().judge]).toEqual([4, 8, undefined]);

    // The re-run (the same command): row 3 edited, duo (row 4) given another member, "down" answering now.
    await writeSimConfig(dir, h.sim.url, settings({ upstream: 'spare' }, ['alpha', 'beta', 'down']), MODELS);
    await writeFile(input, (await readFile(input, 'utf8')).replace('Question 3:', 'Question three:'));
    const again = await run();
    expect(again.code, again.stdout + again.stderr).toBe(0);
    expect(again.stdout).toContain('(2 failed ensemble rows keep the answers their members gave');
    // alpha answers again only for the edited row and the changed ensemble's; "down" runs again for every row.
    expect([stats().alpha?.requests, stats().spare?.requests, stats().beta?.requests, stats().judge?.requests]).toEqual([6, 4, 1, 4]);
    const results = await readJsonLines<RowResult>(join(out, 'results.jsonl'));
    expect(results.map((r) => [r.row, r.status, r.ensemble?.members.map((m) => m.status)])).toEqual([
      [1, 'succeeded', ['succeeded', 'succeeded']],
      [2, 'succeeded', ['succeeded', 'succeeded']],
      [3, 'succeeded', ['succeeded', 'succeeded']],
      [4, 'succeeded', ['succeeded', 'succeeded', 'succeeded']],
    ]);
    const calls = await readJsonLines<CallRecord>(join(out, 'costs.jsonl'));
    // First run: alpha and down's two failures per row; the re-run: alpha for rows 3 and 4, down (on spare) per row, beta once, the synthesis per row.
    expect(calls).toHaveLength(4 + 8 + 2 + 4 + 1 + 4);
    expect(new Set(calls.map((c) => JSON.stringify(c))).size).toBe(calls.length);
    // The rows that kept their answers count every call they made, in both runs.
    for (const result of results.slice(0, 2)) {
      expect(usdToNanos(result.cost_usd!)).toBe(calls.filter((c) => c.row === result.row).reduce((sum, c) => sum + usdToNanos(c.cost_usd!), 0));
      expect(result.models_tried).toEqual(['alpha', 'down', 'judge']);
    }
    const report = JSON.parse(await readFile(join(out, 'report.json'), 'utf8')) as Report;
    expect(report.totals.cost_usd).toBe(calls.reduce((sum, c) => sum + usdToNanos(c.cost_usd!), 0) / 1e9);
  });

  it("a row whose synthesis failed after its retries keeps its members' answers: the re-run calls only the synthesis, and the row counts its failed calls once", async () => {
    h.sim.reset();
    const dir = await tempDir('ensemble-failed-synthesis');
    const price = { input_per_mtok: 0.1, output_per_mtok: 0.2 };
    // The synthesizer "down" fails every call (the simulator's 500s) until the re-run's config sends it to "spare".
    const settings = (down: Record<string, unknown>) => ({
      models: { alpha: { provider: 'sim', price }, beta: { provider: 'sim', price }, down: { provider: 'sim', price, ...down } },
      retry: { max_attempts: 2, base_delay_ms: 1, max_delay_ms: 5 },
      ensembles: { council: { members: ['alpha', 'beta'], synthesizer: 'down' } },
    });
    const config = await writeSimConfig(dir, h.sim.url, settings({}), MODELS);
    const input = await writePromptsCsv(dir, 2);
    const out = join(dir, 'out');
    const run = () => runCli(['run', input, '--config', config, '--out', out, '--batch-id', 'council-synthesis', '--model', 'council'], h.env());
    expect((await run()).code).toBe(1);
    expect((await readJsonLines<RowResult>(join(out, 'results.jsonl'))).map((r) => r.error?.code)).toEqual(['server_error', 'server_error']);
    await writeSimConfig(dir, h.sim.url, settings({ upstream: 'spare' }), MODELS);
    const again = await run();
    expect(again.code, again.stdout + again.stderr).toBe(0);
    const stats = h.sim.stats().models;
    expect([stats.alpha?.requests, stats.beta?.requests, stats.down?.requests, stats.spare?.requests]).toEqual([2, 2, 4, 2]);
    const calls = await readJsonLines<CallRecord>(join(out, 'costs.jsonl'));
    expect(calls.map((c) => `${c.row}:${c.purpose}:${c.status}`).sort()).toEqual([1, 2].flatMap((row) => [`${row}:ensemble_member:succeeded`, `${row}:ensemble_member:succeeded`, `${row}:synthesis:failed`, `${row}:synthesis:failed`, `${row}:synthesis:succeeded`]));
    for (const result of await readJsonLines<RowResult>(join(out, 'results.jsonl'))) {
      expect(result).toMatchObject({ status: 'succeeded', model: 'down', attempts: 5 });
      expect(usdToNanos(result.cost_usd!)).toBe(calls.filter((c) => c.row === result.row).reduce((sum, c) => sum + usdToNanos(c.cost_usd!), 0));
    }
  });

  it('fails a row without a synthesis call when too few members answer', async () => {
    h.sim.reset();
    const dir = await tempDir('ensemble-short');
    const config = await configWith(dir, { min_answers: 3 });
    const input = await writePromptsCsv(dir, 2);
    const out = join(dir, 'out');
    const ran = await runCli(['run', input, '--config', config, '--out', out, '--batch-id', 'short', '--model', 'council'], h.env());
    expect(ran.code).toBe(1);
    const results = await readJsonLines<RowResult>(join(out, 'results.jsonl'));
    expect(results.map((r) => r.error?.code)).toEqual(['ensemble_failed', 'ensemble_failed']);
    expect(results[0]!.error!.message).toMatch(/^ensemble "council": 2 of 3 members answered, 3 needed; down failed: /);
    expect(h.sim.stats().models.judge).toBeUndefined();
    const report = JSON.parse(await readFile(join(out, 'report.json'), 'utf8')) as Report;
    expect(report.ensembles.council).toMatchObject({ rows: 2, succeeded: 0, failed: 2, latency_p50_ms: null });
    // The synthesizer was never called: the rows are the ensemble's, not a model's.
    expect(results.map((r) => r.model)).toEqual(['council', 'council']);
    expect(Object.values(report.models).reduce((rows, model) => rows + model.rows, 0)).toBe(0);
  });

  it('says why a member failed while another waited out a retry backoff, and gives up on the waiting one', async () => {
    h.sim.reset();
    const dir = await tempDir('ensemble-member-failed');
    const price = { input_per_mtok: 0.1, output_per_mtok: 0.2 };
    // down answers 500 (retried after a backoff the row parks for: any wait parks with inline_wait_ms 0); refused answers 400, which is not retried.
    const models = { down: { provider: 'sim', price }, refused: { provider: 'sim', price }, alpha: { provider: 'sim', price } };
    const config = await writeSimConfig(dir, h.sim.url, { models, ensembles: { pair: { members: ['down', 'refused'], synthesizer: 'alpha' } }, retry: { max_attempts: 3, base_delay_ms: 2000, max_delay_ms: 2000 }, limits: { inline_wait_ms: 0 } }, Object.keys(models));
    const input = await writePromptsCsv(dir, 1);
    const out = join(dir, 'out');
    const ran = await runCli(['run', input, '--config', config, '--out', out, '--batch-id', 'member-failed', '--model', 'pair'], h.env());
    expect(ran.code).toBe(1);
    const [result] = await readJsonLines<RowResult>(join(out, 'results.jsonl'));
    expect(result!.error).toMatchObject({ code: 'ensemble_failed', message: expect.stringMatching(/^ensemble "pair": 1 of 2 members can still answer, 2 needed; refused: .*400/) });
    expect(result!.ensemble?.members.map((m) => [m.model, m.status, m.error?.code ?? null])).toEqual([
      ['down', 'failed', 'ensemble_failed'],
      ['refused', 'failed', 'bad_request'],
    ]);
    // down was called once, then given up on instead of retried: its answer could not have been used.
    expect((await readJsonLines<CallRecord>(join(out, 'costs.jsonl'))).map((call) => call.model).sort()).toEqual(['down', 'refused']);
  });

  it('fails a row before any call when members whose models cannot hold its prompt leave too few for min_answers', async () => {
    h.sim.reset();
    const dir = await tempDir('ensemble-unfit');
    const price = { input_per_mtok: 0.1, output_per_mtok: 0.2 };
    const models = { alpha: { provider: 'sim', price }, tiny: { provider: 'sim', price, context_window: 12, max_output_tokens: 4 }, judge: { provider: 'sim', price } };
    const config = await writeSimConfig(dir, h.sim.url, { models, ensembles: { council: { members: ['alpha', 'tiny'], synthesizer: 'judge' } } }, Object.keys(models));
    const input = await writePromptsCsv(dir, 2);
    const out = join(dir, 'out');
    const ran = await runCli(['run', input, '--config', config, '--out', out, '--batch-id', 'unfit', '--model', 'council'], h.env());
    expect(ran.code).toBe(1);
    const [first] = await readJsonLines<RowResult>(join(out, 'results.jsonl'));
    expect(first!.error!.message).toMatch(/^ensemble "council": 1 of 2 members can still answer, 2 needed; tiny: no model can take this prompt \(\d+ tokens\): tiny: context window 12 < \d+ prompt \+ 4 output tokens\. The prompt alone leaves no room for an answer in that context window: shorten it, or add a model with a larger context window to models\.tiny\.fallbacks$/);
    expect(first!.ensemble?.members.map((m) => [m.model, m.status, m.error?.code ?? null])).toEqual([
      ['alpha', 'failed', 'ensemble_failed'],
      ['tiny', 'failed', 'no_model_available'],
    ]);
    // Not routed, the rows still carry the routing rules' label, as a pinned row does.
    expect(first!.task_type).toBe('simple');
    // alpha's answer could not have been used: it is not paid for.
    expect(h.sim.stats().requests).toBe(0);
    expect(await readJsonLines<CallRecord>(join(out, 'costs.jsonl'))).toEqual([]);
  });

  it("falls back as a member's or the synthesizer's own model says, never to another member, and skips a synthesizer whose context window cannot hold the answers", async () => {
    h.sim.reset();
    const dir = await tempDir('ensemble-fallbacks');
    const price = { input_per_mtok: 0.1, output_per_mtok: 0.2 };
    const small = { provider: 'sim', price, context_window: 200, max_output_tokens: 50 };
    const models = {
      alpha: { provider: 'sim', price },
      beta: { provider: 'sim', price },
      // "down" fails every call; its first fallback is a member already in the ensemble.
      down: { provider: 'sim', price, fallbacks: ['alpha', 'spare'] },
      spare: { provider: 'sim', price },
      judge: { ...small, fallbacks: ['wide'] },
      narrow: small,
      wide: { provider: 'sim', price },
    };
    const ensembles = {
      council: { members: ['alpha', 'beta', 'down'], synthesizer: 'judge' },
      tight: { members: ['alpha', 'beta'], synthesizer: 'narrow' },
    };
    const config = await writeSimConfig(dir, h.sim.url, { models, ensembles, retry: { max_attempts: 2, base_delay_ms: 1, max_delay_ms: 5 } }, Object.keys(models));
    const input = await writePromptsCsv(dir, 3, { model: (row) => (row === 3 ? 'tight' : 'council') });
    const out = join(dir, 'out');
    const ran = await runCli(['run', input, '--config', config, '--out', out, '--batch-id', 'ens-fallbacks'], h.env());
    expect(ran.code, ran.stdout + ran.stderr).toBe(1);

    const [first, second, third] = (await readJsonLines<RowResult>(join(out, 'results.jsonl'))) as [RowResult, RowResult, RowResult];
    for (const result of [first, second]) {
      expect(result).toMatchObject({ status: 'succeeded', model: 'wide', final_model: 'wide' });
      expect(result.route_reason).toBe('ensemble "council": 3 of 3 members answered, synthesized by wide');
      expect(result.ensemble?.members.map((m) => [m.model, m.status, m.final_model])).toEqual([
        ['alpha', 'succeeded', 'alpha'],
        ['beta', 'succeeded', 'beta'],
        ['down', 'succeeded', 'spare'],
      ]);
      // In the order it happened: down was called and failed, then alpha passed over (QA: alpha's skip was said first).
      expect(result.fallback_reason).toMatch(
        /^member down: down: server_error after 2 attempts; alpha: skipped, another member of the ensemble; synthesis: judge: skipped, context window 200 < \d+ prompt \+ 50 output tokens$/,
      );
    }
    expect(third).toMatchObject({ status: 'failed', model: 'narrow', error: { code: 'no_model_available' } });
    // The answers fit narrow's window, the synthesis's max_tokens beside them does not: the ensemble's key for it is named.
    expect(third.error!.message).toMatch(
      /^ensemble "tight", synthesis of 2 answers: no model has room for this prompt \(\d+ tokens\) and its answer: narrow: context window 200 < \d+ prompt \+ 50 output tokens\. The prompt fits narrow's context window, the answer's max_tokens does not: set ensembles\.tight\.synthesis_max_tokens \(or models\.narrow\.max_output_tokens\) to \d+ or less, or add a model with a larger context window to models\.narrow\.fallbacks$/,
    );

    // alpha is called once per row (as a member, not again as down's fallback); judge and narrow never.
    const stats = h.sim.stats().models;
    expect([stats.alpha?.requests, stats.spare?.requests, stats.wide?.requests, stats.judge, stats.narrow]).toEqual([3, 2, 2, undefined, undefined]);
  });

  it('refuses a config whose ensemble names an unknown model or shares a model\'s name', async () => {
    const dir = await tempDir('ensemble-config');
    const config = await writeSimConfig(dir, h.sim.url, { ensembles: { alpha: { members: ['alpha', 'gamma'], synthesizer: 'judge' } } }, MODELS);
    const input = await writePromptsCsv(dir, 1);
    const ran = await runCli(['run', input, '--config', config], h.env());
    expect(ran.code).toBe(2);
    expect(ran.stderr).toContain('ensembles.alpha: "alpha" is a model\'s name too: give the ensemble another one');
    expect(ran.stderr).toContain('ensembles.alpha.members.1: unknown model "gamma"');
  });
});

describe('ensembles: a process killed during the synthesis', () => {
  // The synthesizer takes 3 s, so the run can be killed while every row waits for its synthesis.
  const h = useSimulatorAndRedis('ensemble-kill', { latency_ms: 5, models: { judge: { latency_ms: 3000 } } });

  it('keeps the members\' answers and calls: the resume runs only the synthesis again', async () => {
    const dir = await tempDir('ensemble-kill');
    const config = await writeSimConfig(dir, h.sim.url, { ensembles: { council: { members: ['alpha', 'beta'], synthesizer: 'judge' } } }, MODELS);
    const input = await writePromptsCsv(dir, 4);
    const out = join(dir, 'out');
    const killWhen = () => h.sim.stats().models.judge?.requests === 4; // every row waits for its synthesis
    const resumed = await killRunThenResume({ args: [input, '--out', out, '--model', 'council'], batchId: 'killed-council', config, killWhen }, h.env());
    expect(resumed.code, resumed.stdout + resumed.stderr).toBe(0);
    const stats = h.sim.stats().models;
    // Each member answered each row once; the synthesis cut off by the kill went out again.
    expect([stats.alpha?.requests, stats.beta?.requests, stats.judge?.requests]).toEqual([4, 4, 8]);
    const results = await readJsonLines<RowResult>(join(out, 'results.jsonl'));
    expect(results.map((r) => [r.row, r.status, r.ensemble?.members.map((m) => m.status)])).toEqual([1, 2, 3, 4].map((row) => [row, 'succeeded', ['succeeded', 'succeeded']]));
    // The members' calls made by the killed process are on record, once each; the cut-off synthesis calls got none.
    const calls = await readJsonLines<CallRecord>(join(out, 'costs.jsonl'));
    expect(calls.filter((c) => c.purpose === 'ensemble_member').map((c) => `${c.row}:${c.model}`).sort()).toEqual(['1:alpha', '1:beta', '2:alpha', '2:beta', '3:alpha', '3:beta', '4:alpha', '4:beta']);
    expect(calls.filter((c) => c.purpose === 'synthesis')).toHaveLength(4);
    const report = JSON.parse(await readFile(join(out, 'report.json'), 'utf8')) as Report;
    expect(report.totals.cost_usd).toBe(calls.reduce((sum, c) => sum + usdToNanos(c.cost_usd!), 0) / 1e9);
  });

  it("rows that failed on members' shut circuits: the summary says until when, since a resume sooner fails them again with no call (QA)", async () => {
    const dir = await tempDir('ensemble-circuit');
    // A provider of its own: the shared one's "down" keeps its circuit closed for the other tests.
    const own = await startSimulator({ latency_ms: 1, models: { down: { fail_status: 503 } } });
    try {
      const config = await writeSimConfig(dir, own.url, { breaker: { failure_threshold: 2, cooldown_ms: 60_000 }, ensembles: { pair: { members: ['alpha', 'down'], synthesizer: 'judge' } } }, MODELS);
      const input = await writePromptsCsv(dir, 6);
      const ran = await runCli(['run', input, '--config', config, '--out', join(dir, 'out'), '--batch-id', 'pair-down', '--model', 'pair', '--concurrency', '1'], h.env());
      expect(ran.code, ran.stderr).toBe(1);
      const results = await readJsonLines<RowResult>(join(dir, 'out', 'results.jsonl'));
      expect(results.every((r) => r.error?.code === 'ensemble_failed')).toBe(true);
      expect(results.some((r) => r.error?.message.includes('circuit open'))).toBe(true);
      // Each member's failure names its model once (QA: "down: down failed: ...").
      expect(results.some((r) => r.error?.message.includes('needed; down failed: '))).toBe(true);
      expect(results.every((r) => !r.error?.message.includes('down: down failed'))).toBe(true);
      expect(ran.stdout).toMatch(/^Circuits open after repeated failures \(the circuit breaker\): down's circuit stays shut until \d\d:\d\d:\d\d UTC \(in [^)]+\)\. A resume sooner passes it over with no call \(breaker\.max_wait_ms is 0\)/m);
    } finally {
      await own.close();
    }
  });
});
