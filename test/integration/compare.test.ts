import { readFile, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parse } from 'csv-parse/sync';
import { describe, expect, it } from 'vitest';
import type { CallRecord, RowResult } from '../../src/output/records.ts';
import type { Report } from '../../src/output/report-json.ts';
import type { RowError } from '../../src/input/row.ts';
import { runCli, spawnCli, waitFor } from '../helpers/cli.ts';
import { readJsonLines, tempDir, writePromptsCsv, writeSimConfig } from '../helpers/files.ts';
import { useSimulatorAndRedis } from '../helpers/harness.ts';

const nanos = (usd: number) => Math.round(usd * 1e9);

describe('run --compare: every prompt put to every named model', () => {
  const h = useSimulatorAndRedis('compare', { latency_ms: 20, latency_jitter_ms: 5, seed: 5 });

  it('answers each record by each model, in order, the ids paired; the judge compares them pairwise, and the costs add up', async () => {
    const dir = await tempDir('compare');
    const config = await writeSimConfig(dir, h.sim.url, {}, ['fast', 'slow', 'judge']);
    // Record 4 has no prompt (invalid), record 6 names its own model: each is one row, the other number of it vacant.
    const lines = ['id,prompt,model,expected'];
    for (let r = 1; r <= 8; r++) lines.push(`q${r},${r === 4 ? '' : `"What is ${r} + ${r}?"`},${r === 6 ? 'slow' : ''},${2 * r}`);
    const input = join(dir, 'in.csv');
    await writeFile(input, `${lines.join('\n')}\n`);
    const out = join(dir, 'out');
    const ran = await runCli(['run', input, '--config', config, '--out', out, '--batch-id', 'cmp', '--compare', 'fast,slow', '--judge', 'judge'], h.env());
    expect(ran.code, ran.stdout + ran.stderr).toBe(1); // the invalid record
    // Said once, with its counts, once the file is read (QA: an earlier "Comparison: each row ..." line said it twice).
    expect(ran.stdout.match(/^Comparison: /gm)).toHaveLength(1);
    expect(ran.stdout).toContain('Comparison: 6 prompts, each put to all 2 models (fast, slow): 12 rows, one per prompt and model (numbered as if the file held each record once per model).');
    expect(ran.stdout).toContain('Note: 1 record names its own model (the first on line 7): answered by it alone, once, and not compared');
    expect(ran.stdout).toMatch(/\nCompared +6 prompts, each put to all 2 models \(fast, slow\): 12 rows\n/);

    const results = await readJsonLines<RowResult>(join(out, 'results.jsonl'));
    // Record r's k-th model is row (r-1)*2+k; record 4's rows are none, record 6's is slow's row 12 alone.
    const expected = [1, 2, 3, 5, 7, 8].flatMap((r) => [{ row: 2 * r - 1, id: `q${r}`, model: 'fast' }, { row: 2 * r, id: `q${r}`, model: 'slow' }]);
    expected.splice(8, 0, { row: 12, id: 'q6', model: 'slow' });
    expect(results.map((r) => ({ row: r.row, id: r.id, model: r.model }))).toEqual(expected);
    expect(results.every((r) => r.status === 'succeeded' && typeof r.judge?.score === 'number')).toBe(true);
    // A compared row says it was put to its model; the record that named its own says so (QA: both read `row model "..."`, so a spreadsheet could not tell them apart).
    expect(results.map((r) => r.route_reason)).toEqual(expected.map((r) => (r.id === 'q6' ? 'row model "slow"' : `compared model "${r.model}"`)));
    // results.csv in the same order.
    const csvIds = (await readFile(join(out, 'results.csv'), 'utf8')).trim().split('\n').slice(1).map((line) => line.split(',')[1]);
    expect(csvIds).toEqual(expected.map((r) => String(r.row)));

    // The invalid record is written once, with its line in the file.
    const errors = await readJsonLines<RowError>(join(out, 'errors.jsonl'));
    expect(errors).toEqual([expect.objectContaining({ row: 7, line: 5, id: 'q4', code: 'missing_prompt' })]);

    const report = JSON.parse(await readFile(join(out, 'report.json'), 'utf8')) as Report;
    expect(report.compare).toEqual({ models: ['fast', 'slow'], prompts: 6 });
    expect(report.totals).toMatchObject({ rows: 13, succeeded: 13, invalid_rows: 1 });
    expect(report.models.fast!.rows).toBe(6);
    expect(report.models.slow!.rows).toBe(7);
    // Paired on the six prompts both answered (q6, answered by slow alone, pairs with nothing).
    const scoreOf = (id: string, model: string) => results.find((r) => r.id === id && r.model === model)!.judge!.score!;
    const differences = [1, 2, 3, 5, 7, 8].map((r) => scoreOf(`q${r}`, 'fast') - scoreOf(`q${r}`, 'slow'));
    expect(report.judge?.paired).toEqual([
      expect.objectContaining({ a: 'fast', b: 'slow', prompts: 6, a_better: differences.filter((d) => d > 0).length, b_better: differences.filter((d) => d < 0).length }),
    ]);
    const markdown = await readFile(join(out, 'report.md'), 'utf8');
    expect(markdown).toContain('- Comparison: 6 prompts, each put to all 2 models (fast, slow): 12 rows');
    expect(markdown).toContain('## Judge: models compared on the same prompts');

    // compare.csv: one line per record, the models' answers side by side (QA: lining them up in a spreadsheet took a pivot of results.csv).
    expect(ran.stdout).toContain(`${join(out, 'compare.csv')} (the compared models' answers side by side)`);
    const compared = parse(await readFile(join(out, 'compare.csv'), 'utf8')) as string[][];
    // The prompt beside the id (QA: a reader had to join results.csv to the input file by id to see what was asked).
    expect(compared[0]).toEqual(['id', 'prompt', 'fast', 'fast score', 'fast cost_usd', 'fast latency_ms', 'fast error', 'slow', 'slow score', 'slow cost_usd', 'slow latency_ms', 'slow error', 'expected']);
    // Each model's cells as results.csv has them.
    const csvRows = parse(await readFile(join(out, 'results.csv'), 'utf8'), { columns: true }) as Record<string, string>[];
    const cellsOf = (id: string, model: string) => {
      const r = csvRows.find((row) => row.id === id && row.model === model);
      return r ? [r.output!, r.judge_score!, r.cost_usd!, r.latency_ms!, ''] : ['', '', '', '', ''];
    };
    // Record 4 was invalid (no line); record 6 named slow, its own model: its line has slow's answer alone.
    expect(compared.slice(1)).toEqual([1, 2, 3, 5, 6, 7, 8].map((r) => [`q${r}`, `What is ${r} + ${r}?`, ...cellsOf(`q${r}`, 'fast'), ...cellsOf(`q${r}`, 'slow'), String(2 * r)]));

    // Every call is in costs.jsonl, under its row: the answers, one per row and model, and the judge's; they sum to the report's cost.
    const calls = await readJsonLines<CallRecord>(join(out, 'costs.jsonl'));
    expect(calls.reduce((sum, call) => sum + nanos(call.cost_usd ?? 0), 0)).toBe(nanos(report.totals.cost_usd));
    const answered = calls.filter((c) => c.status === 'succeeded' && c.purpose !== 'judge');
    expect(answered.map((c) => [c.row, c.model]).sort((a, b) => Number(a[0]) - Number(b[0]))).toEqual(expected.map((r) => [r.row, r.model]));

    // The batch keeps its list: status says it, a resume goes on with it and pays for nothing again.
    expect(JSON.parse((await h.redis.hget(`${h.prefix}:batch:{cmp}`, 'compare'))!)).toEqual(['fast', 'slow']);
    expect((await runCli(['status', 'cmp'], h.env())).stdout).toContain('rows that name no model go to each of fast, slow (--compare)');
    const again = await runCli(['run', '--resume', 'cmp'], h.env());
    // Records, then the rows they make (QA: "Read 878 rows" for a 300-record file counted each model's copy).
    expect(again.stdout).toContain('Read 8 records: 7 valid, 1 invalid (see errors.jsonl); they make 13 rows (each record put to the 2 compared models, one row per model, unless it names its own), 13 already done; 0 queued');
    expect((await readJsonLines<CallRecord>(join(out, 'costs.jsonl'))).length).toBe(calls.length);

    // The record given its prompt and its own model cleared: its rows join the comparison, the others are kept.
    await writeFile(input, `${lines.join('\n').replace('q4,,', 'q4,"What is 4 + 4?",').replace('"What is 6 + 6?",slow', '"What is 6 + 6?",')}\n`);
    const fixed = await runCli(['run', '--resume', 'cmp'], h.env());
    expect(fixed.code, fixed.stdout + fixed.stderr).toBe(0);
    expect(fixed.stdout).toContain('Comparison: 8 prompts, each put to all 2 models (fast, slow): 16 rows');
    const all = await readJsonLines<RowResult>(join(out, 'results.jsonl'));
    expect(all.map((r) => [r.row, r.id, r.model])).toEqual([1, 2, 3, 4, 5, 6, 7, 8].flatMap((r) => [[2 * r - 1, `q${r}`, 'fast'], [2 * r, `q${r}`, 'slow']]));
    // Only the new rows were called: q4's two, q6's fast one (its slow one, row 12, is the same request as before: its answer is kept).
    const newCalls = (await readJsonLines<CallRecord>(join(out, 'costs.jsonl'))).slice(calls.length).filter((c) => c.purpose !== 'judge' && c.status === 'succeeded');
    expect(newCalls.map((c) => c.row).sort((a, b) => a - b)).toEqual([7, 8, 11]);
  });

  it("counts compare.csv's prompts longer than an Excel cell, and a report collect writes again from the files keeps them (it left them out)", async () => {
    const dir = await tempDir('compare-long');
    const config = await writeSimConfig(dir, h.sim.url, {}, ['fast', 'slow']);
    const long = `Summarise: ${'lorem ipsum '.repeat(2_800)}`.trim();
    const input = join(dir, 'in.csv');
    await writeFile(input, `id,prompt\nshort,"What is 2 + 2?"\nlong,"${long}"\n`);
    const out = join(dir, 'out');
    const ran = await runCli(['run', input, '--config', config, '--out', out, '--batch-id', 'cmp-long', '--compare', 'fast,slow'], h.env());
    expect(ran.code, ran.stdout + ran.stderr).toBe(0);
    const reportOf = async () => (JSON.parse(await readFile(join(out, 'report.json'), 'utf8')) as Report).compare;
    const written = { models: ['fast', 'slow'], prompts: 2, long_prompts: { rows: 1, first_id: 'long', longest_chars: long.length } };
    expect(await reportOf()).toEqual(written);
    for (const file of ['report.json', 'report.md']) await unlink(join(out, file));
    const collected = await runCli(['collect', 'cmp-long'], h.env());
    expect(collected.code, collected.stdout + collected.stderr).toBe(0);
    expect(await reportOf()).toEqual(written);
    expect(await readFile(join(out, 'report.md'), 'utf8')).toContain('- Long prompts: 1 prompt over 32,767 characters');
  });

  it('kill -9 mid-comparison, then --resume: every row of every model is there once, none paid twice', async () => {
    const dir = await tempDir('compare-kill');
    const config = await writeSimConfig(dir, h.sim.url, { queue: { lock_ms: 60_000 } });
    const input = await writePromptsCsv(dir, 200);
    const out = join(dir, 'out');
    const first = spawnCli(['run', input, '--config', config, '--out', out, '--batch-id', 'cmp-kill', '--compare', 'slow,fast', '--concurrency', '16'], h.env());
    await waitFor(async () => (await h.redis.bitcount(`${h.prefix}:batch:{cmp-kill}:finished`)) >= 100, 30_000);
    first.kill('SIGKILL');
    await first.done;

    const resumed = await runCli(['run', '--resume', 'cmp-kill'], h.env());
    expect(resumed.code, resumed.stdout + resumed.stderr).toBe(0);
    expect(resumed.stdout).toMatch(/already done/);
    expect(resumed.stdout).toContain('Comparison: 200 prompts, each put to all 2 models (slow, fast): 400 rows');
    const results = await readJsonLines<RowResult>(join(out, 'results.jsonl'));
    expect(results.map((r) => [r.row, r.id, r.model])).toEqual(Array.from({ length: 200 }, (_, i) => [[2 * i + 1, `r${i + 1}`, 'slow'], [2 * i + 2, `r${i + 1}`, 'fast']]).flat());
    expect(results.every((r) => r.status === 'succeeded')).toBe(true);
    const calls = await readJsonLines<CallRecord>(join(out, 'costs.jsonl'));
    const succeededPerRow = new Map<number, number>();
    for (const call of calls.filter((c) => c.status === 'succeeded')) succeededPerRow.set(call.row, (succeededPerRow.get(call.row) ?? 0) + 1);
    expect([...succeededPerRow].filter(([, n]) => n > 1)).toEqual([]);
    expect(succeededPerRow.size).toBe(400);
    const report = JSON.parse(await readFile(join(out, 'report.json'), 'utf8')) as Report;
    expect(calls.reduce((sum, call) => sum + nanos(call.cost_usd ?? 0), 0)).toBe(nanos(report.totals.cost_usd));
    // compare.csv has each prompt once, both models' answers on its line; deleted, collect writes it again as it was.
    const compareCsv = await readFile(join(out, 'compare.csv'), 'utf8');
    const lines = parse(compareCsv) as string[][];
    expect(lines.slice(1).map((line) => [line[0], line[2] === results[2 * Number(line[0]!.slice(1)) - 2]!.output, line[6] === results[2 * Number(line[0]!.slice(1)) - 1]!.output])).toEqual(Array.from({ length: 200 }, (_, i) => [`r${i + 1}`, true, true]));
    expect(lines.slice(1).every((line) => line[1] !== '')).toBe(true);
    await unlink(join(out, 'compare.csv'));
    const collected = await runCli(['collect', 'cmp-kill'], h.env());
    expect(collected.stdout + collected.stderr).toContain('compare.csv');
    expect(await readFile(join(out, 'compare.csv'), 'utf8')).toBe(compareCsv);

    // A record edited since it was answered: its line keeps its answers, but not a prompt they were not given.
    const text = await readFile(input, 'utf8');
    const edited = text.split('\n');
    const firstRecord = parse(edited[1]!) as string[][];
    edited[1] = edited[1]!.replace(firstRecord[0]![1]!, 'An edited prompt');
    await writeFile(input, edited.join('\n'));
    await unlink(join(out, 'compare.csv'));
    await runCli(['collect', 'cmp-kill'], h.env());
    const afterEdit = parse(await readFile(join(out, 'compare.csv'), 'utf8')) as string[][];
    expect(afterEdit[1]!.slice(0, 2)).toEqual(['r1', '']);
    expect(afterEdit[2]![1]).toBe(lines[2]![1]);
    // The file gone: compare.csv is written all the same, its prompts empty.
    await unlink(input);
    await unlink(join(out, 'compare.csv'));
    expect((await runCli(['collect', 'cmp-kill'], h.env())).code).toBe(0);
    const withoutFile = parse(await readFile(join(out, 'compare.csv'), 'utf8')) as string[][];
    expect(withoutFile.slice(1).map((line) => line[1])).toEqual(Array.from({ length: 200 }, () => ''));
  });

  it('estimates each compared model in a dry run, and counts every model\'s calls against the budget', async () => {
    const dir = await tempDir('compare-dry');
    const config = await writeSimConfig(dir, h.sim.url);
    const input = await writePromptsCsv(dir, 5);
    const dry = await runCli(['run', input, '--config', config, '--compare', 'fast,slow', '--dry-run'], h.env());
    expect(dry.code, dry.stdout + dry.stderr).toBe(0);
    expect(dry.stdout).toContain('Comparison: 5 prompts, each put to all 2 models (fast, slow): 10 rows, one per prompt and model (numbered as if the file held each record once per model).');
    expect(dry.stdout.match(/^Comparison: /gm)).toHaveLength(1);
    expect(dry.stdout).toContain('10 rows routed, 0 invalid');
    expect(dry.stdout).toMatch(/\nCompared model +Rows +Input tokens/);
    expect(dry.stdout).toMatch(/\nfast +5 /);
    expect(dry.stdout).toMatch(/\nslow +5 /);

    // A budget that holds the cheap model's five calls and not the dearer one's too: the run stops at it, whatever the order of the models.
    const cost = (model: string) => Number(new RegExp(`\\n${model} +5 +[\\d,]+ +[\\d,]+ +\\$([\\d.]+)`).exec(dry.stdout)![1]);
    expect(cost('slow')).toBeGreaterThan(cost('fast'));
    const budget = await runCli(['run', input, '--config', config, '--out', join(dir, 'out'), '--compare', 'fast,slow', '--budget', String(cost('fast') / 4)], h.env());
    expect(budget.code).toBe(1);
    expect(budget.stdout).toMatch(/budget_exceeded/);
  });

  it('says that a comparison with the answer cache on compares the models afresh only with --no-cache (QA: a nightly rerun compared $0 and 0 ms answers, unsaid)', async () => {
    const dir = await tempDir('compare-cache');
    const config = await writeSimConfig(dir, h.sim.url, { cache: { ttl_hours: 1 } });
    const input = await writePromptsCsv(dir, 2);
    const cached = await runCli(['run', input, '--config', config, '--out', join(dir, 'out-cached'), '--compare', 'fast,slow'], h.env());
    expect(cached.code, cached.stdout + cached.stderr).toBe(0);
    expect(cached.stdout).toContain("Note: this comparison runs with the answer cache on: a prompt a model answered before gets that answer back at $0 and in no time, so the models' costs and latencies compare only over the prompts new to them. To compare the models afresh, give --no-cache.");
    const afresh = await runCli(['run', input, '--config', config, '--out', join(dir, 'out-afresh'), '--compare', 'fast,slow', '--no-cache'], h.env());
    expect(afresh.code, afresh.stdout + afresh.stderr).toBe(0);
    expect(afresh.stdout).not.toContain('this comparison runs with the answer cache on');
  });

  it("tells a compared ensemble's rows by their ensemble and route_reason: their model is its synthesizer, which may be compared too", async () => {
    const dir = await tempDir('compare-ensemble');
    const config = await writeSimConfig(dir, h.sim.url, { ensembles: { council: { members: ['fast', 'slow'], synthesizer: 'slow' } } });
    const input = await writePromptsCsv(dir, 2);
    const out = join(dir, 'out');
    const ran = await runCli(['run', input, '--config', config, '--out', out, '--compare', 'slow,council'], h.env());
    expect(ran.code, ran.stdout + ran.stderr).toBe(0);
    const results = await readJsonLines<RowResult>(join(out, 'results.jsonl'));
    // Both rows of a prompt have model "slow" (an ensemble row's is its synthesizer): the route_reason says which was put to which.
    expect(results.map((r) => [r.model, r.ensemble?.name ?? null, r.route_reason.replace(/: \d.*/, '')])).toEqual([
      ['slow', null, 'compared model "slow"'],
      ['slow', 'council', 'compared: ensemble "council"'],
      ['slow', null, 'compared model "slow"'],
      ['slow', 'council', 'compared: ensemble "council"'],
    ]);
  });

  it('refuses an unknown model (with the one meant), fewer than two, one named twice, auto, and --ab or --model beside it', async () => {
    const dir = await tempDir('compare-bad');
    const config = await writeSimConfig(dir, h.sim.url);
    const input = await writePromptsCsv(dir, 2);
    // `early`: refused before the batch id line, as the usage error it is (QA: "Batch <id>" came first, as if a batch had begun).
    const refused = async (args: string[], message: string, early = true) => {
      const ran = await runCli(['run', input, ...(args.includes('--config') ? [] : ['--config', config]), ...args], h.env());
      expect(ran.code, ran.stdout + ran.stderr).toBe(2);
      expect(ran.stderr).toContain(message);
      if (early) {
        expect(ran.stdout).toBe('');
        expect(ran.stderr).not.toContain('was not created');
      }
    };
    await refused(['--compare', 'fast,slwo'], '--compare: "slwo" is not in the config (did you mean "slow"?); models and ensembles: fast, slow');
    await refused(['--compare', 'fast'], '--compare needs two models or more (models or ensembles), e.g. deepseek-v4-flash,deepseek-v4-pro (to send every row to fast, give --model fast)');
    await refused(['--compare', 'fast,slow,fast'], '--compare: "fast" is named twice; each model is compared once');
    await refused(['--compare', 'auto,slow'], '--compare: auto (routing by task type) is not a model to compare');
    await refused(['--compare', 'fast,slow', '--ab', 'fast,slow'], 'give --compare alone, without --ab, --model or --route');
    await refused(['--compare', 'fast,slow', '--model', 'fast'], 'give --compare alone, without --ab, --model or --route');
    await refused(['--compare', 'fast,slow', '--dry-run', '--route', 'auto'], 'give --compare alone, without --ab, --model or --route');
    await refused(['--ab', 'fast,slwo'], '--ab: "slwo" is not in the config (did you mean "slow"?)');
    await refused(['--ab', 'fast,slow', '--model', 'slow'], 'give either --ab or --model <model>');
    await refused(['--model', 'slwo'], '--model/--route "slwo" is not in the config');
    await refused(['--compare', 'fast,slow', '--judge', 'jugde'], '--judge "jugde" is not a model in the config');
    // Without --config, against the built-in models, before their simulator starts.
    const batchKeys = async () => (await h.redis.keys(`${h.prefix}:batch:*`)).length;
    const keysBefore = await batchKeys();
    const builtIn = await runCli(['run', input, '--compare', 'deepseek-v4-flash,deepseek-v4-prro'], h.env());
    expect(builtIn.code).toBe(2);
    expect(builtIn.stdout).toBe('');
    expect(builtIn.stderr).toContain('"deepseek-v4-prro" is not a built-in model');
    expect(await batchKeys()).toBe(keysBefore);

    // A batch run without --compare cannot take it up; one run with it keeps its list.
    expect((await runCli(['run', input, '--config', config, '--out', join(dir, 'plain'), '--batch-id', 'plain'], h.env())).code).toBe(0);
    await refused(['--batch-id', 'plain', '--compare', 'fast,slow'], 'batch plain was run without --compare, one row for each record of its file', false);
    expect((await runCli(['run', input, '--config', config, '--out', join(dir, 'compared'), '--batch-id', 'compared', '--compare', 'fast,slow'], h.env())).code).toBe(0);
    await refused(['--batch-id', 'compared', '--compare', 'slow,fast'], 'batch compared compares fast,slow, not slow,fast: its rows\' numbers say which model answers each', false);
    await refused(['--batch-id', 'compared', '--ab', 'fast,slow'], 'batch compared compares fast,slow (--compare): --ab, --model and --route cannot go on with it', false);
    // Named by --batch-id without --config: read against the config the batch runs on (its own, from Redis; the built-in models' for a new one), still before its id.
    const named = await runCli(['run', input, '--batch-id', 'compared', '--compare', 'fast,slwo'], h.env());
    expect(named.code, named.stdout + named.stderr).toBe(2);
    expect(named.stdout).toBe('');
    expect(named.stderr).toContain('--compare: "slwo" is not in the config (did you mean "slow"?)');
    const fresh = await runCli(['run', input, '--batch-id', 'compare-fresh', '--ab', 'deepseek-v4-flash,deepseek-v4-prro'], h.env());
    expect(fresh.code, fresh.stdout + fresh.stderr).toBe(2);
    expect(fresh.stdout).toBe('');
    expect(fresh.stderr).toContain('--ab: "deepseek-v4-prro" is not a built-in model');
    expect(await h.redis.exists(`${h.prefix}:batch:{compare-fresh}`)).toBe(0);

    // An OpenAI Batch file's lines are answered once per custom_id.
    const batchFile = join(dir, 'batch.jsonl');
    await writeFile(batchFile, `${JSON.stringify({ custom_id: 'a', method: 'POST', url: '/v1/chat/completions', body: { model: 'fast', messages: [{ role: 'user', content: 'hi' }] } })}\n`);
    const openAi = await runCli(['run', batchFile, '--config', config, '--compare', 'fast,slow'], h.env());
    expect(openAi.code).toBe(2);
    expect(openAi.stderr).toContain('--compare cannot run OpenAI Batch request lines (line 1 has custom_id "a")');
    expect(openAi.stderr).toContain('was not created');
  });
});
