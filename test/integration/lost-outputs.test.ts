import { copyFile, cp, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { CallRecord, RowResult } from '../../src/output/records.ts';
import type { Report } from '../../src/output/report-json.ts';
import { runCli, spawnCli, waitFor } from '../helpers/cli.ts';
import { readJsonLines, tempDir, writePromptsCsv, writeSimConfig } from '../helpers/files.ts';
import { useSimulatorAndRedis } from '../helpers/harness.ts';

const exists = (path: string) => stat(path).then(() => true, () => false);

describe('outputs deleted or cut after a batch wrote them: collect writes again what it can, a resume names what is lost', () => {
  const h = useSimulatorAndRedis('lost-outputs', { latency_ms: 2 });
  const statusOf = (batchId: string) => h.redis.hget(`${h.prefix}:batch:{${batchId}}`, 'status');

  /** A finished batch of `rows` rows in `dir`/out, and a copy of its folder as it was. */
  async function finishedBatch(name: string, rows: number): Promise<{ dir: string; out: string; kept: string; config: string; input: string }> {
    const dir = await tempDir(name);
    const config = await writeSimConfig(dir, h.sim.url);
    const input = await writePromptsCsv(dir, rows);
    const out = join(dir, 'out');
    const run = await runCli(['run', input, '--config', config, '--out', out, '--batch-id', name], h.env());
    expect(run.code, run.stderr).toBe(0);
    const kept = join(dir, 'kept');
    await cp(out, kept, { recursive: true });
    return { dir, out, kept, config, input };
  }

  it('collect writes the deleted results, CSV and report of a finished batch again, as they were', async () => {
    const { out, kept } = await finishedBatch('lost-rewrite', 6);
    for (const file of ['results.jsonl', 'results.csv', 'report.json', 'report.md', '.results-csv-journal']) await rm(join(out, file));
    const collected = await runCli(['collect', 'lost-rewrite'], h.env());
    expect(collected.code, collected.stderr).toBe(0);
    expect(collected.stdout).toContain(`lost-rewrite is already completed: 6 of 6 rows succeeded. Its outputs are in ${out} (report.md for the summary).`);
    expect(collected.stdout).toContain('Written again, as they were missing: .results-csv-journal, results.jsonl, results.csv, report.json, report.md.');
    for (const file of ['results.jsonl', 'results.csv', '.results-csv-journal']) expect(await readFile(join(out, file), 'utf8'), file).toBe(await readFile(join(kept, file), 'utf8'));
    // The report from the files, timed as the run was.
    const reportIn = async (folder: string) => JSON.parse(await readFile(join(folder, 'report.json'), 'utf8')) as Report;
    const [before, after] = [await reportIn(kept), await reportIn(out)];
    expect(after.totals).toEqual(before.totals);
    expect(after.finished_at).toBe(before.finished_at);
    expect(await statusOf('lost-rewrite')).toBe('completed');
    // Nothing missing now: left as it is.
    const again = await runCli(['collect', 'lost-rewrite'], h.env());
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).not.toContain('Written again');
  });

  it("collect writes a cancelled batch's deleted report again as cancelled, with the rows it left not run (it read 0 not run, and no Cancelled)", async () => {
    const { out, kept } = await finishedBatch('lost-cancelled', 6);
    // As a cancel over the API leaves a batch posted there: 6 of its 10 rows done, its status final.
    await h.redis.hset(`${h.prefix}:batch:{lost-cancelled}`, { status: 'cancelled', total: '10', served: 'true' });
    for (const file of ['report.json', 'report.md']) await rm(join(out, file));
    const collected = await runCli(['collect', 'lost-cancelled'], h.env());
    expect(collected.code, collected.stderr).toBe(0);
    expect(collected.stdout).toContain('Written again, as they were missing: report.json, report.md.');
    const before = JSON.parse(await readFile(join(kept, 'report.json'), 'utf8')) as Report;
    const after = JSON.parse(await readFile(join(out, 'report.json'), 'utf8')) as Report;
    expect(after.cancelled).toBe(true);
    expect(after.totals).toEqual({ ...before.totals, unfinished_rows: 4 });
    const reportMd = await readFile(join(out, 'report.md'), 'utf8');
    expect(reportMd).toMatch(/^\*\*Cancelled: 6 of 6 rows succeeded/m);
    expect(reportMd).toContain('4 rows not run yet: the batch was cancelled, and posting the file again with `batch_id=lost-cancelled` runs the rest');
  });

  it('a deleted costs.jsonl is named as lost for good: collect writes the rest and exits 2, a resume stops before touching the batch; put back, both go on', async () => {
    const { out, kept, input } = await finishedBatch('lost-costs', 5);
    const checkpointed = (await stat(join(kept, 'costs.jsonl'))).size;
    await rm(join(out, 'costs.jsonl'));
    await rm(join(out, 'results.jsonl'));
    const collected = await runCli(['collect', 'lost-costs'], h.env());
    expect(collected.code).toBe(2);
    expect(collected.stdout).toContain('Written again, as they were missing: results.jsonl.');
    expect(collected.stdout).toContain(`lost-costs is already completed: 5 of 5 rows succeeded, but its outputs in ${out} are not whole (see below).`);
    expect(collected.stdout).not.toContain('Its outputs are in');
    expect(await readFile(join(out, 'results.jsonl'), 'utf8')).toBe(await readFile(join(kept, 'results.jsonl'), 'utf8'));
    expect(collected.stderr).toContain(`switchyard: batch lost-costs's outputs are not whole: ${join(out, 'costs.jsonl')} is missing (the batch's checkpoint has ${checkpointed} bytes of it). It held the record of every model call made so far`);
    expect(collected.stderr).toContain('put costs.jsonl back as it was (from a backup, or the trash), then "switchyard collect lost-costs" writes the outputs made from it again.');
    expect(collected.stderr).not.toMatch(/unexpected error|-1 bytes|\n\s+at /);

    const resumed = await runCli(['run', '--resume', 'lost-costs'], h.env());
    expect(resumed.code).toBe(2);
    expect(resumed.stderr).toContain(`switchyard: batch lost-costs cannot go on: ${join(out, 'costs.jsonl')} is missing (the batch's checkpoint has ${checkpointed} bytes of it).`);
    expect(resumed.stderr).toContain(`then run the same command again. Or start the batch afresh, a new batch whose rows are all run (and paid for) again: switchyard run ${input} --config <its config> --out <another folder>`);
    expect(resumed.stderr).not.toMatch(/unexpected error|-1 bytes|original --out|\n\s+at /);
    // Refused before the batch was touched: still finished, nothing queued.
    expect(await statusOf('lost-costs')).toBe('completed');

    // Cut short: what is past its end is lost.
    await copyFile(join(kept, 'costs.jsonl'), join(out, 'costs.jsonl'));
    await truncate(join(out, 'costs.jsonl'), 100);
    const cut = await runCli(['run', '--resume', 'lost-costs'], h.env());
    expect(cut.code).toBe(2);
    expect(cut.stderr).toContain(`${join(out, 'costs.jsonl')} is shorter than the batch's checkpoint (100 of ${checkpointed} bytes): it was cut or replaced, and what it held past its first 100 bytes is lost.`);

    await copyFile(join(kept, 'costs.jsonl'), join(out, 'costs.jsonl'));
    const restored = await runCli(['run', '--resume', 'lost-costs'], h.env());
    expect(restored.code, restored.stderr).toBe(0);
    expect(await readFile(join(out, 'costs.jsonl'), 'utf8')).toBe(await readFile(join(kept, 'costs.jsonl'), 'utf8'));
  });

  it('a resume names a deleted results journal as lost: its rows are done in Redis and would be missing from the outputs', async () => {
    const { out } = await finishedBatch('lost-journal', 3);
    await rm(join(out, '.results-journal.jsonl'));
    const resumed = await runCli(['run', '--resume', 'lost-journal'], h.env());
    expect(resumed.code).toBe(2);
    expect(resumed.stderr).toContain(`${join(out, '.results-journal.jsonl')} is missing (the batch's checkpoint has `);
    expect(resumed.stderr).toContain('It held every result collected so far (results.jsonl and results.csv are written from it), which is kept nowhere else');
    // results.jsonl is still there; the collect of the finished batch says what a resume would need.
    const collected = await runCli(['collect', 'lost-journal'], h.env());
    expect(collected.code).toBe(2);
    expect(collected.stdout).toContain('lost-journal is already completed: 3 of 3 rows succeeded, but its outputs in');
    expect(collected.stderr).toContain('.results-journal.jsonl is missing');
  });

  it('a lost CSV journal is made again from the results journal when the batch resumes', async () => {
    const { out, kept } = await finishedBatch('lost-csv-journal', 4);
    await rm(join(out, '.results-csv-journal'));
    const resumed = await runCli(['run', '--resume', 'lost-csv-journal'], h.env());
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(await readFile(join(out, 'results.csv'), 'utf8')).toBe(await readFile(join(kept, 'results.csv'), 'utf8'));
    expect(await readFile(join(out, '.results-csv-journal'), 'utf8')).toBe(await readFile(join(kept, '.results-csv-journal'), 'utf8'));
  });

  it('a missing file whose checkpoint has 0 bytes of it loses nothing: collect and a resume make it again', async () => {
    const dir = await tempDir('lost-empty');
    // Every row on a model whose key is not set here: the rows fail without a call, so costs.jsonl holds nothing.
    const config = join(dir, 'keyed.yaml');
    await writeFile(config, `providers: {sim: {base_url: "${h.sim.url}", api_key_env: SY_TEST_LOST_EMPTY_KEY}, open: {base_url: "${h.sim.url}"}}\nmodels: {keyed: {provider: sim}, free: {provider: open}}\ndefault_model: free\n`);
    const input = await writePromptsCsv(dir, 3, { model: () => 'keyed' });
    const out = join(dir, 'out');
    const first = await runCli(['run', input, '--config', config, '--out', out, '--batch-id', 'lost-empty'], h.env());
    expect(first.code, first.stderr).toBe(1);
    expect((await stat(join(out, 'costs.jsonl'))).size).toBe(0);
    expect(await h.redis.hget(`${h.prefix}:batch:{lost-empty}:checkpoint`, 'costs_bytes')).toBe('0');

    await rm(join(out, 'costs.jsonl'));
    const collected = await runCli(['collect', 'lost-empty'], h.env());
    expect(collected.code, collected.stderr).toBe(1); // its rows failed
    expect(collected.stdout).toContain('Written again, as they were missing: costs.jsonl.');
    expect(await readFile(join(out, 'costs.jsonl'), 'utf8')).toBe('');

    await rm(join(out, 'costs.jsonl'));
    const resumed = await runCli(['run', '--resume', 'lost-empty'], h.env({ SY_TEST_LOST_EMPTY_KEY: 'sk-test' }));
    expect(resumed.code, resumed.stderr).toBe(0);
    expect((await readJsonLines<RowResult>(join(out, 'results.jsonl'))).map((r) => r.status)).toEqual(['succeeded', 'succeeded', 'succeeded']);
    expect(await readJsonLines<CallRecord>(join(out, 'costs.jsonl'))).toHaveLength(3);
    expect(await exists(join(out, 'report.json'))).toBe(true);
  });

  it("collect of a detached batch whose report.json is not its report (edited, cut short, another tool's) says which file, what is wrong and what to do, exit 2 (review: exit 4 and a stack trace)", async () => {
    const dir = await tempDir('not-a-report');
    const config = await writeSimConfig(dir, h.sim.url);
    const out = join(dir, 'out');
    const worker = spawnCli(['worker', '--concurrency', '4'], h.env());
    try {
      const run = await runCli(['run', await writePromptsCsv(dir, 4), '--config', config, '--out', out, '--batch-id', 'not-a-report', '--detach'], h.env());
      expect(run.code, run.stderr).toBe(0);
      const collected = await runCli(['collect', 'not-a-report'], h.env());
      expect(collected.code, collected.stderr).toBe(0);
    } finally {
      worker.kill('SIGTERM');
      await worker.done;
    }
    const path = join(out, 'report.json');
    const written = await readFile(path, 'utf8');
    const todo = "Delete it (or move it away, if it is another tool's) and run `switchyard collect not-a-report` again: it writes report.json and report.md again from results.jsonl and costs.jsonl.";
    const replacements: Array<[string, string]> = [
      ['{"batch_id":"not-a-report"}\n', 'it does not hold what a report does (started_at: missing (expected a string), and 16 more)'],
      [written.slice(0, 200), 'it is not JSON ('],
      ['{"tool":"other","results":[]}\n', 'it does not hold what a report does (batch_id: missing (expected a string), and 17 more)'],
      [written.replace('"batch_id": "not-a-report"', '"batch_id": "another"'), 'it is the report of batch another'],
    ];
    for (const [text, problem] of replacements) {
      await writeFile(path, text);
      const again = await runCli(['collect', 'not-a-report'], h.env());
      expect(again.code, again.stderr).toBe(2);
      expect(again.stderr).toContain(`switchyard: ${path} is not batch not-a-report's report: ${problem}`);
      expect(again.stderr).toContain(todo);
      expect(again.stderr).not.toMatch(/unexpected error|\n\s+at /);
      // Left as it was, and status still answers.
      expect(await readFile(path, 'utf8')).toBe(text);
      expect((await runCli(['status', 'not-a-report'], h.env())).code).toBe(0);
    }
    // As the message says: deleted, collect writes it again.
    await rm(path);
    const rewritten = await runCli(['collect', 'not-a-report'], h.env());
    expect(rewritten.code, rewritten.stderr).toBe(0);
    expect(rewritten.stdout).toContain('not-a-report is already completed: 4 of 4 rows succeeded.');
    expect(rewritten.stdout).toContain('Written again, as they were missing: report.json, report.md.');
    expect((JSON.parse(await readFile(path, 'utf8')) as Report).totals).toEqual((JSON.parse(written) as Report).totals);
  });
});

describe('the output folder deleted while the batch runs', () => {
  const h = useSimulatorAndRedis('lost-midrun', { latency_ms: 300 });

  it('ends with what is lost and the ways on (exit 2), not a stack trace (QA: exit 4, "unexpected error: ENOENT")', async () => {
    const dir = await tempDir('lost-midrun');
    const config = await writeSimConfig(dir, h.sim.url);
    const input = await writePromptsCsv(dir, 12);
    const out = join(dir, 'out');
    const running = runCli(['run', input, '--config', config, '--out', out, '--batch-id', 'lost-midrun', '--concurrency', '2'], h.env());
    // Deleted once the collector has written rows (not at a fixed time: a slow start would create the folder after it).
    const journal = join(out, '.results-journal.jsonl');
    await waitFor(async () => ((await stat(journal).catch(() => null))?.size ?? 0) > 0, 20_000);
    await rm(out, { recursive: true, force: true });
    const run = await running;
    expect(run.code, run.stdout + run.stderr).toBe(2);
    expect(run.stderr).toMatch(/batch lost-midrun cannot go on: \S+\.results-journal\.jsonl is (missing|shorter than the batch's checkpoint)/);
    expect(run.stderr).not.toContain('unexpected error');
  });
});
