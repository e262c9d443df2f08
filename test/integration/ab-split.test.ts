import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { CallRecord, RowResult } from '../../src/output/records.ts';
import type { Report } from '../../src/output/report-json.ts';
import { abArmFor, parseAbSplit } from '../../src/routing/ab-split.ts';
import { runCli } from '../helpers/cli.ts';
import { readJsonLines, tempDir, writePromptsCsv, writeSimConfig } from '../helpers/files.ts';
import { useSimulatorAndRedis } from '../helpers/harness.ts';

describe('run --ab: an A/B split of the rows between models', () => {
  const h = useSimulatorAndRedis('ab-split', { latency_ms: 1 });

  it('sends each row to the arm its id hashes to, reports the arms side by side, and keeps the split on resume', async () => {
    const dir = await tempDir('ab');
    const config = await writeSimConfig(dir, h.sim.url);
    // Row 40 names its own model: it stays out of the split.
    const input = await writePromptsCsv(dir, 40, { model: (row) => (row === 40 ? 'fast' : undefined) });
    const out = join(dir, 'out');
    const ran = await runCli(['run', input, '--config', config, '--out', out, '--batch-id', 'ab', '--ab', 'fast=3,slow=1'], h.env());
    expect(ran.code, ran.stderr).toBe(0);
    expect(ran.stdout).toContain('A/B split: each row that names no model goes to fast 75%, slow 25%, by its id (the same id, the same model, in every run given these arms in this order).');
    const arms = parseAbSplit('fast=3,slow=1', ['fast', 'slow']);
    const results = await readJsonLines<RowResult>(join(out, 'results.jsonl'));
    for (const result of results.slice(0, 39)) {
      expect(result.model).toBe(abArmFor(result.id, arms));
      expect(result.route_reason).toBe(`A/B arm "${result.model}"`);
    }
    expect(results[39]).toMatchObject({ model: 'fast', route_reason: 'row model "fast"' });
    const report = JSON.parse(await readFile(join(out, 'report.json'), 'utf8')) as Report;
    expect(report.models.fast!.rows + report.models.slow!.rows).toBe(40);
    expect(report.models.slow!.rows).toBeGreaterThan(3);
    // The split itself, so two runs' reports can be checked for the same arms (QA).
    expect(report.ab_split).toEqual(arms);

    const meta = `${h.prefix}:batch:{ab}`;
    expect(JSON.parse((await h.redis.hget(meta, 'ab_split'))!)).toEqual(arms);
    expect((await runCli(['run', '--resume', 'ab'], h.env())).stdout).toContain('A/B split: each row that names no model goes to fast 75%, slow 25%');
    // --route auto goes back to routing: the split is dropped, not left behind for the workers.
    const routed = await runCli(['run', '--resume', 'ab', '--route', 'auto'], h.env());
    expect(routed.stdout).toContain("Note: the batch's split (fast 75%, slow 25%) ends here: a row this run answers goes to the model its task type routes to. The rows answered before keep their arms");
    expect(await h.redis.hget(meta, 'ab_split')).toBeNull();

    // A run going on does not show the last run's finish as its own.
    expect(await h.redis.hget(meta, 'finished_at')).not.toBeNull();
    // (A row added to the file gives the detached run something to queue: with none, it writes the outputs again itself.)
    await writeFile(input, `${await readFile(input, 'utf8')}r41,"Question 41: one more",,topic-6\n`);
    expect((await runCli(['run', '--resume', 'ab', '--config', config, '--detach'], h.env())).code).toBe(0);
    expect(await h.redis.hmget(meta, 'status', 'finished_at')).toEqual(['running', null]);
  });

  it('tests the routing against one model: the arm "auto" routes its rows by task type (classifier calls included), and the report sets the arms side by side', async () => {
    const dir = await tempDir('ab-auto');
    const price = { input_per_mtok: 1, output_per_mtok: 2 };
    const config = await writeSimConfig(dir, h.sim.url, {
      models: { cheap: { provider: 'sim', price }, fast: { provider: 'sim', price }, slow: { provider: 'sim', price: { input_per_mtok: 10, output_per_mtok: 20 } } },
      default_model: 'fast',
      routing: { classifier: 'llm', llm_classifier: { model: 'cheap' }, routes: { complex: ['slow'], simple: ['fast'] } },
    });
    // The simulator's answer echoes the prompt's start: "Complex ..." comes back labelled complex.
    const prompts = Array.from({ length: 40 }, (_, i) => `q${i + 1},${i % 4 === 0 ? 'Complex: design a queue for item ' : 'Simple: what is item '}${i + 1}`);
    const input = join(dir, 'in.csv');
    await writeFile(input, ['id,prompt', ...prompts].join('\n'));
    const out = join(dir, 'out');
    const ran = await runCli(['run', input, '--config', config, '--out', out, '--batch-id', 'ab-auto', '--ab', 'auto,slow', '--judge', 'slow'], h.env());
    expect(ran.code, ran.stderr).toBe(0);
    expect(ran.stdout).toContain('goes to auto (routed by task type) 50%, slow 50%');

    const arms = parseAbSplit('auto,slow', ['cheap', 'fast', 'slow']);
    const results = await readJsonLines<RowResult>(join(out, 'results.jsonl'));
    const calls = await readJsonLines<CallRecord>(join(out, 'costs.jsonl'));
    const routed = results.filter((r) => r.ab_arm === 'auto');
    const pinned = results.filter((r) => r.ab_arm === 'slow');
    expect(routed.length + pinned.length).toBe(40);
    expect(routed.length).toBeGreaterThan(5);
    expect(pinned.length).toBeGreaterThan(5);
    for (const result of results) expect(result.ab_arm).toBe(abArmFor(result.id, arms));
    expect(new Set(routed.map((r) => r.final_model))).toEqual(new Set(['fast', 'slow']));
    for (const result of routed) {
      expect(result.final_model).toBe(result.task_type === 'complex' ? 'slow' : 'fast');
      expect(result.route_reason).toMatch(/^A\/B arm "auto": llm/);
      expect(result.ab_arm).toBe('auto');
    }
    expect(pinned.every((r) => r.final_model === 'slow' && r.route_reason === 'A/B arm "slow"')).toBe(true);
    // Only the routed arm's rows pay for the classifier.
    const classified = new Set(calls.filter((c) => c.purpose === 'classify').map((c) => c.id));
    expect(classified).toEqual(new Set(routed.map((r) => r.id)));

    const report = JSON.parse(await readFile(join(out, 'report.json'), 'utf8')) as Report;
    const nanos = (usd: number) => Math.round(usd * 1e9);
    for (const [arm, rows] of [['auto', routed], ['slow', pinned]] as const) {
      const ids = new Set(rows.map((r) => r.id));
      // Every call of the arm's rows but the judge's, the classifier's included.
      const armNanos = calls.filter((c) => ids.has(c.id) && c.purpose !== 'judge').reduce((sum, c) => sum + nanos(c.cost_usd!), 0);
      expect(report.ab_arms[arm]).toMatchObject({ rows: rows.length, succeeded: rows.length, failed: 0, unpriced_calls: 0, judged_rows: rows.length });
      expect(nanos(report.ab_arms[arm]!.cost_usd)).toBe(armNanos);
      expect(report.ab_arms[arm]!.cost_per_answer_usd).toBeCloseTo(report.ab_arms[arm]!.cost_usd / rows.length, 9); // whole nano-dollars
      // Each cost record names the arm its row was in, the judge's included.
      expect(calls.filter((c) => ids.has(c.id)).every((c) => c.ab_arm === arm)).toBe(true);
      expect(report.ab_arms[arm]!.mean_score).not.toBeNull();
    }
    expect(report.ab_arms.auto!.answered_by).toEqual(Object.fromEntries(['fast', 'slow'].map((m) => [m, routed.filter((r) => r.final_model === m).length]).filter(([, n]) => n !== 0)));
    expect(report.ab_arms.slow!.answered_by).toEqual({ slow: pinned.length });
    const markdown = await readFile(join(out, 'report.md'), 'utf8');
    expect(markdown).toContain('## A/B arms');
    expect(markdown).toMatch(/\| auto \| \d+ \| \d+ \| 0 \| \$/);
    expect(ran.stdout).toMatch(/A\/B arms \(every call of their rows but the judge's\)\n {2}auto +\d+ rows +0 failed/);
    const csvHeader = (await readFile(join(out, 'results.csv'), 'utf8')).split('\n')[0]!;
    expect(csvHeader).toContain(',route_reason,ab_arm,models_tried,');

    const dry = await runCli(['run', input, '--config', config, '--ab', 'auto,slow', '--dry-run'], h.env());
    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.stdout).toMatch(new RegExp(`\\nauto +${routed.length} `));
    expect(dry.stdout).toMatch(new RegExp(`\\nslow +${pinned.length} `));
  });

  it('a resume given another split scores the answers the budget left unscored, each keeping the arm it was answered in', async () => {
    const dir = await tempDir('ab-rescore');
    const cheap = { input_per_mtok: 0.1, output_per_mtok: 0.2 };
    // The judge costs about $0.1 a call, the answers next to nothing: the budget runs out on judging.
    const config = await writeSimConfig(dir, h.sim.url, {
      models: { fast: { provider: 'sim', price: cheap }, lite: { provider: 'sim', price: cheap }, judge: { provider: 'sim', price: { input_per_mtok: 500, output_per_mtok: 500 } } },
      default_model: 'fast',
      max_tokens: 50,
    });
    const input = await writePromptsCsv(dir, 16);
    const out = join(dir, 'out');
    const first = await runCli(['run', input, '--config', config, '--out', out, '--batch-id', 'ab-rescore', '--ab', 'fast,lite', '--judge', 'judge', '--budget', '0.5', '--concurrency', '2'], h.env());
    expect(first.code, first.stderr).toBe(1);
    const before = await readJsonLines<RowResult>(join(out, 'results.jsonl'));
    const unscored = before.filter((r) => r.status === 'succeeded' && r.judge?.score == null);
    expect(unscored.length).toBeGreaterThan(3);

    const resumed = await runCli(['run', '--resume', 'ab-rescore', '--ab', 'lite,fast', '--budget', '100'], h.env());
    expect(resumed.code, resumed.stderr).toBe(0);
    const after = await readJsonLines<RowResult>(join(out, 'results.jsonl'));
    expect(after.every((r) => r.status === 'succeeded' && typeof r.judge?.score === 'number')).toBe(true);
    // Answered before: the same answer, model and arm, now scored.
    for (const row of unscored) expect(after[row.row - 1]).toMatchObject({ output: row.output, final_model: row.final_model, ab_arm: row.ab_arm });
    // The report, status and the API view say the rows answered before ran under the first split (QA: they named the new one alone).
    const report = JSON.parse(await readFile(join(out, 'report.json'), 'utf8')) as Report;
    const split = (...models: string[]) => models.map((model) => ({ model, weight: 0.5 }));
    expect({ now: report.ab_split, before: report.ab_splits_before }).toEqual({ now: split('lite', 'fast'), before: [split('fast', 'lite')] });
    expect(await readFile(join(out, 'report.md'), 'utf8')).toContain('The split changed between runs: rows answered earlier kept their arms of fast 50%, lite 50%; the rows run since follow lite 50%, fast 50%.');
    const status = await runCli(['status', 'ab-rescore'], h.env());
    expect(status.stdout).toMatch(/A\/B split lite 50%, fast 50% \(--ab\); rows answered before kept their arms of fast 50%, lite 50%/);
    const json = await runCli(['status', 'ab-rescore', '--json'], h.env());
    expect(JSON.parse(json.stdout)).toMatchObject({ ab: 'lite=0.5,fast=0.5', ab_before: ['fast=0.5,lite=0.5'] });
    // A report deleted since is written again by collect with the same splits (review: it had neither).
    await rm(join(out, 'report.json'));
    await rm(join(out, 'report.md'));
    const collected = await runCli(['collect', 'ab-rescore'], h.env());
    expect(collected.code, collected.stdout + collected.stderr).toBe(0);
    const rewritten = JSON.parse(await readFile(join(out, 'report.json'), 'utf8')) as Report;
    expect({ now: rewritten.ab_split, before: rewritten.ab_splits_before }).toEqual({ now: split('lite', 'fast'), before: [split('fast', 'lite')] });
    expect(await readFile(join(out, 'report.md'), 'utf8')).toContain('The split changed between runs: rows answered earlier kept their arms of fast 50%, lite 50%; the rows run since follow lite 50%, fast 50%.');
  });

  it('says so when no row took part in the split, every row naming its own model', async () => {
    const dir = await tempDir('ab-none');
    const config = await writeSimConfig(dir, h.sim.url);
    const input = await writePromptsCsv(dir, 3, { model: () => 'fast' });
    const ran = await runCli(['run', input, '--config', config, '--out', join(dir, 'out'), '--ab', 'fast,slow'], h.env());
    expect(ran.code, ran.stderr).toBe(0);
    expect(ran.stdout).toContain('Note: no row went to an A/B arm: every row names its own model (its model column or field), which --ab leaves as it is.');
  });

  it('refuses a split naming an unknown model, or given with --model', async () => {
    const dir = await tempDir('ab-bad');
    const config = await writeSimConfig(dir, h.sim.url);
    const input = await writePromptsCsv(dir, 2);
    const unknown = await runCli(['run', input, '--config', config, '--ab', 'fast,fastest'], h.env());
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('--ab: "fastest" is not in the config; models and ensembles: fast, slow');
    const both = await runCli(['run', input, '--config', config, '--ab', 'fast,slow', '--model', 'fast'], h.env());
    expect(both.code).toBe(2);
    expect(both.stderr).toContain('give either --ab or --model <model> (or --route <model>), not both (an arm of --ab may be auto, routed by task type)');
  });
});
