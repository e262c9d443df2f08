import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { findRedisServerBinary, startRedisServer, type RedisServerHandle } from '../../src/queue/redis-server-process.ts';
import { connectRedis } from '../../src/queue/redis-connection.ts';
import { batchBudgetKey } from '../../src/limits/budget.ts';
import { usdToNanos } from '../../src/models/pricing.ts';
import type { CallRecord, RowResult } from '../../src/output/records.ts';
import type { Report } from '../../src/output/report-json.ts';
import { spawnCli, waitForOutput } from '../helpers/cli.ts';
import { readJsonLines, tempDir, writePromptsCsv, writeSimConfig } from '../helpers/files.ts';
import { useSimulatorAndRedis } from '../helpers/harness.ts';

/**
 * Keeps Redis full until the returned stop is called: a `maxmemory` just above what it holds now
 * (noeviction), topped up with filler whenever finished rows free some, so that every write that
 * needs memory is refused meanwhile.
 */
async function keepFull(redis: Redis): Promise<() => Promise<void>> {
  const used = Number(/used_memory:(\d+)/.exec(await redis.info('memory'))?.[1]);
  await redis.config('SET', 'maxmemory-policy', 'noeviction');
  await redis.config('SET', 'maxmemory', String(used + 256 * 1024));
  let filler = 0;
  let full = true;
  const topUp = (async () => {
    while (full) {
      try {
        await redis.set(`filler:${filler++}`, 'x'.repeat(16 * 1024));
      } catch {
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    }
  })();
  return async () => {
    full = false;
    await topUp;
    await redis.config('SET', 'maxmemory', '0');
  };
}

// Needs a Redis whose memory limit it may change: a private redis-server.
describe.runIf(findRedisServerBinary() !== null)('a full Redis while rows book rate limits and budget', () => {
  const h = useSimulatorAndRedis('full-redis-limits', { latency_ms: 60 });
  const servers: RedisServerHandle[] = [];
  afterAll(async () => {
    for (const server of servers) await server.stop().catch(() => undefined);
  });

  it("waits out the limiter's and budget's refused scripts: each row called once, every call booked once (it crashed rows, which were paid again)", async () => {
    const dir = await tempDir('full-redis-limits');
    const server = await startRedisServer({ port: 0, dir: join(dir, 'redis'), persist: false });
    servers.push(server);
    // Long enough (about 4 s) that Redis fills up while rows are still being called.
    const rows = 480;
    const config = await writeSimConfig(dir, h.sim.url, {
      models: { fast: { provider: 'sim', rpm: 60_000, tpm: 50_000_000, price: { input_per_mtok: 0.14, output_per_mtok: 0.28 } } },
      budget: { batch_usd: 100 },
      queue: { lock_ms: 5000 },
    });
    const input = await writePromptsCsv(dir, rows);
    const out = join(dir, 'out');
    h.sim.reset();
    const run = spawnCli(['run', input, '--config', config, '--out', out, '--batch-id', 'full-limits', '--concurrency', '8'], h.env({ REDIS_URL: server.url }));
    const redis = connectRedis(server.url);
    try {
      await waitForOutput(() => run.output().stdout, `Read ${rows} rows`, 20_000);
      const makeRoom = await keepFull(redis);
      try {
        await waitForOutput(() => run.output().stdout, 'refuses writes', 10_000);
        await new Promise((resolve) => setTimeout(resolve, 1500));
      } finally {
        await makeRoom();
      }
      const result = await run.done;

      expect(result.code, result.stdout + result.stderr).toBe(0);
      const results = await readJsonLines<RowResult>(join(out, 'results.jsonl'));
      expect(results.map((result) => result.row)).toEqual(Array.from({ length: rows }, (_, i) => i + 1));
      expect(results.every((result) => result.status === 'succeeded' && result.attempts === 1)).toBe(true);
      // Each row was sent once, and each call has its one cost record.
      expect(h.sim.stats().models['fast']?.requests).toBe(rows);
      const calls = await readJsonLines<CallRecord>(join(out, 'costs.jsonl'));
      expect(calls).toHaveLength(rows);
      // What the budget booked is what the calls cost: no settlement lost or made twice.
      const report = JSON.parse(await readFile(join(out, 'report.json'), 'utf8')) as Report;
      const spent = Number(await redis.hget(batchBudgetKey(h.prefix, 'full-limits'), 'spent'));
      expect(spent).toBe(usdToNanos(report.totals.cost_usd ?? 0));
      expect(spent).toBe(calls.reduce((sum, call) => sum + usdToNanos(call.cost_usd ?? 0), 0));
    } finally {
      redis.disconnect();
      run.kill('SIGKILL');
    }
  });
});
