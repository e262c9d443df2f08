import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { findRedisServerBinary, startRedisServer, type RedisServerHandle } from '../../src/queue/redis-server-process.ts';
import type { CallRecord, RowResult } from '../../src/output/records.ts';
import type { Report } from '../../src/output/report-json.ts';
import { usdToNanos } from '../../src/models/pricing.ts';
import { runCli, spawnCli, waitFor, waitForOutput, type CliResult } from '../helpers/cli.ts';
import { connectRedis } from '../../src/queue/redis-connection.ts';
import { readJsonLines, tempDir, writePromptsCsv, writeSimConfig } from '../helpers/files.ts';
import { useSimulatorAndRedis } from '../helpers/harness.ts';

/** Private redis-servers with their data on disk (to stop and start again), stopped after the describe's tests. */
function privateRedisServers(): (data: string, port?: number) => Promise<RedisServerHandle> {
  const servers: RedisServerHandle[] = [];
  afterAll(async () => {
    for (const server of servers) await server.stop().catch(() => undefined);
  });
  return async (data, port = 0) => {
    const server = await startRedisServer({ port, dir: data, persist: true });
    servers.push(server);
    return server;
  };
}

// Needs a Redis it can stop and start again, with its data on disk: a private redis-server.
describe.runIf(findRedisServerBinary() !== null)('Redis restarting in the middle of a run', () => {
  const h = useSimulatorAndRedis('redis-restart', { latency_ms: 10 });
  const startRedis = privateRedisServers();

  it('says so once, waits for it, and finishes with every row written once', async () => {
    const dir = await tempDir('redis-restart');
    const data = join(dir, 'redis');
    const first = await startRedis(data);
    // Rows in flight when Redis went away come back after their locks expire, if it was gone long.
    const config = await writeSimConfig(dir, h.sim.url, { queue: { lock_ms: 5000 } });
    const input = await writePromptsCsv(dir, 600);
    const out = join(dir, 'out');
    const run = spawnCli(['run', input, '--config', config, '--out', out, '--batch-id', 'restart', '--concurrency', '8'], h.env({ REDIS_URL: first.url }));

    await waitForOutput(() => run.output().stdout, 'Read 600 rows', 20_000);
    await first.stop();
    await new Promise((resolve) => setTimeout(resolve, 500));
    await startRedis(data, first.port);
    const result = await run.done;

    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(new RegExp(`Redis at redis://127\\.0\\.0\\.1:${first.port} is not answering \\(\\w+, since \\d\\d:\\d\\d:\\d\\d UTC\\); waiting for it to come back`));
    expect(result.stdout).toMatch(/Redis is answering again after [\d.]+ s, at \d\d:\d\d:\d\d UTC; going on\./);
    expect(result.stdout.match(/is not answering/g)).toHaveLength(1);
    const results = await readJsonLines<RowResult>(join(out, 'results.jsonl'));
    expect(results.map((r) => r.row)).toEqual(Array.from({ length: 600 }, (_, i) => i + 1));
    expect(results.every((r) => r.status === 'succeeded')).toBe(true);
    // Commands wait in the client however long Redis is away (up to SWITCHYARD_REDIS_WAIT_S), so each
    // row is normally called once; one whose claim BullMQ moved meanwhile may run again. The report adds up.
    const calls = await readJsonLines<CallRecord>(join(out, 'costs.jsonl'));
    expect(calls.length).toBeGreaterThanOrEqual(600);
    const report = JSON.parse(await readFile(join(out, 'report.json'), 'utf8')) as Report;
    expect(usdToNanos(report.totals.cost_usd ?? 0)).toBe(calls.reduce((sum, call) => sum + usdToNanos(call.cost_usd ?? 0), 0));
  });
});

/** The child's result, or a failure with its output so far once `ms` pass (the child is then killed). */
async function doneWithin(run: ReturnType<typeof spawnCli>, ms: number): Promise<CliResult> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const { stdout, stderr } = run.output();
      run.kill('SIGKILL');
      reject(new Error(`still running after ${ms} ms; stdout:\n${stdout}\nstderr:\n${stderr.slice(-2000)}`));
    }, ms);
  });
  try {
    return await Promise.race([run.done, late]);
  } finally {
    clearTimeout(timer);
  }
}

describe.runIf(findRedisServerBinary() !== null)('a stop while Redis is down', () => {
  // Slow answers, so the run is still going when Redis goes away.
  const h = useSimulatorAndRedis('redis-down-stop', { latency_ms: 200 });
  const startRedis = privateRedisServers();

  it('completes once Redis is back: rows unqueued, outputs of the rows finished, exit 143', async () => {
    const dir = await tempDir('redis-down-stop');
    const data = join(dir, 'redis');
    const first = await startRedis(data);
    const config = await writeSimConfig(dir, h.sim.url);
    const input = await writePromptsCsv(dir, 300);
    const out = join(dir, 'out');
    const run = spawnCli(['run', input, '--config', config, '--out', out, '--batch-id', 'downstop', '--concurrency', '8'], h.env({ REDIS_URL: first.url }));

    await waitForOutput(() => run.output().stdout, 'Read 300 rows', 20_000);
    await first.stop();
    await waitForOutput(() => run.output().stdout, 'is not answering', 10_000);
    run.kill('SIGTERM');
    await new Promise((resolve) => setTimeout(resolve, 2000));
    const second = await startRedis(data, first.port);
    // ioredis never ended a connection disconnected while waiting to reconnect, and BullMQ's
    // close waited for that: the run hung here for good.
    const result = await doneWithin(run, 40_000);

    expect(result.code, result.stdout + result.stderr).toBe(143);
    expect(result.stdout).toMatch(/Redis is answering again after [\d.]+ s, at \d\d:\d\d:\d\d UTC; going on\./);
    expect(result.stdout).toMatch(/Stopped early: the outputs above hold the \d+ rows finished so far\. \d+ queued rows came off the queue/);
    const redis = connectRedis(second.url);
    try {
      expect(await redis.llen(`${h.prefix}:prompts:wait`)).toBe(0);
      expect(await redis.zcard(`${h.prefix}:prompts:prioritized`)).toBe(0);
      expect(await redis.zcard(`${h.prefix}:prompts:delayed`)).toBe(0);
    } finally {
      redis.disconnect();
    }
    const results = await readJsonLines<RowResult>(join(out, 'results.jsonl'));
    expect(results.length).toBeGreaterThan(0);
    expect(results.length).toBeLessThan(300);
    expect(results.every((r) => r.status === 'succeeded')).toBe(true);
  });

  it('gives up after SWITCHYARD_STOP_WAIT_S (30 s unless set) when Redis stays away, saying what is left and to resume, exit 3', async () => {
    const dir = await tempDir('redis-gone-stop');
    const server = await startRedis(join(dir, 'redis'));
    const config = await writeSimConfig(dir, h.sim.url);
    const input = await writePromptsCsv(dir, 300);
    // The wait shortened from its 30 s default (the unit test reads that default), which the message then says.
    const env = h.env({ REDIS_URL: server.url, SWITCHYARD_STOP_WAIT_S: '4' });
    const run = spawnCli(['run', input, '--config', config, '--out', join(dir, 'out'), '--batch-id', 'gonestop', '--concurrency', '8'], env);

    await waitForOutput(() => run.output().stdout, 'Read 300 rows', 20_000);
    await server.stop();
    await waitForOutput(() => run.output().stdout, 'is not answering', 10_000);
    const stoppedAt = Date.now();
    run.kill('SIGTERM');
    // Before, it waited for Redis for ever: a scheduler's SIGTERM did not end it.
    const result = await doneWithin(run, 20_000);

    expect(result.code, result.stdout + result.stderr).toBe(3);
    expect(Date.now() - stoppedAt).toBeGreaterThanOrEqual(4000);
    expect(result.stderr).toMatch(new RegExp(`switchyard: Redis at redis://127\\.0\\.0\\.1:${server.port} has not answered for [4-9] s of the stop \\(SIGTERM; a stop waits 4 s for it: SWITCHYARD_STOP_WAIT_S\\): giving up without writing the outputs\\.`));
    expect(result.stderr).toMatch(/\n(No row had finished when last seen|\d+( of 300)? rows were done when last seen \(0 failed, \$[\d.]+ spent\) and stay done); the calls in flight are not recorded/);
    expect(result.stderr).toContain('switchyard run --resume gonestop runs the rest');
  });
});

describe.runIf(findRedisServerBinary() !== null)('Redis asking for a password mid-run', () => {
  const h = useSimulatorAndRedis('redis-password-mid-run', { latency_ms: 200 });
  let server: RedisServerHandle | undefined;
  afterAll(async () => {
    await server?.stop().catch(() => undefined);
  });

  it('ends the run with the start-up credentials message, exit 3', async () => {
    const dir = await tempDir('redis-password');
    server = await startRedisServer({ port: 0, dir: join(dir, 'redis'), persist: false });
    const config = await writeSimConfig(dir, h.sim.url);
    const input = await writePromptsCsv(dir, 300);
    const run = spawnCli(['run', input, '--config', config, '--out', join(dir, 'out'), '--batch-id', 'password', '--concurrency', '8'], h.env({ REDIS_URL: server.url }));
    await waitForOutput(() => run.output().stdout, 'Read 300 rows', 20_000);

    const admin = connectRedis(server.url);
    try {
      await admin.config('SET', 'requirepass', 'newpass');
      await admin.call('CLIENT', 'KILL', 'TYPE', 'normal', 'SKIPME', 'yes');
      // Before, it went on trying for ever, a NOAUTH log line at every attempt, and a SIGTERM did not end it.
      const result = await doneWithin(run, 15_000);

      expect(result.code, result.stdout + result.stderr).toBe(3);
      expect(result.stderr).toMatch(new RegExp(`switchyard: Redis at redis://127\\.0\\.0\\.1:${server.port} refused the connection's credentials \\(NOAUTH .*\\): put its user and password in REDIS_URL`));
      expect(result.stderr).toContain('run the same command again: it goes on from where it stopped');
      expect(result.stderr).not.toMatch(/"level"/);
    } finally {
      await admin.config('SET', 'requirepass', '').catch(() => undefined); // so stop() may shut it down
      admin.disconnect();
    }
  });
});

describe.runIf(findRedisServerBinary() !== null)('a Redis that stays away longer than the client retries', () => {
  const h = useSimulatorAndRedis('redis-stays-away', { latency_ms: 200 });
  const startRedis = privateRedisServers();

  it("keeps a command waiting past ioredis' 20 retries per request, and sends it once Redis is back", async () => {
    const dir = await tempDir('redis-away-client');
    const data = join(dir, 'redis');
    const first = await startRedis(data);
    const redis = connectRedis(first.url);
    redis.on('error', () => undefined);
    let reconnects = 0;
    redis.on('reconnecting', () => reconnects++);
    // ioredis' own backoff takes about 75 s to its 21st reconnect attempt: the same attempts, 20 ms apart.
    redis.options.retryStrategy = () => 20;
    try {
      await redis.set('k', 'kept');
      await first.stop();
      await waitFor(async () => redis.status !== 'ready', 5000);
      const reply = redis.get('k').then(
        (value) => ({ value }),
        (error: unknown) => ({ error: String(error) }),
      );
      // Before, ioredis failed every waiting command at the 21st attempt (MaxRetriesPerRequestError),
      // and a run ended with exit 3, the answers it held unrecorded, however soon Redis came back.
      await waitFor(async () => reconnects > 30, 10_000);
      await startRedis(data, first.port);
      expect(await reply).toEqual({ value: 'kept' });
    } finally {
      redis.disconnect();
    }
  });

  it('gives up after SWITCHYARD_REDIS_WAIT_S with exit 3, naming the resume that goes on, which does', async () => {
    const dir = await tempDir('redis-stays-away');
    const data = join(dir, 'redis');
    const first = await startRedis(data);
    const config = await writeSimConfig(dir, h.sim.url);
    const input = await writePromptsCsv(dir, 300);
    const out = join(dir, 'out');
    // No --batch-id: the same command again would make another batch, which the outputs folder refuses.
    const env = h.env({ REDIS_URL: first.url, SWITCHYARD_REDIS_WAIT_S: '3' });
    const run = spawnCli(['run', input, '--config', config, '--out', out, '--concurrency', '8'], env);
    await waitForOutput(() => run.output().stdout, 'Read 300 rows', 20_000);
    const batchId = /^Batch (\S+)$/m.exec(run.output().stdout)?.[1] ?? '';
    expect(batchId).not.toBe('');
    await first.stop();
    // Before, the limit was ioredis' retries (about 75 s), and the message its own.
    const result = await doneWithin(run, 30_000);

    expect(result.code, result.stdout + result.stderr).toBe(3);
    expect(result.stdout).toMatch(/is not answering \(\w+, since \d\d:\d\d:\d\d UTC\); waiting for it to come back \(for up to 3 s, SWITCHYARD_REDIS_WAIT_S\)/);
    expect(result.stdout).toContain(`Ctrl-C stops; \`switchyard run --resume ${batchId}\` later goes on from where it stopped.`);
    expect(result.stderr).toMatch(new RegExp(`switchyard: Redis at redis://127\\.0\\.0\\.1:${first.port} has not answered for \\d+ s \\(a run waits 3 s for it: SWITCHYARD_REDIS_WAIT_S\\): giving up without writing the outputs\\.`));
    expect(result.stderr).toContain(`switchyard run --resume ${batchId} runs the rest`);
    expect(result.stderr).not.toMatch(/maxRetriesPerRequest|run the same command again/);

    await startRedis(data, first.port);
    // More calls at a time than the first run's 8 (its slow answers kept it going as Redis went): the rows are the same.
    const resumed = await runCli(['run', '--resume', batchId, '--concurrency', '48'], h.env({ REDIS_URL: first.url }));
    expect(resumed.code, resumed.stdout + resumed.stderr).toBe(0);
    const results = await readJsonLines<RowResult>(join(out, 'results.jsonl'));
    expect(results.map((r) => r.row)).toEqual(Array.from({ length: 300 }, (_, i) => i + 1));
    expect(results.every((r) => r.status === 'succeeded')).toBe(true);
  });
});

describe.runIf(findRedisServerBinary() !== null)('a Redis that holds its connections open and answers nothing (paused)', () => {
  const h = useSimulatorAndRedis('redis-silent', { latency_ms: 100 });
  const startRedis = privateRedisServers();
  /** SIGSTOPs the server; the handle given back resumes it (also after the test, so its stop can end it). */
  const paused: number[] = [];
  afterAll(() => {
    for (const pid of paused) process.kill(pid, 'SIGCONT');
  });
  const pause = (pid: number) => {
    process.kill(pid, 'SIGSTOP');
    paused.push(pid);
  };

  // The limit shortened from its 10 s default (the unit test reads that default), which the message then says.
  it('says so after SWITCHYARD_REDIS_SILENT_S (10 s unless set), waits, and finishes once it answers: every row once, exit 0', async () => {
    const dir = await tempDir('redis-silent');
    const server = await startRedis(join(dir, 'redis'));
    const config = await writeSimConfig(dir, h.sim.url);
    const input = await writePromptsCsv(dir, 400);
    const out = join(dir, 'out');
    const run = spawnCli(['run', input, '--config', config, '--out', out, '--batch-id', 'silent', '--concurrency', '16'], h.env({ REDIS_URL: server.url, SWITCHYARD_REDIS_SILENT_S: '2' }));
    await waitForOutput(() => run.output().stdout, 'Read 400 rows', 20_000);

    pause(server.pid);
    // Before, nothing was said, and the wait for Redis (SWITCHYARD_REDIS_WAIT_S) never started.
    await waitForOutput(() => run.output().stdout, 'has not answered for', 20_000);
    process.kill(server.pid, 'SIGCONT');
    const result = await doneWithin(run, 60_000);

    expect(result.code, result.stdout + result.stderr).toBe(0);
    expect(result.stdout).toMatch(new RegExp(`Redis at redis://127\\.0\\.0\\.1:${server.port} has not answered for [2-5] s \\(since \\d\\d:\\d\\d:\\d\\d UTC\\), though its connection is open \\(the server paused or stuck, or the network to it cut\\); waiting for it \\(for up to 10 min, SWITCHYARD_REDIS_WAIT_S\\)`));
    expect(result.stdout).toMatch(/Redis is answering again after [\d.]+ s, at \d\d:\d\d:\d\d UTC; going on\./);
    const results = await readJsonLines<RowResult>(join(out, 'results.jsonl'));
    expect(results.map((r) => r.row)).toEqual(Array.from({ length: 400 }, (_, i) => i + 1));
    expect(results.every((r) => r.status === 'succeeded')).toBe(true);
  });

  it('gives up once it has been silent for SWITCHYARD_REDIS_WAIT_S, exit 3', async () => {
    const dir = await tempDir('redis-silent-gone');
    const server = await startRedis(join(dir, 'redis'));
    const config = await writeSimConfig(dir, h.sim.url);
    const input = await writePromptsCsv(dir, 400);
    const env = h.env({ REDIS_URL: server.url, SWITCHYARD_REDIS_SILENT_S: '5', SWITCHYARD_REDIS_WAIT_S: '6' });
    const run = spawnCli(['run', input, '--config', config, '--out', join(dir, 'out'), '--batch-id', 'silentgone', '--concurrency', '4'], env);
    await waitForOutput(() => run.output().stdout, 'Read 400 rows', 20_000);

    pause(server.pid);
    await waitForOutput(() => run.output().stdout, 'has not answered for', 20_000);
    const noticedAt = Date.now();
    const result = await doneWithin(run, 30_000);
    process.kill(server.pid, 'SIGCONT');

    expect(result.code, result.stdout + result.stderr).toBe(3);
    // The wait counts from the PING left unanswered, not from when the silence was noticed 5 s later:
    // counted from there, the 6 s would end 6 s after the notice, not within about 1-3 s of it.
    expect(Date.now() - noticedAt).toBeLessThan(5000);
    expect(result.stderr).toMatch(new RegExp(`switchyard: Redis at redis://127\\.0\\.0\\.1:${server.port} has not answered for [6-9] s \\(a run waits 6 s for it: SWITCHYARD_REDIS_WAIT_S\\): giving up without writing the outputs\\.`));
    expect(result.stderr).toContain('switchyard run --resume silentgone runs the rest');
  });
});
