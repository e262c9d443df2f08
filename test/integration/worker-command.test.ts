import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli, spawnCli, waitFor, waitForOutput } from '../helpers/cli.ts';
import { readJsonLines, tempDir, writePromptsCsv, writeSimConfig } from '../helpers/files.ts';
import { useSimulatorAndRedis } from '../helpers/harness.ts';
import { rowsHeldFor } from '../../src/execution/call-slots.ts';

describe('switchyard worker, on its own beside a detached run', () => {
  const h = useSimulatorAndRedis('worker-command', { latency_ms: 2, models: { broken: { fail_status: 400 }, sluggish: { latency_ms: 1500 } } });

  it('processes a detached batch, and says what it did when stopped', async () => {
    const dir = await tempDir('worker-command');
    const config = await writeSimConfig(dir, h.sim.url, {}, ['fast', 'broken']);
    const input = await writePromptsCsv(dir, 20, { model: (row) => (row === 20 ? 'broken' : undefined) });
    const out = join(dir, 'out');
    const worker = spawnCli(['worker', '--concurrency', '8'], h.env());
    try {
      await waitForOutput(() => worker.output().stdout, 'Worker running', 20_000);
      const detachedAt = Date.now();
      const detached = await runCli(['run', input, '--config', config, '--out', out, '--batch-id', 'standalone', '--detach'], h.env());
      expect(detached.code, detached.stderr).toBe(0);
      expect(detached.stdout).toContain('Detached; 1 worker is connected to this Redis and will take its rows. Write the outputs with "switchyard collect standalone".');
      expect((await runCli(['status'], h.env())).stdout).toMatch(/\n {2}standalone +running, not collected +/);
      // Which process that worker is, from the worker processes on record.
      expect((await runCli(['status', 'standalone'], h.env())).stdout).toMatch(new RegExp(`workers {3}1 worker is connected to this Redis \\(\\S+ pid ${worker.pid}\\)`));
      // Collected a while after its worker finished it: the report times the rows, not the wait.
      await waitFor(async () => (await h.redis.bitcount(`${h.prefix}:batch:{standalone}:finished`)) >= 20, 30_000);
      const rowsDoneWithin = Date.now() - detachedAt;
      await new Promise((resolve) => setTimeout(resolve, 3000));
      const collected = await runCli(['collect', 'standalone'], h.env());
      expect(collected.code, collected.stderr).toBe(1); // the "broken" row failed
      const timed = JSON.parse(await readFile(join(out, 'report.json'), 'utf8')) as { finished_at: string; totals: { elapsed_ms: number } };
      const lastRow = Math.max(...(await readJsonLines<{ completed_at: string }>(join(out, 'results.jsonl'))).map((r) => Date.parse(r.completed_at)));
      expect(timed.finished_at).toBe(new Date(lastRow).toISOString());
      // The batch began after detachedAt and its last row finished before rowsDoneWithin was taken;
      // timed to the collect, it would be about 3 s more.
      expect(timed.totals.elapsed_ms).toBeLessThanOrEqual(rowsDoneWithin);
      // Once written, collecting again says so, and leaves the report as it was.
      const report = await readFile(join(out, 'report.json'), 'utf8');
      const again = await runCli(['collect', 'standalone'], h.env());
      expect(again.code).toBe(1);
      expect(again.stdout).toContain(`standalone is already completed with failures: 19 of 20 rows succeeded. Its outputs are in ${out} (report.md for the summary).`);
      expect(await readFile(join(out, 'report.json'), 'utf8')).toBe(report);
    } finally {
      worker.kill('SIGTERM');
    }
    const stopped = await worker.done;
    expect(stopped.code, stopped.stderr).toBe(0);
    expect(stopped.stdout).toMatch(/Worker stopped after \d+ s: 20 rows \(1 failed\) of 1 batch \(standalone\), [\d.]+ rows\/s, \$\S+\./);
    const results = await readJsonLines<{ row: number; status: string }>(join(out, 'results.jsonl'));
    expect(results.map((r) => r.row)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    expect(results.filter((r) => r.status === 'failed').map((r) => r.row)).toEqual([20]);
  });

  it("a run whose workers find other batches' rows queued ahead of its own says so (QA: 10 rows took 25 s behind a server's, unexplained)", async () => {
    const dir = await tempDir('queued-ahead');
    const config = await writeSimConfig(dir, h.sim.url);
    const earlier = await writePromptsCsv(dir, 15);
    const detached = await runCli(['run', earlier, '--config', config, '--out', join(dir, 'out-earlier'), '--batch-id', 'queued-earlier', '--detach'], h.env());
    expect(detached.code, detached.stderr).toBe(0);
    const own = await writePromptsCsv(await tempDir('queued-own'), 3);
    const run = await runCli(['run', own, '--config', config, '--out', join(dir, 'out-own'), '--batch-id', 'queued-own'], h.env());
    expect(run.code, run.stdout + run.stderr).toBe(0);
    // They do not come first (batches take turns, row-priority.ts): the note says they share the workers.
    expect(run.stdout).toContain("Note: 15 rows of other batches (from --detach, `switchyard serve` or another run) are queued on this Redis: this run's rows take turns with them, 64 at a time, and the workers here take theirs too (each answer going to its own batch), so this run takes longer than alone.");
    // The earlier batch's rows were answered for it, and its collect writes them.
    expect((await runCli(['collect', 'queued-earlier'], h.env())).code).toBe(0);
    // With nothing queued ahead, nothing is said.
    const alone = await runCli(['run', own, '--config', config, '--out', join(dir, 'out-alone'), '--batch-id', 'queued-alone'], h.env());
    expect(alone.code).toBe(0);
    expect(alone.stdout).not.toContain('queued on this Redis');
    // A batch's own queued rows, which its resume runs, are not other batches' (QA: a resume was told its own rows came first).
    const own2 = await writePromptsCsv(await tempDir('queued-resumed'), 5);
    expect((await runCli(['run', own2, '--config', config, '--out', join(dir, 'out-resumed'), '--batch-id', 'queued-resumed', '--detach'], h.env())).code).toBe(0);
    const resumed = await runCli(['run', '--resume', 'queued-resumed'], h.env());
    expect(resumed.code, resumed.stdout + resumed.stderr).toBe(0);
    expect(resumed.stdout).not.toContain('queued on this Redis');
  });

  it('a --detach resume of a batch whose every row is done writes its outputs again itself, instead of leaving it running uncollected', async () => {
    const dir = await tempDir('detach-done');
    const config = await writeSimConfig(dir, h.sim.url);
    const input = await writePromptsCsv(dir, 3);
    const out = join(dir, 'out');
    expect((await runCli(['run', input, '--config', config, '--out', out, '--batch-id', 'detach-done'], h.env())).code).toBe(0);
    const again = await runCli(['run', '--resume', 'detach-done', '--detach'], h.env());
    expect(again.code, again.stdout + again.stderr).toBe(0);
    expect(again.stdout).toContain('Every row is done: nothing for workers to do, so its outputs are written again here.');
    expect(again.stdout).toContain('Rows    3 of 3 succeeded, 0 failed');
    expect((await runCli(['status', 'detach-done'], h.env())).stdout).toMatch(/^detach-done {2}completed\n/);
  });

  it('a worker without a provider\'s key leaves its rows to a worker that has it, instead of failing them', async () => {
    const dir = await tempDir('key-handoff');
    const config = await writeSimConfig(dir, h.sim.url, { providers: { sim: { base_url: h.sim.url, timeout_ms: 10_000, api_key_env: 'SY_TEST_HANDOFF_API_KEY' } } });
    const input = await writePromptsCsv(dir, 30);
    const keyless = spawnCli(['worker', '--concurrency', '8'], { ...h.env(), LOG_LEVEL: 'warn' });
    const keyed = spawnCli(['worker', '--concurrency', '2'], { ...h.env(), SY_TEST_HANDOFF_API_KEY: 'sk-test' });
    try {
      await waitForOutput(() => keyless.output().stdout, 'Worker running', 20_000);
      await waitForOutput(() => keyed.output().stdout, 'Worker running', 20_000);
      const out = join(dir, 'out');
      const detached = await runCli(['run', input, '--config', config, '--out', out, '--batch-id', 'handoff', '--detach'], h.env());
      expect(detached.code).toBe(0);
      expect(detached.stdout).toContain('Note: $SY_TEST_HANDOFF_API_KEY is not set here: rows for fast, slow are left to the workers on this Redis that have it.');
      const collected = await runCli(['collect', 'handoff'], h.env());
      expect(collected.code, collected.stdout + collected.stderr).toBe(0);
      const results = await readJsonLines<{ status: string }>(join(out, 'results.jsonl'));
      expect(results).toHaveLength(30);
      expect(results.every((r) => r.status === 'succeeded')).toBe(true);
      expect(keyless.output().stderr).toContain('rows that need $SY_TEST_HANDOFF_API_KEY, which is not set here, are left to the worker processes that have it');

      // A run without the key, while a worker that has it is connected, is not refused: it starts no worker of its own
      // (which would only take rows to hand them back), and the worker that has the key answers them.
      const here = await runCli(['run', input, '--config', config, '--out', join(dir, 'here'), '--batch-id', 'handoff-run'], h.env());
      expect(here.code, here.stdout + here.stderr).toBe(0);
      expect(here.stdout).toContain('Note: no model its rows may use has its key set here: the workers on this Redis that have the keys answer them, and this run writes the outputs.');
      expect(here.stdout).toMatch(/30 queued, for the workers on this Redis that have the keys\./);
      expect((await readJsonLines<{ status: string }>(join(dir, 'here', 'results.jsonl'))).every((r) => r.status === 'succeeded')).toBe(true);
    } finally {
      keyless.kill('SIGTERM');
      keyed.kill('SIGTERM');
      await Promise.all([keyless.done, keyed.done]);
    }
  });

  it("a --detach batch's rows that a keyless worker meets with no keyed worker connected wait for one (QA: all 300 failed when the keyless worker started first)", async () => {
    const dir = await tempDir('key-wait');
    const config = await writeSimConfig(dir, h.sim.url, { providers: { sim: { base_url: h.sim.url, timeout_ms: 10_000, api_key_env: 'SY_TEST_WAIT_API_KEY' } } });
    const input = await writePromptsCsv(dir, 20);
    const keyless = spawnCli(['worker', '--concurrency', '8'], { ...h.env(), LOG_LEVEL: 'warn' });
    let keyed: ReturnType<typeof spawnCli> | undefined;
    try {
      await waitForOutput(() => keyless.output().stdout, 'Worker running', 20_000);
      const out = join(dir, 'out');
      expect((await runCli(['run', input, '--config', config, '--out', out, '--batch-id', 'key-wait', '--detach'], h.env())).code).toBe(0);
      await waitForOutput(() => keyless.output().stderr, 'rows that need $SY_TEST_WAIT_API_KEY wait for a worker that has it, and none is connected', 20_000);
      keyed = spawnCli(['worker', '--concurrency', '4'], { ...h.env(), SY_TEST_WAIT_API_KEY: 'sk-test' });
      const collected = await runCli(['collect', 'key-wait'], h.env());
      expect(collected.code, collected.stdout + collected.stderr).toBe(0);
      const results = await readJsonLines<{ status: string }>(join(out, 'results.jsonl'));
      expect(results.map((r) => r.status)).toEqual(Array.from({ length: 20 }, () => 'succeeded'));
    } finally {
      keyless.kill('SIGTERM');
      keyed?.kill('SIGTERM');
      await Promise.all([keyless.done, keyed?.done]);
    }
  });

  it('a run whose rows only other workers can call says when the last of them leaves, and goes on when one is back', async () => {
    const dir = await tempDir('key-holder-left');
    const config = await writeSimConfig(dir, h.sim.url, { providers: { sim: { base_url: h.sim.url, timeout_ms: 10_000, api_key_env: 'SY_TEST_LEFT_API_KEY' } } }, ['sluggish']);
    const input = await writePromptsCsv(dir, 8);
    const out = join(dir, 'out');
    const keyEnv = { ...h.env(), SY_TEST_LEFT_API_KEY: 'sk-test' };
    const first = spawnCli(['worker', '--concurrency', '2'], keyEnv);
    await waitForOutput(() => first.output().stdout, 'Worker running', 20_000);
    const run = spawnCli(['run', input, '--config', config, '--out', out, '--batch-id', 'holder-left'], h.env());
    let second: ReturnType<typeof spawnCli> | undefined;
    try {
      await waitForOutput(() => run.output().stdout, 'for the workers on this Redis that have the keys', 20_000);
      // Stopped, the worker finishes its rows in hand (1.5 s each) and leaves; the rest wait in the queue.
      first.kill('SIGTERM');
      expect((await first.done).code).toBe(0);
      await waitForOutput(() => run.output().stdout, 'Warning: no worker is connected to this Redis any more: the rows left wait until one that has the models\' keys runs.', 20_000);
      second = spawnCli(['worker', '--concurrency', '1'], keyEnv);
      await waitForOutput(() => run.output().stdout, '1 worker is connected now: rows are being taken.', 20_000);
      const ended = await run.done;
      expect(ended.code, ended.stdout + ended.stderr).toBe(0);
    } finally {
      run.kill('SIGTERM');
      first.kill('SIGTERM');
      second?.kill('SIGTERM');
      await Promise.all([run.done, first.done, second?.done]);
    }
    const results = await readJsonLines<{ row: number; status: string }>(join(out, 'results.jsonl'));
    expect(results.map((r) => r.row)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(results.every((r) => r.status === 'succeeded')).toBe(true);
  });

  it('collect stopped by SIGTERM writes the outputs of the rows finished so far; collecting again writes them whole', async () => {
    const dir = await tempDir('collect-drain');
    // 600 calls a minute: the 60 rows take about 6 s, so the collect is stopped part-way.
    const models = { fast: { provider: 'sim', price: { input_per_mtok: 0.1, output_per_mtok: 0.2 }, rpm: 600 } };
    const config = await writeSimConfig(dir, h.sim.url, { models, default_model: 'fast' });
    const input = await writePromptsCsv(dir, 60);
    const out = join(dir, 'out');
    const worker = spawnCli(['worker', '--concurrency', '8'], h.env());
    try {
      await waitForOutput(() => worker.output().stdout, 'Worker running', 20_000);
      expect((await runCli(['run', input, '--config', config, '--out', out, '--batch-id', 'drained', '--detach'], h.env())).code).toBe(0);
      const collect = spawnCli(['collect', 'drained'], h.env());
      await waitForOutput(() => collect.output().stdout, 'Collecting drained', 20_000);
      await waitFor(async () => (await h.redis.bitcount(`${h.prefix}:batch:{drained}:finished`)) >= 5, 20_000);
      collect.kill('SIGTERM');
      const stopped = await collect.done;
      expect(stopped.code).toBe(143);
      const soFar = await readJsonLines<{ row: number }>(join(out, 'results.jsonl'));
      expect(soFar.length).toBeGreaterThan(0);
      expect(soFar.length).toBeLessThan(60);
      expect(stopped.stdout).toContain(`Stopped. The outputs above hold the ${soFar.length} rows finished so far. Nothing is lost: "switchyard collect drained" goes on from here and writes them whole.`);
      const report = JSON.parse(await readFile(join(out, 'report.json'), 'utf8')) as { totals: { rows: number; unfinished_rows: number | null } };
      expect(report.totals.rows).toBe(soFar.length);
      expect(report.totals.unfinished_rows).toBeGreaterThan(0);

      const whole = await runCli(['collect', 'drained'], h.env());
      expect(whole.code, whole.stderr).toBe(0);
      const results = await readJsonLines<{ row: number }>(join(out, 'results.jsonl'));
      expect(results.map((r) => r.row)).toEqual(Array.from({ length: 60 }, (_, i) => i + 1));
      expect((JSON.parse(await readFile(join(out, 'report.json'), 'utf8')) as typeof report).totals.unfinished_rows).toBe(0);
    } finally {
      worker.kill('SIGTERM');
      await worker.done;
    }
  });

  it('a run stopped while a worker runs some of its rows says they finish there and that the resume writes them', async () => {
    const dir = await tempDir('stop-beside-worker');
    const config = await writeSimConfig(dir, h.sim.url, {}, ['sluggish']);
    const input = await writePromptsCsv(dir, 40);
    const worker = spawnCli(['worker', '--concurrency', '8'], h.env());
    try {
      await waitForOutput(() => worker.output().stdout, 'Worker running', 20_000);
      const run = spawnCli(['run', input, '--config', config, '--out', join(dir, 'out'), '--batch-id', 'beside', '--concurrency', '4'], h.env());
      // Both processes hold rows (each call takes 1.5 s) when the run is stopped.
      await waitFor(async () => (await h.redis.llen(`${h.prefix}:prompts:active`)) >= 12, 20_000);
      const stoppedAt = Date.now();
      run.kill('SIGTERM');
      const stopped = await run.done;
      expect(stopped.code).toBe(143);
      expect(stopped.stdout).toMatch(/ \d+ rows? other workers were running (stays|stay) with them: (it finishes|they finish) there, after these outputs were written, and the resume writes (it|them)\./);
      // Each row is counted once: written, taken off the queue, or still with the worker (a row whose result is in, its job not yet done, is written).
      const said = /hold the (\d+) rows? finished so far\. (?:(\d+) queued rows? came off the queue.*?)?(\d+) rows? other workers were running/.exec(stopped.stdout);
      expect(said, stopped.stdout).not.toBeNull();
      expect(Number(said![1]) + Number(said![2] ?? 0) + Number(said![3])).toBeLessThanOrEqual(40);
      const resumedAt = Date.now();
      const resumed = await runCli(['run', '--resume', 'beside'], h.env());
      expect(resumed.code, resumed.stdout + resumed.stderr).toBe(0);
      expect((await readJsonLines<{ row: number }>(join(dir, 'out', 'results.jsonl'))).map((r) => r.row)).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));
      // The queued rows came off at the stop, not once the run's own calls had finished (1.5 s later), and so did
      // the rows the run parked as it stopped: the worker started no call after it but for the 2 rows it held beyond its 8 calls.
      const startedAfterStop = (await readJsonLines<{ started_at: string }>(join(dir, 'out', 'costs.jsonl'))).filter((call) => {
        const started = Date.parse(call.started_at);
        return started > stoppedAt + 300 && started < resumedAt;
      });
      expect(startedAfterStop.length).toBeLessThanOrEqual(rowsHeldFor(8) - 8);
    } finally {
      worker.kill('SIGTERM');
      await worker.done;
    }
  });

  it('collect says it waits for workers, and how to go on when stopped before they finish', async () => {
    const dir = await tempDir('collect-waits');
    const config = await writeSimConfig(dir, h.sim.url);
    const input = await writePromptsCsv(dir, 3);
    const detached = await runCli(['run', input, '--config', config, '--out', join(dir, 'out'), '--batch-id', 'nobody-works', '--detach'], h.env());
    expect(detached.code, detached.stderr).toBe(0);
    const collect = spawnCli(['collect', 'nobody-works'], h.env());
    await waitForOutput(() => collect.output().stdout, 'Collecting nobody-works: 3 of its 3 rows are not done yet, and no worker is connected to this Redis', 20_000);
    expect(collect.output().stdout).toContain('start "switchyard worker" here or on another machine, with the same REDIS_URL and SWITCHYARD_PREFIX');
    const status = await runCli(['status', 'nobody-works'], h.env());
    expect(status.stdout).toContain('workers   no worker is connected to this Redis (rows finish only while one runs)');
    expect(status.stdout).toMatch(/next {6}\S+ pid \d+ waits to write its outputs, but no worker takes its rows: start `switchyard worker`/);
    collect.kill('SIGTERM');
    const stopped = await collect.done;
    expect(stopped.code).toBe(143);
    // The outputs say where it stands, no row done yet, rather than not being there.
    expect(stopped.stdout).toContain('Rows    0 finished; 3 not run yet');
    expect(stopped.stdout).toContain('Stopped. The outputs above hold the 0 rows finished so far. Nothing is lost: "switchyard collect nobody-works" goes on from here and writes them whole.');
  });

  it("says once that it runs the queued rows of a batch whose run is gone, and what that means (QA: a serve ran a stopped night's rows, unsaid)", async () => {
    const dir = await tempDir('worker-gone-run');
    const config = await writeSimConfig(dir, h.sim.url, {}, ['sluggish']);
    const out = join(dir, 'out');
    const first = spawnCli(['run', await writePromptsCsv(dir, 24), '--config', config, '--out', out, '--batch-id', 'gone-run', '--concurrency', '2'], h.env());
    await waitForOutput(() => first.output().stdout, 'Read 24 rows', 20_000);
    // Gone without taking its rows off the queue, as a run that gave up on Redis in its stop (exit 3) leaves them.
    first.kill('SIGKILL');
    await first.done;
    const worker = spawnCli(['worker', '--concurrency', '8'], h.env({ LOG_LEVEL: 'warn' }));
    const note = "batch gone-run: its run is gone with rows still queued (it stopped without taking them off the queue: Redis away at its stop, or killed): this process runs them meanwhile. Their answers are kept for `switchyard run --resume gone-run`, which writes them without paying again; what they cost counts toward the month's spend (budget.monthly_usd)";
    try {
      await waitForOutput(() => worker.output().stderr, note, 40_000);
      // Its resume takes it up: the rest of its rows are its own again, and the worker says nothing more of it.
      const resumed = await runCli(['run', '--resume', 'gone-run'], h.env());
      expect(resumed.code, resumed.stderr).toBe(0);
      expect(resumed.stderr).not.toContain('its run is gone');
      const results = await readJsonLines<{ row: number }>(join(out, 'results.jsonl'));
      expect(results.map((r) => r.row).sort((a, b) => a - b)).toEqual(Array.from({ length: 24 }, (_, i) => i + 1));
    } finally {
      worker.kill('SIGTERM');
    }
    const stopped = await worker.done;
    expect(stopped.stderr.split(note)).toHaveLength(2);
  });
});

describe('switchyard worker beside a run on the built-in models', () => {
  const h = useSimulatorAndRedis('worker-beside-builtin', { latency_ms: 2 });

  it('hands the rows it cannot serve straight back while their run is there to take them', async () => {
    const dir = await tempDir('worker-beside-builtin');
    const worker = spawnCli(['worker', '--concurrency', '16'], h.env());
    try {
      await waitForOutput(() => worker.output().stdout, 'Worker running', 20_000);
      const started = Date.now();
      // No --config: the built-in simulator inside the run, which the worker cannot call.
      const run = await runCli(['run', await writePromptsCsv(dir, 150), '--out', join(dir, 'out'), '--batch-id', 'builtin-beside', '--concurrency', '16'], h.env());
      const took = Date.now() - started;
      expect(run.code, run.stderr).toBe(0);
      expect(await readJsonLines(join(dir, 'out', 'results.jsonl'))).toHaveLength(150);
      // The worker takes about half the rows and gives them back: each waits a moment (2.3 s in all
      // here), not a backoff doubling from 1 s (past a minute; the bound leaves room for a loaded machine).
      expect(took).toBeLessThan(30_000);
    } finally {
      worker.kill('SIGINT');
      await worker.done;
    }
  });
});
