import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parse } from 'csv-parse/sync';
import { describe, expect, it } from 'vitest';
import { usdToNanos } from '../../src/models/pricing.ts';
import type { CallRecord, RowResult } from '../../src/output/records.ts';
import type { Report } from '../../src/output/report-json.ts';
import { killRunThenResume, runCli, spawnCli, waitFor } from '../helpers/cli.ts';
import { readJsonLines, tempDir, writeSimConfig } from '../helpers/files.ts';
import { useSimulatorAndRedis } from '../helpers/harness.ts';
import { startSimulator } from '../../src/sim/server.ts';

const sim = (price: number, extra: Record<string, unknown> = {}) => ({ provider: 'sim', price: { input_per_mtok: price, output_per_mtok: 2 * price }, ...extra });

/** Rows with a reference answer in `expected`, the column a judge reads by default. */
async function writeQuestions(dir: string, rows: number): Promise<string> {
  const lines = ['id,prompt,expected'];
  for (let row = 1; row <= rows; row++) lines.push(`q${row},"What is ${row} + ${row}?",${2 * row}`);
  const path = join(dir, 'questions.csv');
  await writeFile(path, `${lines.join('\n')}\n`);
  return path;
}

const nanosOf = (calls: readonly CallRecord[]) => calls.reduce((sum, call) => sum + usdToNanos(call.cost_usd!), 0);

describe('a judge scores every answer', () => {
  const h = useSimulatorAndRedis('judge', { latency_ms: 3 });

  it('scores each answered row of an A/B run, arms and ensemble alike, keeps its calls out of the row figures, and reports each arm\'s mean', async () => {
    h.sim.reset();
    const dir = await tempDir('judge');
    // The judge allows 10 calls a second: most rows wait for it parked, the answer kept meanwhile.
    const config = await writeSimConfig(dir, h.sim.url, {
      models: { flash: sim(0.1), pro: sim(0.5), judge: sim(2, { rpm: 600 }) },
      default_model: 'flash',
      ensembles: { council: { members: ['flash', 'pro'], synthesizer: 'pro' } },
      judge: { model: 'judge', criteria: 'the right number' },
    });
    const input = await writeQuestions(dir, 12);
    const out = join(dir, 'out');
    const ran = await runCli(['run', input, '--config', config, '--out', out, '--ab', 'flash,pro,council'], h.env());
    expect(ran.code, ran.stdout + ran.stderr).toBe(0);

    const results = await readJsonLines<RowResult>(join(out, 'results.jsonl'));
    const calls = await readJsonLines<CallRecord>(join(out, 'costs.jsonl'));
    expect(results).toHaveLength(12);
    for (const result of results) {
      expect(result.status).toBe('succeeded');
      expect(result.judge).toMatchObject({ model: 'judge', final_model: 'judge', reason: expect.any(String) });
      expect(Number.isInteger(result.judge!.score) && result.judge!.score! >= 1 && result.judge!.score! <= 10).toBe(true);
      const own = calls.filter((call) => call.row === result.row);
      const judged = own.filter((call) => call.purpose === 'judge');
      expect(judged.map((call) => [call.model, call.status])).toEqual([['judge', 'succeeded']]);
      // The row's own figures are its answer's; the judge's cost is beside them.
      expect(usdToNanos(result.cost_usd!)).toBe(nanosOf(own.filter((call) => call.purpose !== 'judge')));
      expect(usdToNanos(result.judge!.cost_usd!)).toBe(nanosOf(judged));
      expect(result.attempts).toBe(own.filter((call) => call.purpose !== 'judge').length);
    }
    // Each row answered once (an ensemble row by its two members and a synthesis), though most were parked for the judge.
    const stats = h.sim.stats().models;
    const ensembleRows = results.filter((r) => r.ensemble).length;
    expect(stats.judge?.requests).toBe(12);
    expect((stats.flash?.requests ?? 0) + (stats.pro?.requests ?? 0)).toBe(12 + 2 * ensembleRows);

    const report = JSON.parse(await readFile(join(out, 'report.json'), 'utf8')) as Report;
    expect(report.totals.cost_usd).toBe(nanosOf(calls) / 1e9);
    expect(report.extra_calls).toMatchObject({ judge_calls: 12, retry_calls: 0, fallback_calls: 0 });
    expect(report.judge).toMatchObject({ model: 'judge', rows_scored: 12, rows_unscored: 0 });
    const meanOf = (rows: RowResult[]) => Math.round((rows.reduce((sum, r) => sum + r.judge!.score!, 0) / rows.length) * 100) / 100;
    for (const model of ['flash', 'pro']) {
      const rows = results.filter((r) => r.model === model && !r.ensemble); // a synthesis scores under its ensemble
      expect(report.models[model]).toMatchObject({ judged_rows: rows.length, mean_score: rows.length > 0 ? meanOf(rows) : null });
    }
    const councilRows = results.filter((r) => r.ensemble);
    expect(report.ensembles.council).toMatchObject({ judged_rows: councilRows.length, mean_score: councilRows.length > 0 ? meanOf(councilRows) : null });
    expect(ran.stdout).toMatch(/^Judge +12 rows scored by judge, mean [\d.]+ ± [\d.]+ of 10; 12 calls \(\$[\d.]+\)$/m);
    expect(await readFile(join(out, 'report.md'), 'utf8')).toContain('| Score (rows) |');

    const csv = parse(await readFile(join(out, 'results.csv'), 'utf8'), { columns: true }) as Array<Record<string, string>>;
    expect(csv.map((row) => Number(row['judge_score']))).toEqual(results.map((r) => r.judge!.score));
    expect(csv.every((row) => row['expected'] !== '')).toBe(true);
  });

  it('takes the judge from --judge too, keeps it for a resume, and estimates its calls in a dry run', async () => {
    h.sim.reset();
    const dir = await tempDir('judge-flag');
    const config = await writeSimConfig(dir, h.sim.url, { models: { flash: sim(0.1), judge: sim(2) }, default_model: 'flash' });
    const input = await writeQuestions(dir, 5);
    const dry = await runCli(['run', input, '--config', config, '--dry-run', '--judge', 'judge'], h.env());
    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.stdout).toMatch(/^judge \(judge\) +5 /m);
    expect(dry.stdout).toContain('a judge judge call per row included');
    // A judge without a price leaves the answers' estimate standing, and is said apart (review: "n/a", "5 rows on unpriced models").
    const unpricedJudge = await writeSimConfig(await tempDir('judge-unpriced'), h.sim.url, { models: { flash: sim(0.1), judge: { provider: 'sim' } }, default_model: 'flash' });
    const dryUnpriced = await runCli(['run', input, '--config', unpricedJudge, '--dry-run', '--judge', 'judge'], h.env());
    expect(dryUnpriced.stdout).toMatch(/^Estimated cost: at most \$[\d.]+ as counted here \(input tokens by the o200k tokenizer, which a model with a tokenizer of its own may count higher; output at max_tokens; retries and fallbacks not included; the judge judge has no price: its calls are not in it\)$/m);
    // Given --resume, it says it reads no batch, rather than estimate a fresh one as if it were the resume (QA).
    const dryResume = await runCli(['run', input, '--config', config, '--dry-run', '--judge', 'judge', '--resume', 'some-batch'], h.env());
    expect(dryResume.stdout.split('\n')[0]).toBe(
      `Note: --dry-run reads no batch: this estimates ${input} as a new batch, with the options given here, not some-batch's split, comparison, judge or config. A resume pays only for the rows it runs (not those that succeeded), and adding a judge only for its calls (the Judge line below).`,
    );

    const out = join(dir, 'out');
    const ran = await runCli(['run', input, '--config', config, '--out', out, '--batch-id', 'judged-flag', '--judge', 'judge'], h.env());
    expect(ran.code, ran.stdout + ran.stderr).toBe(0);
    expect(ran.stdout).toContain('Judge: judge scores every answer from 1 to 10 (against the "expected" field where a row has one).');
    expect((await readJsonLines<RowResult>(join(out, 'results.jsonl'))).every((r) => r.judge?.score !== null && r.judge?.model === 'judge')).toBe(true);
    // A resume without the flag still judges: the rows of an edited file run again, and are scored.
    await writeFile(input, (await readFile(input, 'utf8')).replace('What is 1 + 1?', 'What is one plus one?'));
    const resumed = await runCli(['run', '--resume', 'judged-flag', '--config', config], h.env());
    expect(resumed.code, resumed.stdout + resumed.stderr).toBe(0);
    expect(resumed.stdout).toContain('Judge: judge scores every answer');
    const results = await readJsonLines<RowResult>(join(out, 'results.jsonl'));
    expect(results[0]?.judge?.score).toEqual(expect.any(Number));
    expect(h.sim.stats().models.judge?.requests).toBe(6);

    const wrong = await runCli(['run', input, '--config', config, '--judge', 'critic'], h.env());
    expect(wrong.code).toBe(2);
    expect(wrong.stderr).toContain('--judge "critic" is not a model in the config; models: flash, judge');
  });

  it('a judge added to a batch, or changed, scores the answers it has without answering them again', async () => {
    h.sim.reset();
    const dir = await tempDir('judge-changed');
    const config = await writeSimConfig(dir, h.sim.url, { models: { flash: sim(0.1), judge: sim(2), critic: sim(1) }, default_model: 'flash' });
    const input = await writeQuestions(dir, 6);
    const out = join(dir, 'out');
    const unjudged = await runCli(['run', input, '--config', config, '--out', out, '--batch-id', 'judge-later'], h.env());
    expect(unjudged.code, unjudged.stderr).toBe(0);
    const answers = (await readJsonLines<RowResult>(join(out, 'results.jsonl'))).map((r) => r.output);

    const added = await runCli(['run', '--resume', 'judge-later', '--judge', 'judge'], h.env());
    expect(added.code, added.stdout + added.stderr).toBe(0);
    expect(added.stdout).toContain('6 answered before but not scored by this judge: scored now, their answers kept; 6 queued');
    let results = await readJsonLines<RowResult>(join(out, 'results.jsonl'));
    expect(results.map((r) => r.output)).toEqual(answers);
    expect(results.every((r) => r.judge?.model === 'judge' && typeof r.judge.score === 'number')).toBe(true);

    const changed = await runCli(['run', '--resume', 'judge-later', '--judge', 'critic'], h.env());
    expect(changed.code, changed.stdout + changed.stderr).toBe(0);
    results = await readJsonLines<RowResult>(join(out, 'results.jsonl'));
    expect(results.map((r) => r.output)).toEqual(answers);
    expect(results.map((r) => r.judge?.model)).toEqual(Array(6).fill('critic'));
    const report = JSON.parse(await readFile(join(out, 'report.json'), 'utf8')) as Report;
    expect(report.judge).toMatchObject({ model: 'critic', rows_scored: 6 });
    // Each answer was paid for once; each judge scored each row once; nothing more.
    const stats = h.sim.stats().models;
    expect([stats.flash?.requests, stats.judge?.requests, stats.critic?.requests]).toEqual([6, 6, 6]);
    const calls = await readJsonLines<CallRecord>(join(out, 'costs.jsonl'));
    expect(calls.filter((c) => c.purpose === 'answer')).toHaveLength(6);
    expect(calls.filter((c) => c.purpose === 'judge')).toHaveLength(12);
    expect(usdToNanos(report.totals.cost_usd)).toBe(nanosOf(calls));

    // The same judge again: nothing to score, nothing paid.
    const again = await runCli(['run', '--resume', 'judge-later'], h.env());
    expect(again.stdout).toContain('6 already done; 0 queued');
    expect(h.sim.stats().models.critic?.requests).toBe(6);

    // The same judge model given other criteria: every answer is scored again under them, none answered again (QA: old scores kept, unsaid).
    await mkdir(join(dir, 'stricter'));
    const stricter = await writeSimConfig(join(dir, 'stricter'), h.sim.url, { models: { flash: sim(0.1), judge: sim(2), critic: sim(1) }, default_model: 'flash', judge: { model: 'critic', criteria: 'One word only.' } });
    const rescored = await runCli(['run', '--resume', 'judge-later', '--config', stricter], h.env());
    expect(rescored.code, rescored.stdout + rescored.stderr).toBe(0);
    expect(rescored.stdout).toContain("Note: the judge's instructions (judge.criteria or judge.reference_column) changed since the batch's last run: every answer is scored again by critic under them, without being answered again.");
    expect(rescored.stdout).toContain('6 answered before but not scored by this judge: scored now, their answers kept; 6 queued');
    expect([h.sim.stats().models.flash?.requests, h.sim.stats().models.critic?.requests]).toEqual([6, 12]);
    expect((await readJsonLines<RowResult>(join(out, 'results.jsonl'))).map((r) => r.output)).toEqual(answers);
    // Unchanged since: nothing more.
    expect((await runCli(['run', '--resume', 'judge-later', '--config', stricter], h.env())).stdout).toContain('6 already done; 0 queued');
    expect(h.sim.stats().models.critic?.requests).toBe(12);
  });

  it('a resume that adds a judge, stopped part-way, stays open (exit 130), and its resume scores the rest without answering them again (QA)', async () => {
    h.sim.reset();
    const dir = await tempDir('judge-added-stopped');
    const models = (judgeLimits: Record<string, unknown>) => ({ flash: sim(0.1), judge: sim(2, judgeLimits) });
    const config = await writeSimConfig(dir, h.sim.url, { models: models({}), default_model: 'flash' });
    const input = await writeQuestions(dir, 8);
    const out = join(dir, 'out');
    const unjudged = await runCli(['run', input, '--config', config, '--out', out, '--batch-id', 'judge-added-stop'], h.env());
    expect(unjudged.code, unjudged.stderr).toBe(0);
    // A judge allowed one call a second: most rows still wait for it at the stop.
    await writeSimConfig(dir, h.sim.url, { models: models({ rpm: 60 }), default_model: 'flash', judge: { model: 'judge' } });
    const scoring = spawnCli(['run', '--resume', 'judge-added-stop', '--config', config], h.env());
    await waitFor(async () => (h.sim.stats().models.judge?.requests ?? 0) >= 1, 20_000);
    scoring.kill('SIGINT');
    const stopped = await scoring.done;
    // Before, the rows still waiting for the judge counted as finished from their earlier answers:
    // the batch was closed as complete, exit 0, and the next resume answered them again.
    expect(stopped.code, stopped.stdout + stopped.stderr).toBe(130);
    expect(stopped.stdout).toMatch(/Rows +8 of 8 succeeded, 0 failed; [1-7] rows? not run yet/);
    const status = await runCli(['status', 'judge-added-stop'], h.env());
    expect(status.stdout).toMatch(/judge-added-stop +stopped while running/);

    await writeSimConfig(dir, h.sim.url, { models: models({}), default_model: 'flash', judge: { model: 'judge' } });
    const resumed = await runCli(['run', '--resume', 'judge-added-stop', '--config', config], h.env());
    expect(resumed.code, resumed.stdout + resumed.stderr).toBe(0);
    expect(h.sim.stats().models.flash?.requests).toBe(8);
    const results = await readJsonLines<RowResult>(join(out, 'results.jsonl'));
    expect(results.map((r) => [r.row, typeof r.judge?.score])).toEqual([1, 2, 3, 4, 5, 6, 7, 8].map((row) => [row, 'number']));
    const calls = await readJsonLines<CallRecord>(join(out, 'costs.jsonl'));
    expect(calls.filter((c) => c.purpose === 'answer')).toHaveLength(8);
    expect(calls.filter((c) => c.purpose === 'judge' && c.status === 'succeeded')).toHaveLength(8);
  });

  it('says when the judge also answers rows, and when the rows have no reference answer for it', async () => {
    const dir = await tempDir('judge-notes');
    const config = await writeSimConfig(dir, h.sim.url, { models: { flash: sim(0.1), pro: sim(0.5) }, default_model: 'flash' });
    const input = join(dir, 'no-reference.csv');
    await writeFile(input, 'id,prompt,answer\nq1,What is 2 + 2?,4\n');
    const ran = await runCli(['run', input, '--config', config, '--out', join(dir, 'out'), '--ab', 'flash,pro', '--judge', 'pro'], h.env());
    expect(ran.code, ran.stderr).toBe(0);
    expect(ran.stdout).toContain('Note: the judge, pro, answers rows here too: it scores its own answers (judges tend to favour them)');
    expect(ran.stdout).toContain('Note: the first row has no "expected" field, so the judge scores it without a reference answer (judge.reference_column names the field to use).');

    // A judge that is a fallback of the model rows go to may answer some of them (QA: no note).
    const fallingBack = await writeSimConfig(dir, h.sim.url, { models: { flash: sim(0.1, { fallbacks: ['pro'] }), pro: sim(0.5) }, default_model: 'flash' });
    const routed = await runCli(['run', input, '--config', fallingBack, '--out', join(dir, 'out-fallback'), '--judge', 'pro'], h.env());
    expect(routed.stdout).toContain('Note: the judge, pro, may answer rows here too (a route or a fallback goes to it): it scores its own answers');

    // Rows that each name their model, none the judge: no route the others would take is told of (QA: examples/eval.csv heard "may answer rows here too").
    const routedToJudge = await writeSimConfig(dir, h.sim.url, { models: { flash: sim(0.1), pro: sim(0.5) }, default_model: 'pro' });
    const named = join(dir, 'named.csv');
    await writeFile(named, 'id,model,prompt\nq1,flash,What is 2 + 2?\nq2,flash,What is 3 + 3?\n');
    const ownModels = await runCli(['run', named, '--config', routedToJudge, '--out', join(dir, 'out-named'), '--judge', 'pro'], h.env());
    expect(ownModels.code, ownModels.stderr).toBe(0);
    expect(ownModels.stdout).toContain('Read 2 rows');
    expect(ownModels.stdout).not.toContain('rows here too');
    // The same rows with one left to routing: the note is said once the file is read, after the count.
    await writeFile(named, 'id,model,prompt\nq1,flash,What is 2 + 2?\nq2,,What is 3 + 3?\n');
    const oneRouted = await runCli(['run', named, '--config', routedToJudge, '--out', join(dir, 'out-one-routed'), '--judge', 'pro'], h.env());
    expect(oneRouted.stdout).toMatch(/Read 2 rows[^\n]*\nNote: the judge, pro, may answer rows here too \(a route or a fallback goes to it\)/);

    // A judge with fallbacks scores through them when it fails: another judge, here one that answers the rows (QA: unsaid).
    const judgeFallsBack = await writeSimConfig(dir, h.sim.url, { models: { flash: sim(0.1), pro: sim(0.5, { fallbacks: ['flash'] }) }, default_model: 'flash' });
    const judged = await runCli(['run', input, '--config', judgeFallsBack, '--out', join(dir, 'out-judge-fallback'), '--judge', 'pro'], h.env());
    expect(judged.stdout).toContain(
      "Note: the judge, pro, falls back to flash when it fails: the rows they score get another judge's scores (flash may answer rows here too, and would score its own answers); the report counts them apart. For one judge throughout, give pro no fallbacks in this run's config.",
    );
  });

  it('compares two models that answered the same prompts (a row per model, same id) on those prompts alone', async () => {
    const dir = await tempDir('judge-paired');
    const config = await writeSimConfig(dir, h.sim.url, { models: { flash: sim(0.1), pro: sim(0.5), judge: sim(2) }, default_model: 'flash', judge: { model: 'judge' } });
    const input = join(dir, 'both.csv');
    const lines = ['id,model,prompt,expected'];
    for (let n = 1; n <= 6; n++) for (const model of ['flash', 'pro']) lines.push(`q${n},${model},"What is ${n} + ${n}?",${2 * n}`);
    await writeFile(input, `${lines.join('\n')}\n`);
    const out = join(dir, 'out');
    const ran = await runCli(['run', input, '--config', config, '--out', out], h.env());
    expect(ran.code, ran.stdout + ran.stderr).toBe(0);
    const results = await readJsonLines<RowResult>(join(out, 'results.jsonl'));
    const scoreOf = (id: string, model: string) => results.find((r) => r.id === id && r.model === model)!.judge!.score!;
    const differences = [1, 2, 3, 4, 5, 6].map((n) => scoreOf(`q${n}`, 'flash') - scoreOf(`q${n}`, 'pro'));
    const report = JSON.parse(await readFile(join(out, 'report.json'), 'utf8')) as Report;
    expect(report.judge?.paired).toEqual([
      expect.objectContaining({
        a: 'flash', b: 'pro', prompts: 6,
        a_better: differences.filter((d) => d > 0).length, ties: differences.filter((d) => d === 0).length, b_better: differences.filter((d) => d < 0).length,
        mean_difference: Math.round((differences.reduce((sum, d) => sum + d, 0) / 6) * 100) / 100,
      }),
    ]);
    expect(ran.stdout).toMatch(/^Paired +flash vs pro: 6 prompts, flash better in \d+, tie \d+, pro better in \d+; flash − pro [-+]?[\d.]+ ± [\d.]+$/m);
    expect(await readFile(join(out, 'report.md'), 'utf8')).toContain('## Judge: models compared on the same prompts');
  });

  it('refuses a judge model the config does not have', async () => {
    const dir = await tempDir('judge-config');
    const config = await writeSimConfig(dir, h.sim.url, { judge: { model: 'critic' } });
    const ran = await runCli(['run', await writeQuestions(dir, 1), '--config', config], h.env());
    expect(ran.code).toBe(2);
    expect(ran.stderr).toContain('judge.model: unknown model "critic"');
  });

  /**
   * Runs `rows` questions answered by flash and scored by a judge allowed one call a second, and
   * stops the run (Ctrl-C) once every row is answered and scoring has begun: most rows then wait
   * for the judge, parked with their answers. The config is then rewritten with a judge without
   * a limit, for the resume. Returns the config, the output folder, the stopped run and how many
   * rows it scored.
   */
  async function stopWhileRowsWaitForJudge(batchId: string, rows: number) {
    h.sim.reset();
    const dir = await tempDir(batchId);
    const models = (judgeLimits: Record<string, unknown>) => ({ flash: sim(0.1), pro: sim(0.5), judge: sim(2, judgeLimits) });
    const config = await writeSimConfig(dir, h.sim.url, { models: models({ rpm: 60 }), default_model: 'flash', judge: { model: 'judge' } });
    const out = join(dir, 'out');
    const first = spawnCli(['run', await writeQuestions(dir, rows), '--config', config, '--out', out, '--batch-id', batchId], h.env());
    await waitFor(async () => h.sim.stats().models.flash?.requests === rows && (h.sim.stats().models.judge?.requests ?? 0) >= 1, 20_000);
    first.kill('SIGINT');
    const stopped = await first.done;
    expect(stopped.code, stopped.stdout + stopped.stderr).toBe(130);
    await writeSimConfig(dir, h.sim.url, { models: models({}), default_model: 'flash', judge: { model: 'judge' } });
    return { config, out, stopped, scoredBefore: (await readJsonLines<RowResult>(join(out, 'results.jsonl'))).length };
  }

  it('a run stopped while rows wait for the judge keeps their answers for the resume, which pays only for the scores', async () => {
    const { config, out, stopped, scoredBefore } = await stopWhileRowsWaitForJudge('judge-stopped', 8);
    const carriedRows = await h.redis.hlen(`${h.prefix}:batch:{judge-stopped}:carried`);
    expect(carriedRows).toBeGreaterThan(0);
    expect(stopped.stdout).toMatch(new RegExp(` queued rows? came off the queue \\(${carriedRows} (keeps the answers it|keep the answers they) had for the resume\\)`));

    // Resumed with a faster judge: each row was answered once, in the first run.
    const resumed = await runCli(['run', '--resume', 'judge-stopped', '--config', config], h.env());
    expect(resumed.code, resumed.stdout + resumed.stderr).toBe(0);
    expect(resumed.stdout).toContain(`(${carriedRows} with the answers the stopped run had for them, not paid for again)`);
    expect(h.sim.stats().models.flash?.requests).toBe(8);
    expect(await h.redis.exists(`${h.prefix}:batch:{judge-stopped}:carried`)).toBe(0);

    const results = await readJsonLines<RowResult>(join(out, 'results.jsonl'));
    const calls = await readJsonLines<CallRecord>(join(out, 'costs.jsonl'));
    expect(results.map((r) => [r.row, r.status, typeof r.judge?.score])).toEqual([1, 2, 3, 4, 5, 6, 7, 8].map((row) => [row, 'succeeded', 'number']));
    // Every call on record once: the answers of the carried rows went out when the run stopped, not again with their rows.
    expect(new Set(calls.map((c) => JSON.stringify(c))).size).toBe(calls.length);
    expect(calls.every((c) => !('recorded' in c))).toBe(true);
    for (const result of results) {
      const own = calls.filter((c) => c.row === result.row);
      expect(own.filter((c) => c.purpose === 'answer').map((c) => c.status)).toEqual(['succeeded']);
      expect(own.filter((c) => c.purpose === 'judge' && c.status === 'succeeded')).toHaveLength(1);
      expect(usdToNanos(result.cost_usd!)).toBe(nanosOf(own.filter((c) => c.purpose !== 'judge')));
    }
    const report = JSON.parse(await readFile(join(out, 'report.json'), 'utf8')) as Report;
    expect(report.totals.cost_usd).toBe(nanosOf(calls) / 1e9);
    expect(report.judge).toMatchObject({ rows_scored: 8 });
    // A row is done when scored: those answered by the stopped run and scored now count as this run's.
    expect(report.totals.rows_this_run).toBe(8 - scoredBefore);
  });

  it('a resume given another --model answers the stopped run\'s waiting rows with it, not with the answers left for them', async () => {
    const { config, out, scoredBefore } = await stopWhileRowsWaitForJudge('judge-restarted', 6);
    const resumed = await runCli(['run', '--resume', 'judge-restarted', '--config', config, '--model', 'pro'], h.env());
    expect(resumed.code, resumed.stdout + resumed.stderr).toBe(0);
    expect(resumed.stdout).not.toContain('with the answers the stopped run had');
    expect(h.sim.stats().models.pro?.requests).toBe(6 - scoredBefore);
    expect(await h.redis.exists(`${h.prefix}:batch:{judge-restarted}:carried`)).toBe(0);
    const results = await readJsonLines<RowResult>(join(out, 'results.jsonl'));
    expect(results.filter((r) => r.model === 'pro')).toHaveLength(6 - scoredBefore);
    expect(results.every((r) => typeof r.judge?.score === 'number')).toBe(true);
    const calls = await readJsonLines<CallRecord>(join(out, 'costs.jsonl'));
    const report = JSON.parse(await readFile(join(out, 'report.json'), 'utf8')) as Report;
    expect(report.totals.cost_usd).toBe(nanosOf(calls) / 1e9); // flash's answers left behind are on record, once
    expect(calls.filter((c) => c.model === 'flash' && c.purpose === 'answer')).toHaveLength(6);
  });
});

describe('a judge that fails', () => {
  const h = useSimulatorAndRedis('judge-down', { latency_ms: 2, models: { judge: { fail_status: 503 } } });

  it("a judge whose provider refuses its key: the summary says its fallback scored the answers instead, not that the refusals were an earlier run's (QA)", async () => {
    const dir = await tempDir('judge-refused');
    const keyed = await startSimulator({ latency_ms: 1, api_key: 'right-key' });
    try {
      const config = await writeSimConfig(dir, h.sim.url, {
        providers: { sim: { base_url: h.sim.url }, keyed: { base_url: keyed.url, api_key_env: 'QA_JUDGE_KEY' } },
        models: { flash: sim(0.1), judge: { provider: 'keyed', price: { input_per_mtok: 1, output_per_mtok: 2 }, fallbacks: ['backup'] }, backup: sim(1) },
        default_model: 'flash',
        judge: { model: 'judge' },
      });
      const ran = await runCli(['run', await writeQuestions(dir, 4), '--config', config, '--out', join(dir, 'out'), '--concurrency', '1'], h.env({ QA_JUDGE_KEY: 'wrong-key' }));
      expect(ran.code, ran.stdout + ran.stderr).toBe(0);
      expect(ran.stdout).toMatch(/^Refused by a provider: unauthorized \d+ calls? \(a key or account it would not take\)\. (It was|They were) the judge's \(judge\): its fallbacks scored those answers instead \(4 answers by backup\); the Calls line above says what to check\.$/m);
      expect(ran.stdout).not.toContain('in an earlier run of this batch');
    } finally {
      await keyed.close();
    }
  });

  it('leaves every answer as it was, says why it gave no score, and does not fail the rows (the exit code says the evaluation has gaps)', async () => {
    const dir = await tempDir('judge-down');
    const config = await writeSimConfig(dir, h.sim.url, { models: { flash: sim(0.1), judge: sim(2) }, default_model: 'flash', retry: { max_attempts: 2, base_delay_ms: 1, max_delay_ms: 5 }, judge: { model: 'judge' } });
    const out = join(dir, 'out');
    const ran = await runCli(['run', await writeQuestions(dir, 4), '--config', config, '--out', out], h.env());
    expect(ran.code, ran.stdout + ran.stderr).toBe(1);
    const results = await readJsonLines<RowResult>(join(out, 'results.jsonl'));
    for (const result of results) {
      expect(result).toMatchObject({ status: 'succeeded', model: 'flash', output: expect.any(String) });
      expect(result.judge).toMatchObject({ score: null, final_model: null, error: { code: 'server_error', message: expect.stringContaining('503') } });
      // The judge model has no fallbacks: its own failure, not a chain's (QA).
      expect(result.judge!.error!.message).toMatch(/^judge failed: server_error after 2 attempts; the last call's error: /);
    }
    const report = JSON.parse(await readFile(join(out, 'report.json'), 'utf8')) as Report;
    expect(report.judge).toMatchObject({ rows_scored: 0, mean_score: null, rows_unscored: 4, unscored: { server_error: 4 } });
    expect(report.extra_calls.judge_calls).toBe(8);
    expect(report.totals).toMatchObject({ succeeded: 4, failed: 0 });
    expect(ran.stdout).toMatch(/^Judge +0 rows scored by judge; 4 not scored \(server_error 4\); 8 calls/m);
  });

  it("says what to change when the judge's context window, and its fallbacks', cannot hold the prompt: the judge model's fallbacks, by their config key (QA: \"the chain\")", async () => {
    const dir = await tempDir('judge-narrow');
    const config = await writeSimConfig(dir, h.sim.url, {
      models: { flash: sim(0.1), narrow: sim(2, { context_window: 60, max_output_tokens: 10, fallbacks: ['wider'] }), wider: sim(2, { context_window: 80, max_output_tokens: 10 }) },
      default_model: 'flash',
      judge: { model: 'narrow', max_tokens: 10 },
    });
    const input = join(dir, 'in.jsonl');
    await writeFile(input, `${JSON.stringify({ id: 'long', prompt: 'Tell me about lighthouses. '.repeat(20) })}\n`);
    const out = join(dir, 'out');
    const ran = await runCli(['run', input, '--config', config, '--out', out], h.env());
    expect(ran.code, ran.stdout + ran.stderr).toBe(1);
    const [result] = await readJsonLines<RowResult>(join(out, 'results.jsonl'));
    expect(result).toMatchObject({ status: 'succeeded', judge: { score: null, error: { code: 'no_model_available' } } });
    expect(result!.judge!.error!.message).toMatch(/^no model can take this prompt \(\d+ tokens\): narrow: context window 60 < .*; wider: context window 80 < .*, or add a model with a larger context window to models\.narrow\.fallbacks$/);
  });

  it('a resume scores the answers the judge could not, without answering them again', async () => {
    const dir = await tempDir('judge-rescore');
    // The judge model's upstream name is the one the simulator fails (503); the resume points it at one it answers.
    const settings = (upstream: string) => ({ models: { flash: sim(0.1), critic: sim(2, { upstream }) }, default_model: 'flash', retry: { max_attempts: 2, base_delay_ms: 1, max_delay_ms: 5 }, judge: { model: 'critic' } });
    const config = await writeSimConfig(dir, h.sim.url, settings('judge'));
    const input = await writeQuestions(dir, 4);
    const out = join(dir, 'out');
    const flashBefore = h.sim.stats().models.flash?.requests ?? 0;
    const ran = await runCli(['run', input, '--config', config, '--out', out, '--batch-id', 'rescore'], h.env());
    expect(ran.code, ran.stdout + ran.stderr).toBe(1);
    expect((await readJsonLines<RowResult>(join(out, 'results.jsonl'))).map((r) => r.judge?.error?.code)).toEqual(Array(4).fill('server_error'));
    expect(ran.stdout).toContain('Not scored: 4 answers the judge could not score (judge.error in results.jsonl). Score them without paying for the answers again: switchyard run --resume rescore');

    expect((await runCli(['status', 'rescore'], h.env())).stdout).toContain('  kept      the answers of 4 rows (stopped waiting for a judge or synthesis, not scored, or an ensemble row that failed after some members answered): `switchyard run --resume rescore` goes on from them');

    await writeSimConfig(dir, h.sim.url, settings('sound-judge'));
    const resumed = await runCli(['run', '--resume', 'rescore', '--config', config], h.env());
    expect(resumed.code, resumed.stdout + resumed.stderr).toBe(0);
    expect(resumed.stdout).toContain('4 answered before but not scored by this judge: scored now, their answers kept');
    expect(resumed.stdout).not.toContain('Not scored:');
    const results = await readJsonLines<RowResult>(join(out, 'results.jsonl'));
    expect(results.map((r) => [r.row, r.status, typeof r.judge?.score, r.judge?.error])).toEqual([1, 2, 3, 4].map((row) => [row, 'succeeded', 'number', undefined]));
    expect((h.sim.stats().models.flash?.requests ?? 0) - flashBefore).toBe(4); // answered once, in the first run
    const calls = await readJsonLines<CallRecord>(join(out, 'costs.jsonl'));
    expect(new Set(calls.map((c) => JSON.stringify(c))).size).toBe(calls.length);
    expect(calls.filter((c) => c.purpose === 'answer')).toHaveLength(4);
    expect(calls.filter((c) => c.purpose === 'judge').map((c) => c.status).sort()).toEqual([...Array(8).fill('failed'), ...Array(4).fill('succeeded')]);
    for (const result of results) expect(usdToNanos(result.cost_usd!)).toBe(nanosOf(calls.filter((c) => c.row === result.row && c.purpose === 'answer')));
    const report = JSON.parse(await readFile(join(out, 'report.json'), 'utf8')) as Report;
    expect(report.totals.cost_usd).toBe(nanosOf(calls) / 1e9);
    expect(report.judge).toMatchObject({ rows_scored: 4, rows_unscored: 0 });

    expect((await runCli(['status', 'rescore'], h.env())).stdout).not.toContain('  kept ');
    // Scored, nothing is left to do: another resume runs nothing.
    const again = await runCli(['run', '--resume', 'rescore', '--config', config], h.env());
    expect(again.code).toBe(0);
    expect(again.stdout).toContain('4 already done; 0 queued');
  });
});

describe('a run killed while the judge scores', () => {
  // The judge takes 3 s, so the run can be killed while every row waits for its score.
  const h = useSimulatorAndRedis('judge-kill', { latency_ms: 5, models: { judge: { latency_ms: 3000 } } });

  it('keeps the answers: the resume calls only the judge again', async () => {
    const dir = await tempDir('judge-kill');
    const config = await writeSimConfig(dir, h.sim.url, { models: { flash: sim(0.1), judge: sim(2) }, default_model: 'flash', judge: { model: 'judge' } });
    const input = await writeQuestions(dir, 4);
    const out = join(dir, 'out');
    const killWhen = () => h.sim.stats().models.judge?.requests === 4; // every row waits for its score
    const resumed = await killRunThenResume({ args: [input, '--out', out], batchId: 'killed-judge', config, killWhen }, h.env());
    expect(resumed.code, resumed.stdout + resumed.stderr).toBe(0);
    const stats = h.sim.stats().models;
    expect([stats.flash?.requests, stats.judge?.requests]).toEqual([4, 8]);
    const results = await readJsonLines<RowResult>(join(out, 'results.jsonl'));
    expect(results.map((r) => [r.status, typeof r.judge?.score])).toEqual(Array(4).fill(['succeeded', 'number']));
    const calls = await readJsonLines<CallRecord>(join(out, 'costs.jsonl'));
    expect(calls.map((c) => `${c.row}:${c.purpose}`).sort()).toEqual(['1:answer', '1:judge', '2:answer', '2:judge', '3:answer', '3:judge', '4:answer', '4:judge']);
  });
});
