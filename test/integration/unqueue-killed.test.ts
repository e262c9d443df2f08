import { join } from 'node:path';
import { Queue } from 'bullmq';
import { describe, expect, it } from 'vitest';
import type { CallRecord, RowResult } from '../../src/output/records.ts';
import { withdrawalNote } from '../../src/output/row-events.ts';
import { BatchStore } from '../../src/queue/batch-state.ts';
import { batchKeys, PROMPT_QUEUE } from '../../src/queue/keys.ts';
import { finishWithdrawals } from '../../src/queue/unqueue-batch.ts';
import { runCli, spawnCli, waitFor } from '../helpers/cli.ts';
import { readJsonLines, tempDir, writePromptsCsv, writeSimConfig } from '../helpers/files.ts';
import { useSimulatorAndRedis } from '../helpers/harness.ts';
import { testRedisUrl } from '../helpers/redis.ts';

/**
 * A stop (a cancel, Ctrl-C) takes parked rows off the queue and publishes the calls their jobs hold;
 * killed between a job's removal and that publish, the calls existed nowhere else (API chaos QA: a
 * cancel, then kill -9 50 ms later, left 70 rows' calls out of costs.jsonl). Each removal is noted
 * first, and the batch's next collector publishes what was left.
 */
describe('a stop killed while it takes parked rows off the queue', () => {
  const h = useSimulatorAndRedis('unqueue-killed', { latency_ms: 2, models: { flaky: { fail_status: 503 } } });

  it("leaves their calls to the batch's next collector: each is in costs.jsonl once", async () => {
    const dir = await tempDir('unqueue-killed');
    const price = { input_per_mtok: 1, output_per_mtok: 2 };
    // A failed call, then a backoff long enough that the row parks holding it.
    const config = await writeSimConfig(dir, h.sim.url, {
      models: { flaky: { provider: 'sim', price } },
      default_model: 'flaky',
      retry: { max_attempts: 2, base_delay_ms: 600_000, max_delay_ms: 600_000 },
      queue: { lock_ms: 60_000 },
    });
    const out = join(dir, 'out');
    const run = spawnCli(['run', await writePromptsCsv(dir, 6), '--config', config, '--out', out, '--batch-id', 'cut-stop'], h.env());
    const delayedKey = `${h.prefix}:${PROMPT_QUEUE}:delayed`;
    await waitFor(async () => (await h.redis.zcard(delayedKey)) === 6, 20_000);
    run.kill('SIGKILL');
    await run.done;

    // What a stop does up to the moment it is killed: each job noted, then removed, nothing published.
    const keys = batchKeys({ prefix: h.prefix }, 'cut-stop');
    const store = new BatchStore(h.redis, { prefix: h.prefix });
    const queue = new Queue(PROMPT_QUEUE, { connection: { url: testRedisUrl() }, prefix: h.prefix });
    try {
      const ids = await h.redis.zrange(delayedKey, '0', '-1');
      for (const id of ids) {
        const [timestamp, data] = await h.redis.hmget(`${h.prefix}:${PROMPT_QUEUE}:${id}`, 'timestamp', 'data');
        await h.redis.hset(keys.withdrawing, id, withdrawalNote({ id, timestamp: Number(timestamp) }, JSON.parse(data!) as unknown));
      }
      // Killed before the removals: the jobs keep their calls, and the notes are left for their own ends.
      expect(await finishWithdrawals(store, 'cut-stop')).toBe(0);
      expect(await h.redis.hlen(keys.withdrawing)).toBe(6);
      for (const id of ids) expect(await queue.remove(id)).toBe(1);
    } finally {
      await queue.close();
    }

    h.sim.setOptions({ models: {} }); // the model answers now
    const resumed = await runCli(['run', '--resume', 'cut-stop', '--config', config], h.env());
    expect(resumed.code, resumed.stdout + resumed.stderr).toBe(0);
    const results = await readJsonLines<RowResult>(join(out, 'results.jsonl'));
    expect(results.map((r) => r.status)).toEqual(Array(6).fill('succeeded'));
    const calls = await readJsonLines<CallRecord>(join(out, 'costs.jsonl'));
    // The 6 failed calls of the first run and the 6 answers of the resume, each once.
    expect(calls.map((call) => call.status).sort()).toEqual([...Array(6).fill('failed'), ...Array(6).fill('succeeded')]);
    expect(calls).toHaveLength(h.sim.stats().models['flaky']!.requests);
    expect(await h.redis.exists(keys.withdrawing)).toBe(0);
  });
});
