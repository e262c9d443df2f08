import { readFile, writeFile } from 'node:fs/promises';
import { createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { Queue } from 'bullmq';
import { describe, expect, it } from 'vitest';
import { rowsHeldFor } from '../../src/execution/call-slots.ts';
import { limiterKey } from '../../src/limits/model-limiter.ts';
import { BatchStore } from '../../src/queue/batch-state.ts';
import { PROMPT_QUEUE } from '../../src/queue/keys.ts';
import { unqueueBatch } from '../../src/queue/unqueue-batch.ts';
import type { CallRecord, RowResult } from '../../src/output/records.ts';
import type { Report } from '../../src/output/report-json.ts';
import { runCli, spawnCli, waitFor, waitForOutput } from '../helpers/cli.ts';
import { readJsonLines, tempDir, writePromptsCsv, writeSimConfig } from '../helpers/files.ts';
import { useSimulatorAndRedis } from '../helpers/harness.ts';

function expectEachRowOnce(results: RowResult[], rows: number): void {
  expect(results.map((r) => r.row)).toEqual(Array.from({ length: rows }, (_, i) => i + 1));
  expect(results.every((r) => r.status === 'succeeded')).toBe(true);
}

describe('crash safety: killed processes lose no row and double none', () => {
  const h = useSimulatorAndRedis('kill-resume', { latency_ms: 25, latency_jitter_ms: 10, seed: 3, models: { down: { fail_status: 503 } } });
  const finishedKeyOf = (batchId: string) => `${h.prefix}:batch:{${batchId}}:finished`;
  /** The batch's jobs waiting in the prompts queue, or parked there. */
  const queuedJobsOf = async (batchId: string) => {
    const [waiting, prioritized, delayed] = await Promise.all([h.redis.lrange(`${h.prefix}:prompts:wait`, 0, -1), h.redis.zrange(`${h.prefix}:prompts:prioritized`, '0', '-1'), h.redis.zrange(`${h.prefix}:prompts:delayed`, '0', '-1')]);
    return [...waiting, ...prioritized, ...delayed].filter((id) => id.startsWith(`${batchId}_`));
  };

  /** Waits until `rows` of the batch's rows have finished (rows a killed process may not have reached). */
  const untilFinished = (batchId: string, rows: number) => waitFor(async () => (await h.redis.bitcount(finishedKeyOf(batchId))) >= rows, 30_000);

  it('kill -9 of the run process (workers and collector) mid-batch, then --resume: its rows come back at once, and every row is there exactly once', async () => {
    const dir = await tempDir('kill');
    // Locks that would keep the killed process's rows for a minute: the resume hands them back at once.
    const config = await writeSimConfig(dir, h.sim.url, { queue: { lock_ms: 60_000 } });
    const input = await writePromptsCsv(dir, 600);
    const out = join(dir, 'out');
    const finishedKey = finishedKeyOf('killed');

    const first = spawnCli(['run', input, '--config', config, '--out', out, '--batch-id', 'killed', '--concurrency', '16'], h.env());
    await untilFinished('killed', 150);
    first.kill('SIGKILL');
    await first.done;
    const finishedAtKill = await h.redis.bitcount(finishedKey);
    expect(finishedAtKill).toBeLessThan(600);

    const resumeStarted = Date.now();
    const resumed = await runCli(['run', '--resume', 'killed', '--config', config], h.env());
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(Date.now() - resumeStarted).toBeLessThan(20_000);
    expect(resumed.stdout).toMatch(/already done/);
    expect(resumed.stdout).toMatch(/The batch's last run \(\S+ pid \d+\) stopped without finishing; the \d+ rows it held are back in the queue\./);
    expect(await h.redis.hlen(`${h.prefix}:worker-processes`)).toBe(0); // the dead one forgotten, the resume's own unregistered

    const results = await readJsonLines<RowResult>(join(out, 'results.jsonl'));
    expectEachRowOnce(results, 600);
    // Succeeded calls on record: exactly one per row. A call cut off by the kill never got a record,
    // and no row that had finished was run again.
    const calls = await readJsonLines<CallRecord>(join(out, 'costs.jsonl'));
    const succeededPerRow = new Map<number, number>();
    for (const call of calls.filter((c) => c.status === 'succeeded')) succeededPerRow.set(call.row, (succeededPerRow.get(call.row) ?? 0) + 1);
    const paidTwice = [...succeededPerRow].filter(([, n]) => n > 1).map(([row]) => row);
    expect(paidTwice, JSON.stringify(calls.filter((c) => paidTwice.includes(c.row)))).toEqual([]);
    expect(succeededPerRow.size).toBe(600);
    // The simulator answered at most the rows plus the rows the killed process held: each may have
    // had its answer (a call slot frees before the row's result is published) without recording it.
    expect(h.sim.stats().models.fast!.requests).toBeLessThanOrEqual(600 + rowsHeldFor(16));
  });

  it('kill -9 longer ago than queue.lock_ms: the resume hands back the rows whose locks lapsed at once, not two stalled checks later (QA: 11.5 s without a call)', async () => {
    const dir = await tempDir('kill-lapsed');
    // A stalled check every 30 s: rows left to BullMQ's own checks would wait up to a minute.
    const config = await writeSimConfig(dir, h.sim.url, { queue: { lock_ms: 60_000 } });
    const input = await writePromptsCsv(dir, 300);
    const out = join(dir, 'out');
    const first = spawnCli(['run', input, '--config', config, '--out', out, '--batch-id', 'lapsed', '--concurrency', '8'], h.env());
    await untilFinished('lapsed', 40);
    first.kill('SIGKILL');
    await first.done;
    // As if lock_ms had passed since the kill: the locks of the rows it held are gone.
    const active = await h.redis.lrange(`${h.prefix}:prompts:active`, 0, -1);
    expect(active.length).toBeGreaterThan(0);
    await h.redis.del(...active.map((id) => `${h.prefix}:prompts:${id}:lock`));

    const resumeStarted = Date.now();
    const resumed = await runCli(['run', '--resume', 'lapsed', '--config', config], h.env());
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(Date.now() - resumeStarted).toBeLessThan(15_000);
    expect(resumed.stdout).toMatch(/The batch's last run \(\S+ pid \d+\) stopped without finishing; the \d+ rows it held are back in the queue\./);
    expectEachRowOnce(await readJsonLines<RowResult>(join(out, 'results.jsonl')), 300);
  });

  it("the next run of another batch takes a killed run's queued rows off the queue instead of paying for them, and leaves a detached batch's alone", async () => {
    h.sim.reset();
    const dir = await tempDir('orphan');
    const config = await writeSimConfig(dir, h.sim.url, { queue: { lock_ms: 60_000 } });
    const big = await writePromptsCsv(dir, 600);
    const first = spawnCli(['run', big, '--config', config, '--out', join(dir, 'killed'), '--batch-id', 'orphaned', '--concurrency', '4'], h.env());
    await untilFinished('orphaned', 20);
    // On a loaded machine the file may not be all queued yet: the point is a killed run's queued rows.
    await waitFor(async () => (await queuedJobsOf('orphaned')).length > 300, 30_000);
    first.kill('SIGKILL');
    await first.done;
    const detached = await runCli(['run', await writePromptsCsv(await tempDir('orphan-detached'), 50), '--config', config, '--out', join(dir, 'detached'), '--batch-id', 'for-workers', '--detach'], h.env());
    expect(detached.code, detached.stderr).toBe(0);
    const orphanedQueued = (await queuedJobsOf('orphaned')).length;
    expect(orphanedQueued).toBeGreaterThan(300);
    const detachedQueued = (await queuedJobsOf('for-workers')).length;
    const finishedAtKill = await h.redis.bitcount(finishedKeyOf('orphaned'));

    h.sim.reset();
    const small = await writePromptsCsv(await tempDir('orphan-next'), 10);
    const next = await runCli(['run', small, '--config', config, '--out', join(dir, 'next'), '--batch-id', 'next-night'], h.env());
    expect(next.code, next.stderr).toBe(0);
    expect(next.stdout).toContain(`Batch orphaned has rows queued but its run is gone (killed?): took ${orphanedQueued.toLocaleString('en-US')} rows off the queue, so this run does not run them for it. \`switchyard run --resume orphaned\` finishes it.`);
    expect(next.stdout).not.toContain('Batch for-workers');
    expect(await queuedJobsOf('orphaned')).toEqual([]);
    // Nor the rows the killed run had in hand, which this run's worker found held by a dead process
    // and handed back: taken off too when they came round, not answered for the killed batch.
    expect(await h.redis.bitcount(finishedKeyOf('orphaned'))).toBe(finishedAtKill);
    // The detached batch's rows are any worker's: this run may have served some, and the rest wait.
    expect((await queuedJobsOf('for-workers')).length).toBeLessThanOrEqual(detachedQueued);
    const queue = new Queue(PROMPT_QUEUE, { connection: h.redis.duplicate(), prefix: h.prefix });
    await unqueueBatch(queue, new BatchStore(h.redis, { prefix: h.prefix }), 'for-workers'); // not for the tests after this one
    await queue.close();

    const resumed = await runCli(['run', '--resume', 'orphaned', '--concurrency', '32'], h.env());
    expect(resumed.code, resumed.stderr).toBe(0);
    expectEachRowOnce(await readJsonLines<RowResult>(join(dir, 'killed', 'results.jsonl')), 600);
  });

  it('kill -9 of a separate worker process mid-batch: the run on the same machine hands its rows back within seconds and completes by itself', async () => {
    h.sim.reset();
    const dir = await tempDir('killworker');
    const config = await writeSimConfig(dir, h.sim.url, { queue: { lock_ms: 60_000 } });
    const input = await writePromptsCsv(dir, 400);
    const out = join(dir, 'out');

    const extraWorker = spawnCli(['worker', '--concurrency', '24', '--lock-ms', '60000'], h.env());
    const run = spawnCli(['run', input, '--config', config, '--out', out, '--batch-id', 'kw', '--concurrency', '4'], h.env());
    await untilFinished('kw', 100);
    extraWorker.kill('SIGKILL');
    await extraWorker.done;
    const killedAt = Date.now();
    const result = await run.done;
    expect(result.code, result.stderr).toBe(0);
    // Not the minute its locks would have lasted: the run looks for dead processes every 5 s.
    expect(Date.now() - killedAt).toBeLessThan(20_000);
    expect(result.stdout).toMatch(/\d+ rows? held by \S+ pid \d+, which died on this machine, (is|are) back in the queue \(one of a batch whose run died too waits for that batch's resume; one of a --detach'ed batch or a server's is run\)\./);
    const results = await readJsonLines<RowResult>(join(out, 'results.jsonl'));
    expectEachRowOnce(results, 400);
  });
  it('Ctrl-C stops reading the file and taking rows at once and writes the outputs so far; --resume then finishes every row exactly once', async () => {
    h.sim.reset();
    const dir = await tempDir('interrupt');
    // A small max_pending keeps most of the file unread while the first rows run.
    const config = await writeSimConfig(dir, h.sim.url, { queue: { max_pending: 100, enqueue_chunk: 50 } });
    // Far more rows than are read by the time the stop comes (it comes after 100 finished; the calls stay under 600).
    const rows = 1200;
    const input = await writePromptsCsv(dir, rows);
    const out = join(dir, 'out');

    const first = spawnCli(['run', input, '--config', config, '--out', out, '--batch-id', 'interrupted', '--concurrency', '8'], h.env());
    await untilFinished('interrupted', 100);
    const interruptedAt = Date.now();
    first.kill('SIGINT');
    const ended = await first.done;
    expect(ended.code).toBe(130);
    expect(Date.now() - interruptedAt).toBeLessThan(3000);
    expect(ended.stdout).toContain('Interrupted. Finishing the rows in hand, then writing the outputs so far (a second Ctrl-C quits at once).');
    // The outputs hold every row finished so far, once each; the file was not read to its end, so the rest is not counted.
    const finishedAtStop = await h.redis.bitcount(finishedKeyOf('interrupted'));
    const soFar = await readJsonLines<RowResult>(join(out, 'results.jsonl'));
    expect(soFar).toHaveLength(finishedAtStop);
    expect(new Set(soFar.map((r) => r.row)).size).toBe(finishedAtStop);
    const partial = JSON.parse(await readFile(join(out, 'report.json'), 'utf8')) as Report;
    expect(partial.totals).toMatchObject({ rows: finishedAtStop, succeeded: finishedAtStop, unfinished_rows: null });
    expect(ended.stdout).toMatch(new RegExp(`\nRows +${finishedAtStop.toLocaleString('en-US')} of ${finishedAtStop.toLocaleString('en-US')} succeeded, 0 failed; the rest of the file not run yet\n`));
    expect(ended.stdout).toMatch(
      new RegExp(`\nStopped early: the outputs above hold the ${finishedAtStop.toLocaleString('en-US')} rows finished so far\\.( [\\d,]+ queued rows? came off the queue, so no other run or worker takes (it|them) meanwhile\\.)? Nothing done is lost or paid for again: switchyard run --resume interrupted runs the rest and writes them whole\\.\n`),
    );
    expect(await queuedJobsOf('interrupted')).toEqual([]);
    expect(await readFile(join(out, 'report.md'), 'utf8')).toContain('**Stopped early: ');
    expect(ended.stdout).not.toContain(`Read ${rows.toLocaleString('en-US')} rows`);
    // Well short of the file: what was in flight or queued when Ctrl-C came, not the rest.
    expect(h.sim.stats().models.fast!.requests).toBeLessThan(600);
    expect(await h.redis.hget(`${h.prefix}:batch:{interrupted}`, 'total')).toBeNull();
    const status = await runCli(['status', 'interrupted'], h.env());
    expect(status.stdout).toContain('workers   no worker is connected to this Redis');
    expect(status.stdout).toContain(`output    ${out} (the ${finishedAtStop.toLocaleString('en-US')} rows finished when a run or collect of it stopped; all of them once it finishes)`);
    expect(status.stdout).toContain('next      its run stopped before the end: `switchyard run --resume interrupted` finishes it');
    expect(status.stdout.split('\n')[0]).toBe('interrupted  stopped while enqueuing');
    expect((await runCli(['status'], h.env())).stdout).toMatch(/\n {2}interrupted +stopped while enqueuing +/);
    // collect would wait for ever: no worker finishes a stopped run's rows (they came off the queue).
    const collect = await runCli(['collect', 'interrupted'], h.env());
    expect(collect.code).toBe(2);
    expect(collect.stderr).toContain('batch interrupted was started by "switchyard run" (not --detach), and its run stopped before its file was read to the end: those rows are left for its resume, not for workers, so collect would wait for ever. "switchyard run --resume interrupted" finishes it');

    const resumed = await runCli(['run', '--resume', 'interrupted'], h.env());
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(resumed.stdout).toContain('workers here making up to 8 calls at a time'); // the --concurrency it was started with
    expectEachRowOnce(await readJsonLines<RowResult>(join(out, 'results.jsonl')), rows);
    const succeeded = (await readJsonLines<CallRecord>(join(out, 'costs.jsonl'))).filter((c) => c.status === 'succeeded');
    expect(new Set(succeeded.map((c) => c.row)).size).toBe(rows);
    expect(succeeded).toHaveLength(rows);
  });
  it('Ctrl-C before any row finished still writes the outputs: no row yet, every one not run, and the calls made', async () => {
    h.sim.reset();
    const dir = await tempDir('interrupt-early');
    // Every call fails and the rows wait out a long backoff: none finishes before the stop.
    const config = await writeSimConfig(dir, h.sim.url, { retry: { max_attempts: 3, base_delay_ms: 60_000, max_delay_ms: 60_000 } }, ['down']);
    const input = await writePromptsCsv(dir, 5);
    const out = join(dir, 'out');
    const run = spawnCli(['run', input, '--config', config, '--out', out, '--batch-id', 'early-stop'], h.env());
    await waitFor(async () => (h.sim.stats().models.down?.requests ?? 0) >= 5, 20_000);
    run.kill('SIGINT');
    const ended = await run.done;
    expect(ended.code).toBe(130);
    expect(await readJsonLines<RowResult>(join(out, 'results.jsonl'))).toEqual([]);
    const report = JSON.parse(await readFile(join(out, 'report.json'), 'utf8')) as Report;
    expect(report.totals).toMatchObject({ rows: 0, unfinished_rows: 5, calls: 5 });
    expect(await readJsonLines<CallRecord>(join(out, 'costs.jsonl'))).toHaveLength(5);
    expect(ended.stdout).toContain('Stopped early: the outputs above hold the 0 rows finished so far.');
  });

  it('SIGTERM (a scheduler or a container stopping) stops like Ctrl-C, with exit code 143; --resume finishes the rest once', async () => {
    h.sim.reset();
    const dir = await tempDir('sigterm');
    const config = await writeSimConfig(dir, h.sim.url);
    // Four calls at a time: the 600 rows would take some 4 s, and the stop comes after 50.
    const rows = 600;
    const input = await writePromptsCsv(dir, rows);
    const out = join(dir, 'out');
    const finishedKey = finishedKeyOf('terminated');
    const first = spawnCli(['run', input, '--config', config, '--out', out, '--batch-id', 'terminated', '--concurrency', '4'], h.env());
    await untilFinished('terminated', 50);
    first.kill('SIGTERM');
    const ended = await first.done;
    expect(ended.code).toBe(143);
    expect(ended.stdout).toContain('Interrupted (SIGTERM). Finishing the rows in hand');
    const finished = await h.redis.bitcount(finishedKey);
    expect(finished).toBeLessThan(rows);
    // Written after the rows in hand finished: the outputs hold what Redis says is done, and the report counts the rest.
    expect(await readJsonLines<RowResult>(join(out, 'results.jsonl'))).toHaveLength(finished);
    const partial = JSON.parse(await readFile(join(out, 'report.json'), 'utf8')) as Report;
    expect(partial.totals).toMatchObject({ rows: finished, unfinished_rows: rows - finished });
    expect(ended.stdout).toContain(`; ${(rows - finished).toLocaleString('en-US')} rows not run yet\n`);
    expect(ended.stdout).toMatch(/Stopped early: .* switchyard run --resume terminated runs the rest and writes them whole\.\n/);
    // The rest of the batch came off the queue: the next run of another batch, or any worker, would run it and pay for it uncollected.
    expect(ended.stdout).toMatch(/ [\d,]+ queued rows came off the queue, so no other run or worker takes them meanwhile\./);
    expect(await queuedJobsOf('terminated')).toEqual([]);
    expect(await h.redis.exists(`${h.prefix}:batch:{terminated}:lease`)).toBe(0); // released, so a resume needs no wait

    const resumed = await runCli(['run', '--resume', 'terminated', '--concurrency', '32'], h.env());
    expect(resumed.code, resumed.stderr).toBe(0);
    expectEachRowOnce(await readJsonLines<RowResult>(join(out, 'results.jsonl')), rows);
  });

  it('Ctrl-C gives back the rate-limit slots its parked rows had booked: the resume calls at once instead of waiting behind them', async () => {
    const dir = await tempDir('booked');
    // 20 calls a second: 200 rows take 10 s, and rows waiting their turn are parked with a slot booked.
    const config = await writeSimConfig(dir, h.sim.url, { models: { fast: { provider: 'sim', price: { input_per_mtok: 0.1, output_per_mtok: 0.2 }, rpm: 1200 } } });
    const input = await writePromptsCsv(dir, 200);
    const out = join(dir, 'out');
    const first = spawnCli(['run', input, '--config', config, '--out', out, '--batch-id', 'booked'], h.env());
    await untilFinished('booked', 30);
    first.kill('SIGINT');
    expect((await first.done).code).toBe(130);
    // Booked no further ahead than the rows in hand needed (without the release: the 170-odd parked rows' 8 s).
    const [next] = await h.redis.hmget(limiterKey(h.prefix, `${h.sim.url.replace(/\/+$/, '')} fast`), 'req');
    const [seconds, micros] = await h.redis.time();
    expect((Number(next) - (Number(seconds) * 1e6 + Number(micros))) / 1000).toBeLessThan(1500);

    const resumeStarted = Date.now();
    const resumed = await runCli(['run', '--resume', 'booked', '--config', config], h.env());
    expect(resumed.code, resumed.stderr).toBe(0);
    expectEachRowOnce(await readJsonLines<RowResult>(join(out, 'results.jsonl')), 200);
    const resumeCalls = (await readJsonLines<CallRecord>(join(out, 'costs.jsonl'))).map((c) => Date.parse(c.started_at)).filter((at) => at >= resumeStarted);
    // Waiting behind the parked rows' bookings would put the first call 8 s out; the rest is the resume's start-up, slow on a loaded machine.
    expect(Math.min(...resumeCalls) - resumeStarted).toBeLessThan(5000);
  });

  it('a second run of a batch that is running now stops before writing anything; the first finishes every row once', async () => {
    h.sim.reset();
    const dir = await tempDir('twice');
    const config = await writeSimConfig(dir, h.sim.url);
    const rows = 400;
    const input = await writePromptsCsv(dir, rows);
    const out = join(dir, 'out');
    // Two calls at a time (about 5 s), and answers of 2 s while the other commands start: still running
    // however long their starts take (under the full suite's load, they once took longer than its 5 s).
    const first = spawnCli(['run', input, '--config', config, '--out', out, '--batch-id', 'twice', '--concurrency', '2'], h.env());
    await untilFinished('twice', 20);
    const latency = h.sim.options().latency_ms;
    h.sim.setOptions({ latency_ms: 2000 });
    try {
      expect((await runCli(['status', 'twice'], h.env())).stdout).toMatch(/next {6}in progress, run by \S+ pid \d+/);
      // The same command again, in another terminal: refused at once, the first process being alive.
      const second = await runCli(['run', input, '--config', config, '--out', out, '--batch-id', 'twice'], h.env());
      expect(second.code, second.stderr).toBe(2);
      expect(second.stderr).toMatch(/batch twice is being run by another process right now \(\S+ pid \d+\), which writes its outputs; wait for it to finish or stop it first/);
      // A --detach of it would rewrite its settings (--model here) under the running process: refused too.
      const detached = await runCli(['run', input, '--config', config, '--batch-id', 'twice', '--detach', '--model', 'slow'], h.env());
      expect(detached.code, detached.stdout).toBe(2);
      expect(detached.stderr).toMatch(/batch twice is being run by another process right now/);
      expect(await h.redis.hget(`${h.prefix}:batch:{twice}`, 'model_override')).toBeNull();
      // Another --out for the same batch would split its outputs: refused too.
      const elsewhere = await runCli(['run', input, '--config', config, '--out', join(dir, 'out2'), '--batch-id', 'twice'], h.env());
      expect(elsewhere.code).toBe(2);
      expect(elsewhere.stderr).toContain(`batch twice writes its outputs to ${out}, not ${join(dir, 'out2')}: leave --out off to go on with it`);
    } finally {
      h.sim.setOptions({ latency_ms: latency });
    }
    const done = await first.done;
    expect(done.code, done.stderr).toBe(0);
    expectEachRowOnce(await readJsonLines<RowResult>(join(out, 'results.jsonl')), rows);
    // Released at the end: the next run of the batch goes ahead at once.
    expect(await h.redis.exists(`${h.prefix}:batch:{twice}:lease`)).toBe(0);
  });
  it("a batch on the built-in simulator whose process stopped is left for its resume, not failed by another batch's workers", async () => {
    const dir = await tempDir('orphan');
    const outA = join(dir, 'a');
    const finishedA = finishedKeyOf('orphan');
    const orphan = spawnCli(['run', await writePromptsCsv(await tempDir('orphan-in'), 600), '--out', outA, '--batch-id', 'orphan', '--concurrency', '4'], h.env());
    await untilFinished('orphan', 50);
    // Ctrl-C: its simulator stops with it, and its queued rows stay in the queue. (After a kill -9
    // the rows it held would wait out queue.lock_ms, 30 s for the built-in config, before a resume.)
    orphan.kill('SIGINT');
    expect((await orphan.done).code).toBe(130);
    const finishedAtKill = await h.redis.bitcount(finishedA);

    // Another batch in another process: its workers meet the orphan's rows first and hand them back.
    const bystander = await runCli(['run', await writePromptsCsv(dir, 100), '--config', await writeSimConfig(dir, h.sim.url), '--out', join(dir, 'b'), '--batch-id', 'bystander'], h.env());
    expect(bystander.code, bystander.stderr).toBe(0);
    expect(bystander.stderr).not.toContain('orphan');
    expect(await h.redis.bitcount(finishedA)).toBe(finishedAtKill);

    const resumed = await runCli(['run', '--resume', 'orphan'], h.env());
    expect(resumed.code, resumed.stderr).toBe(0);
    expectEachRowOnce(await readJsonLines<RowResult>(join(outA, 'results.jsonl')), 600);
  });
});

describe('a stop while the provider is slow', () => {
  const h = useSimulatorAndRedis('stop-slow', { latency_ms: 1500 });

  it('sends no call after Ctrl-C: the calls in flight finish, and the rows held for the next call slots wait for the resume', async () => {
    const dir = await tempDir('stop-slow');
    const config = await writeSimConfig(dir, h.sim.url);
    const input = await writePromptsCsv(dir, 8);
    const out = join(dir, 'out');
    // Two call slots: the worker holds four rows, two calling and two waiting for a slot.
    const run = spawnCli(['run', input, '--config', config, '--out', out, '--batch-id', 'stop-slow', '--concurrency', '2'], h.env());
    await waitFor(async () => (h.sim.stats().models.fast?.requests ?? 0) >= 2, 20_000);
    const stoppedAt = Date.now();
    run.kill('SIGINT');
    const ended = await run.done;
    expect(ended.code, ended.stdout + ended.stderr).toBe(130);
    // One call's time at most, not two (the waiting rows calling after the first two).
    expect(Date.now() - stoppedAt).toBeLessThan(1500 + 1000);
    expect(h.sim.stats().models.fast?.requests).toBe(2);
    expect(await readJsonLines<CallRecord>(join(out, 'costs.jsonl'))).toHaveLength(2);

    const resumed = await runCli(['run', '--resume', 'stop-slow'], h.env());
    expect(resumed.code, resumed.stdout + resumed.stderr).toBe(0);
    expectEachRowOnce(await readJsonLines<RowResult>(join(out, 'results.jsonl')), 8);
    expect(h.sim.stats().models.fast?.requests).toBe(8);
  }, 40_000);

  it('a second Ctrl-C quits at once, without waiting for the calls in flight', async () => {
    h.sim.reset();
    const dir = await tempDir('stop-twice');
    const config = await writeSimConfig(dir, h.sim.url);
    const input = await writePromptsCsv(dir, 4);
    const run = spawnCli(['run', input, '--config', config, '--out', join(dir, 'out'), '--batch-id', 'stop-twice', '--concurrency', '2'], h.env());
    await waitFor(async () => (h.sim.stats().models.fast?.requests ?? 0) >= 2, 20_000);
    run.kill('SIGINT');
    await waitForOutput(() => run.output().stdout, 'a second Ctrl-C quits at once', 10_000);
    const quitAt = Date.now();
    run.kill('SIGINT');
    const ended = await run.done;
    expect(ended.code, ended.stdout + ended.stderr).toBe(130);
    expect(Date.now() - quitAt).toBeLessThan(1000);
    expect(ended.stdout).toContain('Quit at once (SIGINT): the calls in flight are not recorded, and their rows run again on `switchyard run --resume stop-twice`.');
  }, 40_000);
});

describe('a stop while the command starts, before its own stop handling is installed', () => {
  const h = useSimulatorAndRedis('stop-at-start');

  /** A "Redis" that takes connections and never answers: the command waits there, at its start. */
  async function silentRedis(): Promise<{ url: string; connected: () => boolean; close: () => void }> {
    const sockets: Socket[] = [];
    const server = createServer((socket) => sockets.push(socket));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as { port: number };
    return {
      url: `redis://127.0.0.1:${port}`,
      connected: () => sockets.length > 0,
      close: () => {
        for (const socket of sockets) socket.destroy();
        server.close();
      },
    };
  }

  it('Ctrl-C while run waits for Redis says nothing was queued and exits 130, not killed by the signal (QA: ended silently)', async () => {
    const dir = await tempDir('stop-at-start');
    const input = await writePromptsCsv(dir, 3);
    const redis = await silentRedis();
    try {
      const run = spawnCli(['run', input, '--out', join(dir, 'out')], h.env({ REDIS_URL: redis.url }));
      await waitFor(async () => redis.connected(), 20_000);
      run.kill('SIGINT');
      const ended = await run.done;
      expect(ended.code, ended.stdout + ended.stderr).toBe(130);
      expect(ended.stdout).toMatch(/\nInterrupted before anything was queued: batch \S+ was not created, so there is nothing to resume\.\n/);
      expect(ended.stderr).toBe('');
    } finally {
      redis.close();
    }
  });

  it.each([
    { command: 'worker', args: [], signal: 'SIGTERM', code: 143, says: 'Interrupted (SIGTERM) before the worker started: it took no rows.' },
    // QA: collect and serve ended silently, killed by the signal.
    { command: 'collect', args: ['not-yet-collected'], signal: 'SIGINT', code: 130, says: 'Interrupted before collecting batch not-yet-collected: nothing was written, and the same command can simply be run again.' },
    { command: 'serve', args: ['--port', '0'], signal: 'SIGTERM', code: 143, says: 'Interrupted (SIGTERM) before the server started: it took no batch and no row; the batches not finished go on when it starts again.' },
  ] as const)('$signal while $command waits for Redis exits $code saying what it left', async ({ command, args, signal, code, says }) => {
    const dir = await tempDir(`${command}-stop-at-start`);
    const redis = await silentRedis();
    try {
      const child = spawnCli([command, ...args, ...(command === 'serve' ? ['--out', join(dir, 'out')] : [])], h.env({ REDIS_URL: redis.url }));
      await waitFor(async () => redis.connected(), 20_000);
      child.kill(signal);
      const ended = await child.done;
      expect(ended.code, ended.stdout + ended.stderr).toBe(code);
      expect(ended.stdout).toContain(says);
      expect(ended.stderr).toBe('');
    } finally {
      redis.close();
    }
  });

  it('Ctrl-C as run starts gives the batch lease back: the same command run again does not hear of a last run that held rows (review)', async () => {
    const dir = await tempDir('stop-at-start-lease');
    // A first record of 7 MB: reading it keeps the run in its start, past the lease, while the signal comes.
    const input = join(dir, 'in.csv');
    await writeFile(input, `prompt\n"${'word '.repeat(1_400_000)}"\nq2\n`);
    const run = spawnCli(['run', input, '--out', join(dir, 'out'), '--batch-id', 'stop-at-start-lease'], h.env());
    await waitForOutput(() => run.output().stdout, 'No --config given', 20_000);
    run.kill('SIGINT');
    const ended = await run.done;
    expect(ended.code, ended.stdout + ended.stderr).toBe(130);
    expect(ended.stdout).toMatch(/\nInterrupted before anything was queued/);
    // Released as it quit, not left to expire (5 s): a new run on this machine took it over and said "the rows it held come back".
    await waitFor(async () => (await h.redis.exists(`${h.prefix}:batch:{stop-at-start-lease}:lease`)) === 0, 1000);
  });

  it('Ctrl-C as a --detach resume starts names the resume that goes on with it with --detach (review: the rows would run here)', async () => {
    const dir = await tempDir('stop-at-start-detach');
    const config = await writeSimConfig(dir, h.sim.url);
    const input = join(dir, 'in.csv');
    await writeFile(input, `prompt\n"${'word '.repeat(1_400_000)}"\nq2\n`);
    const queued = await runCli(['run', input, '--config', config, '--out', join(dir, 'out'), '--batch-id', 'stop-at-start-detach', '--detach'], h.env());
    expect(queued.code, queued.stdout + queued.stderr).toBe(0);
    // The judge's line is said before the file's first record (7 MB) is read: the signal comes while it is.
    const run = spawnCli(['run', '--resume', 'stop-at-start-detach', '--detach', '--judge', 'fast'], h.env());
    await waitForOutput(() => run.output().stdout, 'Judge: ', 20_000);
    run.kill('SIGINT');
    const ended = await run.done;
    expect(ended.code, ended.stdout + ended.stderr).toBe(130);
    expect(ended.stdout).toContain('`switchyard run --resume stop-at-start-detach --detach`');
    const queue = new Queue(PROMPT_QUEUE, { connection: h.redis.duplicate(), prefix: h.prefix });
    await unqueueBatch(queue, new BatchStore(h.redis, { prefix: h.prefix }), 'stop-at-start-detach'); // not for the tests after this one
    await queue.close();
  });

  it('Ctrl-C as run starts leaves nothing the same command trips over when run again', async () => {
    const dir = await tempDir('stop-at-start-again');
    const config = await writeSimConfig(dir, h.sim.url);
    const input = await writePromptsCsv(dir, 3);
    const out = join(dir, 'out');
    const run = spawnCli(['run', input, '--config', config, '--out', out], h.env());
    await waitForOutput(() => run.output().stdout, 'Batch ', 20_000);
    run.kill('SIGINT');
    const ended = await run.done;
    expect(ended.code, ended.stdout + ended.stderr).toBe(130);
    expect(ended.stdout).toMatch(/\nInterrupted\b/);
    expect(ended.stderr).not.toMatch(/error|at \S+ \(/i);
    // Whatever point the signal came at: the batch resumes, or was never made and the folder takes a new one.
    const resume = /switchyard run --resume (\S+?)`? /.exec(ended.stdout)?.[1];
    const again = await runCli(resume ? ['run', '--resume', resume] : ['run', input, '--config', config, '--out', out], h.env());
    expect(again.code, again.stdout + again.stderr).toBe(0);
    expect(await readJsonLines<RowResult>(join(out, 'results.jsonl'))).toHaveLength(3);
  }, 40_000);
});
