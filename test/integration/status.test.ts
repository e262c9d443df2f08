import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.ts';
import { tempDir, writePromptsCsv, writeSimConfig } from '../helpers/files.ts';
import { useSimulatorAndRedis } from '../helpers/harness.ts';

describe('switchyard status', () => {
  const h = useSimulatorAndRedis('status', { latency_ms: 1, models: { broken: { fail_status: 400 } } });

  it('says so when there are no batches yet', async () => {
    const result = await runCli(['status'], h.env());
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain(`No batches in Redis at`);
    expect(result.stdout).toContain(`key prefix "${h.prefix}"`);
  });

  it('lists the batches, newest first, one line each, and shows one in detail with what to do next', async () => {
    const dir = await tempDir('status');
    const config = await writeSimConfig(dir, h.sim.url, {}, ['fast', 'broken']);
    const withBrokenRow = await writePromptsCsv(dir, 6, { model: (row) => (row === 6 ? 'broken' : undefined) });
    const first = await runCli(['run', withBrokenRow, '--config', config, '--out', join(dir, 'a'), '--batch-id', 'status-a'], h.env());
    expect(first.code, first.stderr).toBe(1);
    const allGood = await writePromptsCsv(await tempDir('status-good'), 6);
    const second = await runCli(['run', allGood, '--config', config, '--out', join(dir, 'b'), '--batch-id', 'status-b'], h.env());
    expect(second.code, second.stderr).toBe(0);

    const list = await runCli(['status'], h.env());
    expect(list.code, list.stderr).toBe(0);
    const lines = list.stdout.trimEnd().split('\n');
    expect(lines[0]).toContain('Batches: 2, newest first');
    expect(lines[1]).toMatch(/^ {2}BATCH +STATUS +ROWS +FAILED +COST +STARTED \(UTC\)$/);
    expect(lines[2]).toMatch(/^ {2}status-b +completed +6\/6 +0 +\$\S+ +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$/);
    expect(lines[3]).toMatch(/^ {2}status-a +completed_with_failures +6\/6 +1 +\$\S+ +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$/);
    // The columns line up: every row's STATUS starts where the header's does.
    const statusColumn = lines[1]!.indexOf('STATUS');
    expect(lines.slice(2).map((line) => line.indexOf('complete'))).toEqual([statusColumn, statusColumn]);

    const one = await runCli(['status', 'status-a'], h.env());
    expect(one.code, one.stderr).toBe(0);
    expect(one.stdout).toContain('status-a  completed_with_failures');
    expect(one.stdout).toContain('rows      6/6 finished: 5 succeeded, 1 failed; 0 invalid');
    expect(one.stdout).toContain(`output    ${join(dir, 'a')}`);
    expect(one.stdout).toContain('next      `switchyard run --resume status-a` runs the failed rows again');

    const done = await runCli(['status', 'status-b'], h.env());
    expect(done.stdout).not.toContain('next');
  });

  it('exits 2 with a message that says where it looked for an unknown batch', async () => {
    const result = await runCli(['status', 'no-such-batch'], h.env());
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('no batch "no-such-batch" in Redis at');
    expect(result.stderr).toContain(`key prefix "${h.prefix}"`);
    expect(result.stderr).toContain('`switchyard status` lists the recent ones');
    // A resume and a collect of it say the same, SWITCHYARD_PREFIX named: another prefix is the usual reason.
    for (const args of [['run', '--resume', 'no-such-batch'], ['collect', 'no-such-batch']]) {
      const other = await runCli(args, h.env());
      expect(other.code, args.join(' ')).toBe(2);
      expect(other.stderr).toContain(`no batch "no-such-batch" in Redis at`);
      expect(other.stderr).toContain(`key prefix "${h.prefix}" (SWITCHYARD_PREFIX)`);
    }
  });

  it('gives the reasons for invalid rows and says how to run them once fixed', async () => {
    const dir = await tempDir('status-invalid');
    const input = join(dir, 'in.csv');
    await writeFile(input, 'prompt,temperature\nfine,0.5\nhot,9\n,0.7\n');
    const run = await runCli(['run', input, '--config', await writeSimConfig(dir, h.sim.url), '--out', join(dir, 'out'), '--batch-id', 'status-invalid'], h.env());
    expect(run.code, run.stderr).toBe(1);
    const one = await runCli(['status', 'status-invalid'], h.env());
    expect(one.stdout).toContain('status-invalid  completed, 2 invalid rows\n');
    expect(one.stdout).toContain('rows      1/1 finished: 1 succeeded, 0 failed; 2 invalid (bad_field 1, missing_prompt 1; see errors.jsonl)');
    expect(one.stdout).toContain('next      fix the invalid rows in place in its input, then `switchyard run --resume status-invalid` runs them');
  });

  it('says why a batch whose file stopped part-way waits, rather than to resume it as it is, until the fixed file runs', async () => {
    const dir = await tempDir('status-unreadable');
    const input = join(dir, 'in.csv');
    await writeFile(input, 'id,prompt\na,fine\nb,\nc,"never closed\nd,more\n');
    const args = ['run', input, '--config', await writeSimConfig(dir, h.sim.url), '--out', join(dir, 'out'), '--batch-id', 'status-unreadable'];
    const run = await runCli(args, h.env());
    expect(run.code, run.stderr).toBe(2);
    expect(run.stderr).toMatch(/Stopped there: (no row before that line had finished yet|1 row before that line had finished \(0 failed, \$[\d.]+ spent\) and is kept)\.( 1 queued row came off the queue, so no other run or worker takes it meanwhile\.)? Fix the file and run the same command again \(--batch-id status-unreadable\)/);
    // The row read before the bad one was answered or came off the queue: none is left for the
    // next run of another batch to find there as a killed run's.
    expect(await h.redis.keys(`${h.prefix}:prompts:status-unreadable_*`)).toEqual([]);
    // As after a Ctrl-C, the outputs and summary of the rows finished so far are written.
    expect(run.stdout).toMatch(/^Rows +(1 of 1 succeeded, 0 failed|0 finished); the rest of the file not run yet$/m);
    // The invalid row before the quote is counted (it is in errors.jsonl), though the file was not read to its end.
    expect(JSON.parse(await readFile(join(dir, 'out', 'report.json'), 'utf8'))).toMatchObject({ batch_id: 'status-unreadable', totals: { invalid_rows: 1 } });
    expect(run.stdout).toMatch(/^Invalid +1 row not run \(errors\.jsonl\): missing_prompt 1$/m);
    const stopped = await runCli(['status', 'status-unreadable'], h.env());
    expect(stopped.stdout).toContain(
      'next      its file could not be read to its end: input file ' + input + ': the quoted field at line 4 is never closed (close it; a quote inside a quoted field is written twice, ""); rows before it may be done: fix the file and run the same command again (--batch-id status-unreadable) to finish without repeating them',
    );
    expect(stopped.stdout).not.toContain('--resume');

    await writeFile(input, 'id,prompt\na,fine\nb,\nc,"closed"\nd,more\n');
    // Run again without its --batch-id, the command is another batch: the folder's says which to name (QA: it paid for every row again elsewhere).
    const anotherBatch = await runCli(args.slice(0, -2), h.env());
    expect(anotherBatch.code).toBe(2);
    expect(anotherBatch.stderr).toContain('holds the outputs of batch status-unreadable, which batch');
    expect(anotherBatch.stderr).toContain('would replace: batch status-unreadable stopped at a line of its file it could not read: to finish it there without repeating its finished rows, run this command with --batch-id status-unreadable once the file is fixed; or give it another --out');
    const fixed = await runCli(args, h.env());
    expect(fixed.code, fixed.stderr).toBe(1); // its invalid row
    const done = await runCli(['status', 'status-unreadable'], h.env());
    expect(done.stdout).toContain('status-unreadable  completed');
    expect(done.stdout).not.toContain('could not be read');
  });
});
