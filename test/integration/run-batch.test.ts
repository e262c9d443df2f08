import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parse } from 'csv-parse/sync';
import { describe, expect, it } from 'vitest';
import { usdToNanos } from '../../src/models/pricing.ts';
import type { CallRecord, RowResult } from '../../src/output/records.ts';
import type { Report } from '../../src/output/report-json.ts';
import { RESULTS_CSV_COLUMNS } from '../../src/output/results-csv.ts';
import { MAX_CSV_COLUMNS } from '../../src/input/csv-reader.ts';
import { runCli } from '../helpers/cli.ts';
import { readJsonLines, tempDir, writePromptsCsv, writeSimConfig } from '../helpers/files.ts';
import { useSimulatorAndRedis } from '../helpers/harness.ts';

/** results.csv holds the same rows as results.jsonl, in the same order. */
function expectCsvMatchesResults(csv: string, results: RowResult[]): void {
  const rows = parse(csv, { columns: true }) as Array<Record<string, string>>;
  expect(rows.map((r) => [r.id, Number(r.row), r.status, r.model, r.output, r.attempts, r.finish_reason, r.models_tried, r.request_id, r.completed_at, r.topic])).toEqual(
    results.map((r) => [r.id, r.row, r.status, r.model, r.output ?? '', String(r.attempts), r.finish_reason ?? '', r.models_tried.join(' > '), r.request_id ?? '', r.completed_at, String(r.metadata.topic)]),
  );
}

describe('switchyard run, end to end through Redis, BullMQ and the simulator over HTTP', () => {
  const h = useSimulatorAndRedis('run-batch', { failure_rate: 0.15, latency_ms: 2, seed: 42, models: { broken: { fail_status: 400 }, nousage: { omit_usage: true } } });

  it('runs 500 rows with injected failures: every row once, in order, costs adding up to the report', async () => {
    const dir = await tempDir('e2e');
    const config = await writeSimConfig(dir, h.sim.url, {}, ['fast', 'slow', 'broken']);
    const input = await writePromptsCsv(dir, 500, { model: (row) => (row % 100 === 0 ? 'broken' : row % 3 === 0 ? 'slow' : undefined) });
    const out = join(dir, 'out');
    const result = await runCli(['run', input, '--config', config, '--out', out, '--batch-id', 'e2e-500', '--concurrency', '32'], h.env());
    expect(result.stdout.split('\n')[0]).toBe('Batch e2e-500');
    expect(result.code, result.stderr).toBe(1); // the five "broken" rows fail

    const results = await readJsonLines<RowResult>(join(out, 'results.jsonl'));
    expect(results.map((r) => r.row)).toEqual(Array.from({ length: 500 }, (_, i) => i + 1));
    for (const r of results) {
      expect(r.id).toBe(`r${r.row}`);
      expect(r.metadata).toEqual({ topic: `topic-${r.row % 7}` });
      if (r.row % 100 === 0) {
        expect(r).toMatchObject({ status: 'failed', model: 'broken', attempts: 1, error: { code: 'bad_request', http_status: 400 } });
      } else {
        expect(r.status).toBe('succeeded');
        expect(r.model).toBe(r.row % 3 === 0 ? 'slow' : 'fast');
        expect(r.output).toContain(`Question ${r.row}`);
      }
    }

    const calls = await readJsonLines<CallRecord>(join(out, 'costs.jsonl'));
    const failedCalls = calls.filter((c) => c.status === 'failed');
    expect(failedCalls.length).toBeGreaterThan(20); // the injected 500s are recorded, not hidden
    expect(failedCalls.filter((c) => c.http_status === 500).length).toBeGreaterThan(0);
    // Each row's attempts equal its cost records; a retried row has one record per call.
    const callsByRow = new Map<number, CallRecord[]>();
    for (const call of calls) callsByRow.set(call.row, [...(callsByRow.get(call.row) ?? []), call]);
    for (const r of results) {
      const rowCalls = callsByRow.get(r.row) ?? [];
      expect(rowCalls.length).toBe(r.attempts);
      expect(rowCalls.map((c) => c.attempt)).toEqual(rowCalls.map((_, i) => i + 1));
      expect(usdToNanos(r.cost_usd ?? 0)).toBe(rowCalls.reduce((sum, c) => sum + usdToNanos(c.cost_usd ?? 0), 0));
    }

    const report = JSON.parse(await readFile(join(out, 'report.json'), 'utf8')) as Report;
    expect(report.totals).toMatchObject({ rows: 500, succeeded: 495, failed: 5, calls: calls.length, failed_calls: failedCalls.length });
    const costSum = calls.reduce((sum, c) => sum + usdToNanos(c.cost_usd ?? 0), 0);
    expect(usdToNanos(report.totals.cost_usd)).toBe(costSum);
    expect(report.totals.input_tokens).toBe(calls.reduce((sum, c) => sum + c.input_tokens, 0));
    expect(Object.keys(report.models).sort()).toEqual(['broken', 'fast', 'slow']);
    expect(report.models.broken).toMatchObject({ rows: 5, failed: 5, calls: 5 });
    expect(report.errors).toEqual({ bad_request: 5 });

    const csv = await readFile(join(out, 'results.csv'), 'utf8');
    expect(csv.split('\n')[0]).toBe(`${RESULTS_CSV_COLUMNS.join(',')},topic`);
    expectCsvMatchesResults(csv, results);
    expect(await readFile(join(out, 'report.md'), 'utf8')).toContain('495 of 500 rows succeeded');

    // Running the same batch id again is a no-op for rows that succeeded: only the 5 failed rows are retried.
    const before = h.sim.stats();
    const again = await runCli(['run', input, '--config', config, '--out', out, '--batch-id', 'e2e-500'], h.env());
    expect(again.code).toBe(1);
    expect(again.stdout).toContain('495 already done');
    const after = h.sim.stats();
    expect(after.models.broken!.requests - before.models.broken!.requests).toBe(5);
    expect((after.models.fast?.requests ?? 0) - (before.models.fast?.requests ?? 0)).toBe(0);
    const rerun = await readJsonLines<RowResult>(join(out, 'results.jsonl'));
    expect(rerun.map((r) => r.row)).toEqual(results.map((r) => r.row));
    // The re-run's collector resumed from its checkpoint: the CSV keeps each row's newest result,
    // and the report (tallied from the files then) still adds up to every call on record.
    expectCsvMatchesResults(await readFile(join(out, 'results.csv'), 'utf8'), rerun);
    const allCalls = await readJsonLines<CallRecord>(join(out, 'costs.jsonl'));
    const rerunReport = JSON.parse(await readFile(join(out, 'report.json'), 'utf8')) as Report;
    expect(rerunReport.totals).toMatchObject({ rows: 500, succeeded: 495, failed: 5, calls: allCalls.length });
    expect(usdToNanos(rerunReport.totals.cost_usd)).toBe(allCalls.reduce((sum, c) => sum + usdToNanos(c.cost_usd ?? 0), 0));
  });

  it('stops with exit code 2 and the key path on a bad config, before enqueuing anything', async () => {
    const dir = await tempDir('badcfg');
    const config = join(dir, 'bad.yaml');
    await import('node:fs/promises').then((fs) => fs.writeFile(config, 'providers: {sim: {base_url: http://127.0.0.1:1/v1}}\nmodels: {m: {provider: sim, pricee: 1}}\ndefault_model: m\n'));
    const input = await writePromptsCsv(dir, 3);
    const result = await runCli(['run', input, '--config', config, '--batch-id', 'badcfg'], h.env());
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('models.m');
    expect(result.stderr).toContain('"pricee"');
    expect(await h.redis.exists(`${h.prefix}:batch:{badcfg}`)).toBe(0);
  });

  it('a resume runs again the rows edited in the file since they succeeded, and only those', async () => {
    const dir = await tempDir('edited');
    const input = join(dir, 'in.csv');
    const write = (prompts: string[]) => import('node:fs/promises').then((fs) => fs.writeFile(input, `id,prompt\n${prompts.map((p, i) => `r${i + 1},${p}`).join('\n')}\n`));
    await write(['one', 'two', 'three', 'four', 'five']);
    const config = await writeSimConfig(dir, h.sim.url);
    const out = join(dir, 'out');
    expect((await runCli(['run', input, '--config', config, '--out', out, '--batch-id', 'edited'], h.env())).code).toBe(0);

    await write(['one', 'two', 'THREE reworded', 'four', 'five']);
    const resumed = await runCli(['run', '--resume', 'edited'], h.env());
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(resumed.stdout).toContain('4 already done, 1 changed in the file since they succeeded (they run again); 1 queued');
    const results = await readJsonLines<RowResult>(join(out, 'results.jsonl'));
    expect(results.map((r) => r.row)).toEqual([1, 2, 3, 4, 5]);
    expect(results[2]!.output).toContain('THREE reworded');
    const answered = (await readJsonLines<CallRecord>(join(out, 'costs.jsonl'))).filter((c) => c.status === 'succeeded').map((c) => c.row);
    expect(answered.sort()).toEqual([1, 2, 3, 3, 4, 5]); // paid again for the edited row only

    // A row whose id alone changed runs again too: its result would otherwise keep the old id.
    await import('node:fs/promises').then((fs) => fs.writeFile(input, 'id,prompt\nr1,one\nsecond,two\nr3,THREE reworded\nr4,four\nr5,five\n'));
    const renamed = await runCli(['run', '--resume', 'edited'], h.env());
    expect(renamed.stdout).toContain('4 already done, 1 changed in the file since they succeeded (they run again); 1 queued');
    expect((await readJsonLines<RowResult>(join(out, 'results.jsonl'))).map((r) => r.id)).toEqual(['r1', 'second', 'r3', 'r4', 'r5']);

    // A line inserted at the top moves every row: each runs again, none is mixed up with another's answer.
    await write(['zero', 'one', 'two', 'THREE reworded', 'four', 'five']);
    const shifted = await runCli(['run', '--resume', 'edited'], h.env());
    expect(shifted.stdout).toContain('5 changed in the file since they succeeded (they run again); 6 queued');
    const after = await readJsonLines<RowResult>(join(out, 'results.jsonl'));
    expect(after.map((r) => r.id)).toEqual(['r1', 'r2', 'r3', 'r4', 'r5', 'r6']);
    expect(after[0]!.output).toContain('zero');
    expect(after[5]!.output).toContain('five');

    // A file that got shorter: rows past its end leave the outputs, and the rows that run again are
    // waited for (before, the old rows' finished bits ended the batch early, with stale answers).
    await write(['ZERO', 'ONE', 'TWO']);
    const shorter = await runCli(['run', '--resume', 'edited'], h.env());
    expect(shorter.code, shorter.stderr).toBe(0);
    expect(shorter.stdout).toContain('3 changed in the file since they succeeded (they run again), 3 of the last run no longer in the file (left out of the outputs; given back unchanged, they keep their answers); 3 queued');
    const short = await readJsonLines<RowResult>(join(out, 'results.jsonl'));
    expect(short.map((r) => r.output?.match(/Answer to "(\w+)"/)?.[1])).toEqual(['ZERO', 'ONE', 'TWO']);
    expect((await readFile(join(out, 'results.csv'), 'utf8')).trim().split('\n')).toHaveLength(1 + 3);
    const report = JSON.parse(await readFile(join(out, 'report.json'), 'utf8')) as Report;
    expect(report.totals).toMatchObject({ rows: 3, succeeded: 3 });

    // The whole file back (QA: a shorter file by mistake, then the right one, paid again for rows that never changed):
    // the rows past the short file's end are as they were, and keep their answers; only the edited ones run.
    // Answers paid for (the simulator fails some calls at random: their retries are not the point here).
    const answersPaid = async () => (await readJsonLines<CallRecord>(join(out, 'costs.jsonl'))).filter((c) => c.status === 'succeeded').length;
    const callsBefore = await answersPaid();
    await write(['zero', 'one', 'two', 'THREE reworded', 'four', 'five']);
    const whole = await runCli(['run', '--resume', 'edited'], h.env());
    expect(whole.code, whole.stderr).toBe(0);
    expect(whole.stdout).toContain('3 changed in the file since they succeeded (they run again), 3 back in the file as they were (their answers kept); 3 queued');
    const back = await readJsonLines<RowResult>(join(out, 'results.jsonl'));
    expect(back.map((r) => r.output?.match(/Answer to "([\w ]+)"/)?.[1])).toEqual(['zero', 'one', 'two', 'THREE reworded', 'four', 'five']);
    expect(await answersPaid()).toBe(callsBefore + 3);
    expect((JSON.parse(await readFile(join(out, 'report.json'), 'utf8')) as Report).totals).toMatchObject({ rows: 6, succeeded: 6, rows_this_run: 3 });
  });

  it('a row made invalid in the file since it succeeded loses its old result; fixed, it runs again', async () => {
    const dir = await tempDir('withdrawn');
    const input = join(dir, 'in.csv');
    const write = (third: string) => import('node:fs/promises').then((fs) => fs.writeFile(input, `id,prompt\nr1,one\nr2,two\n${third}\nr4,four\n`));
    await write('r3,three');
    const config = await writeSimConfig(dir, h.sim.url);
    const out = join(dir, 'out');
    expect((await runCli(['run', input, '--config', config, '--out', out, '--batch-id', 'withdrawn'], h.env())).code).toBe(0);

    await write('r3,three, now with a stray comma'); // three fields: bad_csv
    const broken = await runCli(['run', '--resume', 'withdrawn'], h.env());
    expect(broken.code).toBe(1);
    expect(broken.stderr).toContain('progress: 3/3 rows'); // not 4/3: the withdrawn row no longer counts as finished
    expect((await readJsonLines<RowResult>(join(out, 'results.jsonl'))).map((r) => r.id)).toEqual(['r1', 'r2', 'r4']);
    expect((await readFile(join(out, 'results.csv'), 'utf8')).trim().split('\n')).toHaveLength(1 + 3);
    const report = JSON.parse(await readFile(join(out, 'report.json'), 'utf8')) as Report;
    expect(report.totals).toMatchObject({ rows: 3, succeeded: 3, invalid_rows: 1 });
    expect(report.invalid_input).toEqual({ bad_csv: 1 });

    await write('r3,"three, quoted now"');
    const fixed = await runCli(['run', '--resume', 'withdrawn'], h.env());
    expect(fixed.code, fixed.stderr).toBe(0);
    const results = await readJsonLines<RowResult>(join(out, 'results.jsonl'));
    expect(results.map((r) => r.id)).toEqual(['r1', 'r2', 'r3', 'r4']);
    expect(results[2]!.output).toContain('three, quoted now');

    // Broken again, then put back exactly as it was when it succeeded: its answer is kept, not paid for again.
    const calls = (await readJsonLines<CallRecord>(join(out, 'costs.jsonl'))).length;
    await write('r3,three, quoted now');
    expect((await runCli(['run', '--resume', 'withdrawn'], h.env())).code).toBe(1);
    await write('r3,"three, quoted now"');
    const restored = await runCli(['run', '--resume', 'withdrawn'], h.env());
    expect(restored.code, restored.stderr).toBe(0);
    expect(restored.stdout).toContain('1 back in the file as they were (their answers kept); 0 queued');
    expect((await readJsonLines<RowResult>(join(out, 'results.jsonl'))).map((r) => r.id)).toEqual(['r1', 'r2', 'r3', 'r4']);
    expect((await readJsonLines<CallRecord>(join(out, 'costs.jsonl'))).length).toBe(calls);
  });

  it("refuses to resume a batch whose config is gone from Redis on the built-in models (QA: evicted, its resume ran on the simulator's models at their prices)", async () => {
    const dir = await tempDir('config-gone');
    const config = await writeSimConfig(dir, h.sim.url);
    const input = await writePromptsCsv(dir, 3);
    expect((await runCli(['run', input, '--config', config, '--out', join(dir, 'out'), '--batch-id', 'config-gone'], h.env())).code).toBe(0);
    await h.redis.del(`${h.prefix}:batch:{config-gone}:config`);
    const resumed = await runCli(['run', '--resume', 'config-gone'], h.env());
    expect(resumed.code).toBe(2);
    expect(resumed.stderr).toContain("batch config-gone's config is gone from Redis (evicted, or deleted): give it again with --config to go on with the batch, or run the file as a new batch");
    expect(resumed.stdout).not.toContain('built-in models');
    expect((await runCli(['run', '--resume', 'config-gone', '--config', config], h.env())).code).toBe(0);
  });

  it("refuses to write a new batch's outputs over another batch's in the same --out", async () => {
    const dir = await tempDir('shared-out');
    const config = await writeSimConfig(dir, h.sim.url);
    const out = join(dir, 'out');
    expect((await runCli(['run', await writePromptsCsv(dir, 5), '--config', config, '--out', out, '--batch-id', 'first-out'], h.env())).code).toBe(0);
    const other = join(dir, 'other.csv');
    await writeFile(other, 'prompt\nsomething else\n');
    const second = await runCli(['run', other, '--config', config, '--out', out, '--batch-id', 'second-out'], h.env());
    expect(second.code).toBe(2);
    expect(second.stderr).toContain(`${out} holds the outputs of batch first-out, which batch second-out would replace: give it another --out`);
    expect(await h.redis.exists(`${h.prefix}:batch:{second-out}`)).toBe(0);
    expect(await readJsonLines<RowResult>(join(out, 'results.jsonl'))).toHaveLength(5);
    // The batch that owns the folder goes on using it.
    expect((await runCli(['run', '--resume', 'first-out'], h.env())).code).toBe(0);
    // One that did not finish is named with the resume that would finish it.
    await h.redis.hset(`${h.prefix}:batch:{first-out}`, 'status', 'running');
    const unfinished = await runCli(['run', other, '--config', config, '--out', out, '--batch-id', 'third-out'], h.env());
    expect(unfinished.stderr).toContain('would replace: batch first-out did not finish (running): `switchyard run --resume first-out` finishes it there without repeating its finished rows; or give it another --out');
    await h.redis.hset(`${h.prefix}:batch:{first-out}`, 'status', 'completed');
    // A batch of the same id kept under another key prefix (another server's) is another batch.
    const elsewhere = await runCli(['run', other, '--config', config, '--out', out, '--batch-id', 'first-out'], { ...h.env(), SWITCHYARD_PREFIX: `${h.prefix}-other` });
    expect(elsewhere.code).toBe(2);
    expect(elsewhere.stderr).toMatch(new RegExp(`${out} holds the outputs of an earlier batch also named first-out, created \\S+, which this Redis does not have \\(forgotten, or another server's\\), and this run would replace them`));
    expect(await readJsonLines<RowResult>(join(out, 'results.jsonl'))).toHaveLength(5);
  });

  it('refuses --detach on the built-in models, whose simulator would stop with the process', async () => {
    const dir = await tempDir('detach-builtin');
    const result = await runCli(['run', await writePromptsCsv(dir, 3), '--detach', '--batch-id', 'detach-builtin'], h.env());
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('--detach needs --config: the built-in models are a simulator inside this process');
    expect(await h.redis.exists(`${h.prefix}:batch:{detach-builtin}`)).toBe(0);
  });

  it('stops before enqueueing when no model the rows could use has its API key here', async () => {
    const dir = await tempDir('nokey');
    const config = join(dir, 'keyed.yaml');
    await import('node:fs/promises').then((fs) =>
      fs.writeFile(config, `providers: {sim: {base_url: "${h.sim.url}", api_key_env: SY_TEST_NO_SUCH_KEY}, open: {base_url: "${h.sim.url}"}}\nmodels: {keyed: {provider: sim}, free: {provider: open}}\ndefault_model: keyed\n`),
    );
    const input = await writePromptsCsv(dir, 3);
    const pinned = await runCli(['run', input, '--config', config, '--batch-id', 'nokey', '--model', 'keyed'], h.env());
    expect(pinned.code).toBe(2);
    expect(pinned.stderr).toContain('$SY_TEST_NO_SUCH_KEY is not set, and model "keyed" needs it: no call could succeed (nor does a worker on this Redis have it). Set it (e.g. export SY_TEST_NO_SUCH_KEY=...)');
    expect(await h.redis.exists(`${h.prefix}:batch:{nokey}`)).toBe(0);
    // With a model that needs no key, the missing one of a model no row goes to is not even a warning (QA: --compare and --model runs warned of every model's key).
    const routed = await runCli(['run', input, '--config', config, '--out', join(dir, 'out'), '--batch-id', 'nokey-free', '--model', 'free'], h.env());
    expect(routed.code).toBe(0);
    expect(routed.stdout).not.toContain('SY_TEST_NO_SUCH_KEY');
    // Routed, any model may be called: warned (and its rows, routed to keyed, the default model, fail).
    const anyModel = await runCli(['run', input, '--config', config, '--out', join(dir, 'out-routed'), '--batch-id', 'nokey-routed', '--route', 'auto'], h.env());
    expect(anyModel.code).toBe(1);
    expect(anyModel.stdout).toContain('Warning: $SY_TEST_NO_SUCH_KEY is not set: keyed cannot be called (missing_api_key): a row that reaches it with no other model to go on to fails.');
    // A row that names the keyed model fails; the summary says how to finish it.
    const mixed = await writePromptsCsv(await tempDir('nokey-mixed'), 3, { model: (row) => (row === 2 ? 'keyed' : undefined) });
    const partly = await runCli(['run', mixed, '--config', config, '--out', join(dir, 'mixed'), '--batch-id', 'nokey-mixed', '--model', 'free'], h.env());
    expect(partly.code).toBe(1);
    expect(partly.stdout).toContain('No API key: 1 row failed for a key not set where they ran (results.jsonl names the variable). Set it there, then: switchyard run --resume nokey-mixed');
    // A judge without its key would leave every answer paid for and unscored: refused before anything is queued.
    const judged = await runCli(['run', input, '--config', config, '--batch-id', 'nokey-judge', '--model', 'free', '--judge', 'keyed'], h.env());
    expect(judged.code).toBe(2);
    expect(judged.stderr).toContain('$SY_TEST_NO_SUCH_KEY is not set, and the judge (keyed) needs it: no answer could be scored, and the answers would be paid for unscored. Set it (e.g. export SY_TEST_NO_SUCH_KEY=...) and run again, or give another judge (--judge <model>).');
    expect(await h.redis.exists(`${h.prefix}:batch:{nokey-judge}`)).toBe(0);

    // A model without its key, here or on any worker, falls back along its chain as for a rejected key: nothing is sent to it.
    const chained = join(dir, 'chained.yaml');
    await writeFile(chained, `providers: {sim: {base_url: "${h.sim.url}", api_key_env: SY_TEST_NO_SUCH_KEY}, open: {base_url: "${h.sim.url}"}}\nmodels: {keyed: {provider: sim, fallbacks: [free]}, free: {provider: open}}\ndefault_model: keyed\n`);
    const fellBack = await runCli(['run', input, '--config', chained, '--out', join(dir, 'chained'), '--model', 'keyed'], h.env());
    expect(fellBack.code, fellBack.stdout + fellBack.stderr).toBe(0);
    expect(fellBack.stdout).toContain('Warning: $SY_TEST_NO_SUCH_KEY is not set: rows for keyed go on to their fallbacks.');
    const answers = await readJsonLines<RowResult>(join(dir, 'chained', 'results.jsonl'));
    expect(answers.map((r) => [r.status, r.final_model])).toEqual([['succeeded', 'free'], ['succeeded', 'free'], ['succeeded', 'free']]);
    expect(answers[0]!.fallback_reason).toContain('keyed: not sent, $SY_TEST_NO_SUCH_KEY is not set here, and no worker on this Redis says it has it');
    expect(await readJsonLines<CallRecord>(join(dir, 'chained', 'costs.jsonl'))).toHaveLength(3);
  });

  it('a row edited in the file while its job was still queued runs with its new content, once', async () => {
    const dir = await tempDir('edited-queued');
    const input = join(dir, 'in.csv');
    const write = (prompts: string[]) => writeFile(input, `id,prompt\n${prompts.map((p, i) => `r${i + 1},${p}`).join('\n')}\n`);
    await write(['one', 'two', 'three', 'four']);
    const config = await writeSimConfig(dir, h.sim.url);
    const out = join(dir, 'out');
    // Queued with no workers (as when a run is killed before it got to them); then row 3 is edited.
    expect((await runCli(['run', input, '--config', config, '--out', out, '--batch-id', 'edited-queued', '--detach'], h.env())).code).toBe(0);
    await write(['one', 'two', 'THREE reworded', 'four']);
    const resumed = await runCli(['run', '--resume', 'edited-queued'], h.env());
    expect(resumed.code, resumed.stderr).toBe(0);
    const results = await readJsonLines<RowResult>(join(out, 'results.jsonl'));
    expect(results.map((r) => r.output?.match(/Answer to "([\w ]+)"/)?.[1])).toEqual(['one', 'two', 'THREE reworded', 'four']);
    // The resume removes the old job. Its workers may take that job first, before the producer has
    // read row 3 again: the old answer is then paid for (and in costs.jsonl) but never in the results.
    // Answers, that is: the simulator's injected failures (an earlier test's settings) add retries.
    const calls = await readJsonLines<CallRecord>(join(out, 'costs.jsonl'));
    const answered = calls.filter((c) => c.status === 'succeeded');
    expect(answered.filter((c) => c.row !== 3).map((c) => c.row).sort()).toEqual([1, 2, 4]);
    expect(answered.filter((c) => c.row === 3).length).toBeLessThanOrEqual(2);
    const report = JSON.parse(await readFile(join(out, 'report.json'), 'utf8')) as Report;
    expect(report.totals).toMatchObject({ rows: 4, succeeded: 4, calls: calls.length });
  });

  it('gives results.csv a column per metadata key, in first-seen order, also across a re-run', async () => {
    const dir = await tempDir('metacols');
    const input = join(dir, 'in.jsonl');
    const lines = [
      { id: 'a', prompt: 'one', metadata: { lang: 'en' } },
      { id: 'b', prompt: 'two' },
      { id: 'c', prompt: 'three', metadata: { topic: 'maths', lang: 'de' } },
      { id: 'd', prompt: 'four', metadata: { score: 3 } },
    ];
    await import('node:fs/promises').then((fs) => fs.writeFile(input, lines.map((line) => JSON.stringify(line)).join('\n')));
    const config = await writeSimConfig(dir, h.sim.url);
    const out = join(dir, 'out');
    const header = `${RESULTS_CSV_COLUMNS.join(',')},lang,topic,score`;
    await runCli(['run', input, '--config', config, '--out', out, '--batch-id', 'metacols'], h.env());
    expect((await readFile(join(out, 'results.csv'), 'utf8')).split('\n')[0]).toBe(header);
    await runCli(['run', input, '--config', config, '--out', out, '--batch-id', 'metacols'], h.env());
    expect((await readFile(join(out, 'results.csv'), 'utf8')).split('\n')[0]).toBe(header);
  });

  it("writes results.csv with the input CSV's separator: semicolons (with a decimal comma in cost_usd) or tabs, and its byte order mark", async () => {
    const dir = await tempDir('separators');
    const config = await writeSimConfig(dir, h.sim.url);
    const semicolons = join(dir, 'excel.csv');
    await writeFile(semicolons, '\uFEFFid;prompt;note\r\n1;"Hello; world";a,b\r\n2;plain;\r\n');
    const out = join(dir, 'out-semi');
    const ran = await runCli(['run', semicolons, '--config', config, '--out', out, '--batch-id', 'semi', '--model', 'fast'], h.env());
    expect(ran.code, ran.stderr).toBe(0);
    const csv = await readFile(join(out, 'results.csv'), 'utf8');
    // Excel's "CSV UTF-8" starts with a byte order mark, and reads its CJK and emoji right only with one.
    expect(csv.split('\n')[0]).toBe(`\uFEFF${RESULTS_CSV_COLUMNS.join(';')};note`);
    const rows = parse(csv, { columns: true, delimiter: ';', bom: true }) as Array<Record<string, string>>;
    const results = await readJsonLines<RowResult>(join(out, 'results.jsonl'));
    expect(rows.map((r) => [r.id, r.output, r.note])).toEqual(results.map((r) => [r.id, r.output, r.metadata.note ?? '']));
    expect(rows.map((r) => r.note)).toEqual(['a,b', '']);
    for (const [i, row] of rows.entries()) {
      expect(row.cost_usd).toMatch(/^0,\d+$/);
      expect(Number(row.cost_usd!.replace(',', '.'))).toBe(results[i]!.cost_usd);
    }

    const tabs = join(dir, 'sheet.tsv');
    await writeFile(tabs, 'id\tprompt\n1\tHello, world\n');
    const tabOut = join(dir, 'out-tab');
    expect((await runCli(['run', tabs, '--config', config, '--out', tabOut, '--batch-id', 'tabs', '--model', 'fast'], h.env())).code).toBe(0);
    const tabCsv = await readFile(join(tabOut, 'results.csv'), 'utf8');
    expect(tabCsv.split('\n')[0]).toBe(RESULTS_CSV_COLUMNS.join('\t'));
    const [tabRow] = parse(tabCsv, { columns: true, delimiter: '\t' }) as Array<Record<string, string>>;
    expect(tabRow).toMatchObject({ id: '1', status: 'succeeded' });
    expect(tabRow!.cost_usd).toMatch(/^0\.\d+$/);
  });

  it('counts the tokens of answers that come without usage, marks those calls, and says so: they are not free', async () => {
    const dir = await tempDir('nousage');
    const config = await writeSimConfig(dir, h.sim.url, {}, ['nousage']);
    const input = await writePromptsCsv(dir, 6);
    const out = join(dir, 'out');
    const ran = await runCli(['run', input, '--config', config, '--out', out, '--batch-id', 'nousage'], h.env());
    expect(ran.code, ran.stderr).toBe(0);
    const calls = await readJsonLines<CallRecord>(join(out, 'costs.jsonl'));
    const answered = calls.filter((c) => c.status === 'succeeded');
    expect(answered).toHaveLength(6);
    for (const call of answered) {
      expect(call.usage_estimated).toBe(true);
      expect(call.input_tokens).toBeGreaterThan(10); // "Question n: explain item n, briefly" and the chat overheads
      expect(call.output_tokens).toBeGreaterThan(5);
      expect(call.cost_usd).toBeGreaterThan(0);
    }
    const report = JSON.parse(await readFile(join(out, 'report.json'), 'utf8')) as Report;
    expect(report.totals.usage_estimated_calls).toBe(6);
    expect(report.totals.cost_usd).toBeGreaterThan(0);
    expect(ran.stdout).toMatch(/Usage +6 calls had no token usage from the provider \(an answer sent without it, or a call that timed out or whose stream broke off, charged for its prompt and what it sent\): their tokens and cost are Switchyard's estimate/);
  });

  it('says before the run which columns look meant as row fields but are metadata (ID, Model, Max Tokens; response_format, which only a JSONL line sends)', async () => {
    const dir = await tempDir('lookalikes');
    const input = join(dir, 'in.csv');
    await import('node:fs/promises').then((fs) => fs.writeFile(input, 'ID,prompt,Model,Max Tokens,mode,response_format\na,hello,flash,5,x,json_object\n'));
    const config = await writeSimConfig(dir, h.sim.url);
    const out = join(dir, 'out');
    const result = await runCli(['run', input, '--config', config, '--out', out, '--batch-id', 'lookalikes'], h.env());
    expect(result.code, result.stderr).toBe(0);
    const lines = result.stdout.split('\n');
    const note =
      'Note: columns "ID", "Model" and "Max Tokens" are metadata, not row fields: row fields are named exactly id, model, system, temperature, max_tokens ' +
      '(rename "ID" to id, "Model" to model and "Max Tokens" to max_tokens to use them).';
    expect(lines.indexOf(note)).toBeGreaterThan(0);
    expect(lines.indexOf(note)).toBeLessThan(lines.findIndex((line) => line.startsWith('Read 1 row')));
    expect(lines).toContain(
      'Note: column "response_format" is metadata, not sent with the calls: a CSV row sends its prompt, system, temperature and max_tokens alone. ' +
        'To send it (structured output, a seed...), give the rows as JSONL lines with that field (docs/formats.md).',
    );
    const [result1] = await readJsonLines<RowResult>(join(out, 'results.jsonl'));
    expect(result1).toMatchObject({ id: '1', metadata: { ID: 'a', Model: 'flash', 'Max Tokens': '5', mode: 'x', response_format: 'json_object' } });
  });

  it('runs the valid rows of a file with bad ones, lists the bad ones with their lines, and exits 1', async () => {
    const dir = await tempDir('badrows');
    const input = join(dir, 'in.csv');
    await import('node:fs/promises').then((fs) => fs.writeFile(input, 'id,prompt,temperature\na,hello,9\nb,,\nc,"fine, thanks",0.1\n'));
    const config = await writeSimConfig(dir, h.sim.url);
    const out = join(dir, 'out');
    const result = await runCli(['run', input, '--config', config, '--out', out, '--batch-id', 'badrows'], h.env());
    expect(result.code).toBe(1);
    expect(result.stdout).toContain('2 invalid rows, not run');
    // The last word says what to do about them, as it does for failed rows (QA: none did).
    expect(result.stdout.trimEnd().split('\n').at(-1)).toMatch(/^Invalid: 2 rows not run \(the first: line 2: temperature must be a number from 0 to 2, got "9"\)\. Fix them in place in the file .*then: switchyard run --resume badrows \(only they run\)\.$/);
    const errors = await readJsonLines<{ line: number; code: string }>(join(out, 'errors.jsonl'));
    expect(errors.map((e) => [e.line, e.code])).toEqual([[2, 'bad_field'], [3, 'missing_prompt']]);
    const results = await readJsonLines<RowResult>(join(out, 'results.jsonl'));
    expect(results.map((r) => [r.id, r.status])).toEqual([['c', 'succeeded']]);
    const report = JSON.parse(await readFile(join(out, 'report.json'), 'utf8')) as Report;
    expect(report.totals).toMatchObject({ rows: 1, succeeded: 1, invalid_rows: 2 });
    expect(report.invalid_input).toEqual({ bad_field: 1, missing_prompt: 1 });
    expect(report.invalid_input_examples).toEqual({ bad_field: 'line 2: temperature must be a number from 0 to 2, got "9"', missing_prompt: 'line 3: the prompt is empty' });
    const markdown = await readFile(join(out, 'report.md'), 'utf8');
    expect(markdown).toContain('2 invalid rows not run**');
    expect(markdown).toContain('`switchyard run --resume badrows` runs them');

    // As report.md advises: fix the rows in place and resume; only they run, and nothing is invalid now.
    await import('node:fs/promises').then((fs) => fs.writeFile(input, 'id,prompt,temperature\na,hello,0.9\nb,bye,\nc,"fine, thanks",0.1\n'));
    const resumed = await runCli(['run', '--resume', 'badrows'], h.env());
    expect(resumed.code).toBe(0);
    expect(resumed.stdout).toContain('1 already done; 2 queued');
    expect((await readJsonLines<RowResult>(join(out, 'results.jsonl'))).map((r) => [r.id, r.status])).toEqual([['a', 'succeeded'], ['b', 'succeeded'], ['c', 'succeeded']]);
    const fixed = JSON.parse(await readFile(join(out, 'report.json'), 'utf8')) as Report;
    expect(fixed.totals).toMatchObject({ rows: 3, succeeded: 3, invalid_rows: 0 });
    expect(fixed.invalid_input).toEqual({});
    expect(await readFile(join(out, 'errors.jsonl'), 'utf8')).toBe('');
  });

  it('stops with exit code 2 when the CSV has no prompt column, naming the columns it has', async () => {
    const dir = await tempDir('nocol');
    const input = join(dir, 'in.csv');
    await import('node:fs/promises').then((fs) => fs.writeFile(input, 'question,answer\nhello,world\n'));
    const config = await writeSimConfig(dir, h.sim.url);
    const result = await runCli(['run', input, '--config', config, '--batch-id', 'nocol'], h.env());
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/prompt/);
    expect(result.stderr).toContain('question');
    expect(await h.redis.exists(`${h.prefix}:batch:{nocol}`)).toBe(0);
  });

  it("shows the control characters of the file's text it quotes, rather than send them to the terminal (QA: an unknown model's name recoloured it and rang its bell)", async () => {
    const dir = await tempDir('controls');
    const config = await writeSimConfig(dir, h.sim.url);
    const header = join(dir, 'header.csv');
    await writeFile(header, 'question\x1b]0;pwned\x07,answer\nhello,world\n');
    const refused = await runCli(['run', header, '--config', config, '--batch-id', 'controls-header'], h.env());
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain('question\\x1b]0;pwned\\x07');
    const model = join(dir, 'model.jsonl');
    await writeFile(model, `${JSON.stringify({ prompt: 'hi', model: 'evil\x1b[31mRED\x1b[0m\x07' })}\n${JSON.stringify({ prompt: 'hi' })}\n`);
    const ran = await runCli(['run', model, '--config', config, '--batch-id', 'controls-model', '--out', join(dir, 'out')], h.env());
    expect(ran.code, ran.stderr).toBe(1);
    expect(ran.stdout).toContain('unknown model "evil\\x1b[31mRED\\x1b[0m\\x07"');
    expect(`${ran.stdout}${ran.stderr}${refused.stderr}`).not.toMatch(/[\x07\x1b]/);
  });

  // QA: the metadata keys went to Redis as one command's arguments, which overflowed the stack and stopped the file;
  // then rows of 16,000 keys each, none of them another row's, made 496,000 columns of 31 rows (22 s, and wider with every row).
  it('runs JSONL rows up to 16,384 metadata keys in all, each a column of results.csv; a row that would take the batch past that is a bad row', { timeout: 120_000 }, async () => {
    const dir = await tempDir('wide');
    const input = join(dir, 'in.jsonl');
    const named = (prefix: string, count: number) => Array.from({ length: count }, (_, i) => `${prefix}${i}`);
    // Row 3 has 16,384 keys with its prompt, a row's most; row 4 would make 16,385 columns, row 5 makes 16,384.
    const rows = [named('a', 15_000), named('b', 15_000), [...named('a', 15_000), ...named('c', 1_383)], ['d0', 'd1'], ['d0'], ['a0']];
    await writeFile(input, rows.map((keys, r) => JSON.stringify({ prompt: `hello ${r}`, ...Object.fromEntries(keys.map((key) => [key, key])) })).join('\n') + '\n');
    const out = join(dir, 'out');
    const result = await runCli(['run', input, '--config', await writeSimConfig(dir, h.sim.url), '--out', out, '--batch-id', 'wide'], h.env());
    expect(result.code, result.stderr).toBe(1); // rows not run
    const [header, ...records] = parse(await readFile(join(out, 'results.csv'), 'utf8')) as string[][];
    expect(header!.slice(RESULTS_CSV_COLUMNS.length)).toEqual([...named('a', 15_000), ...named('c', 1_383), 'd0']);
    expect(records.map((record) => record.slice(RESULTS_CSV_COLUMNS.length).filter((cell) => cell !== '').length)).toEqual([15_000, 16_383, 1, 1]);
    const tooWide = (row: number, added: string, columns: string) =>
      `{"row":${row},"line":${row},"id":"${row}","code":"bad_field","message":"the row's metadata has ${added} keys that the rows before it do not, which would make ${columns} results.csv columns, more than the 16,384 a batch may have (a CSV header's limit too): give the rows the same keys, or nest those that differ under one key, which is one column"}`;
    expect((await readFile(join(out, 'errors.jsonl'), 'utf8')).trim().split('\n')).toEqual([tooWide(2, '15,000', '30,000'), tooWide(4, '2', '16,385')]);
  });

  it("refuses a CSV whose header has more columns than a spreadsheet's 16,384, before any row", async () => {
    const dir = await tempDir('too-wide');
    const input = join(dir, 'in.csv');
    const columns = Array.from({ length: MAX_CSV_COLUMNS }, (_, i) => `c${i}`);
    await writeFile(input, `prompt,${columns.join(',')}\nhello,${columns.join(',')}\n`);
    const result = await runCli(['run', input, '--config', await writeSimConfig(dir, h.sim.url), '--out', join(dir, 'out'), '--batch-id', 'too-wide'], h.env());
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(`input file ${input}: its header has 16,385 columns (separated by commas), more than the 16,384 Switchyard reads (a spreadsheet's limit too): keep the prompt column and the columns you want beside the answers in results.csv.`);
    expect(await h.redis.exists(`${h.prefix}:batch:{too-wide}`)).toBe(0);
  });

  it('a resume reads the prompt column the batch was started with', async () => {
    const dir = await tempDir('column-kept');
    const input = join(dir, 'in.csv');
    await writeFile(input, 'question,answer\nhello,world\nbonjour,monde\n');
    const config = await writeSimConfig(dir, h.sim.url);
    const out = join(dir, 'out');
    const first = await runCli(['run', input, '--config', config, '--out', out, '--batch-id', 'column-kept', '--prompt-column', 'question'], h.env());
    expect(first.code, first.stderr).toBe(0);
    await writeFile(input, 'question,answer\nhello,world\nbonjour,monde\nhola,mundo\n');
    const resumed = await runCli(['run', '--resume', 'column-kept'], h.env());
    expect(resumed.code, resumed.stderr).toBe(0);
    expect((await readJsonLines<RowResult>(join(out, 'results.jsonl'))).map((r) => r.status)).toEqual(['succeeded', 'succeeded', 'succeeded']);
  });
});

describe('--concurrency bounds the calls in flight, not just the rows', () => {
  const h = useSimulatorAndRedis('concurrency', { latency_ms: 40 });

  it('keeps exactly --concurrency calls in flight at the provider while the worker holds a few rows more', async () => {
    const dir = await tempDir('conc');
    const config = await writeSimConfig(dir, h.sim.url);
    const input = await writePromptsCsv(dir, 48);
    h.sim.reset();
    const result = await runCli(['run', input, '--config', config, '--out', join(dir, 'out'), '--batch-id', 'conc-4', '--concurrency', '4'], h.env());
    expect(result.code, result.stderr).toBe(0);
    const stats = h.sim.stats();
    expect(stats.requests).toBe(48);
    expect(stats.peak_in_flight).toBe(4);
  });
});
