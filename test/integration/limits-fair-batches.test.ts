import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { describe, expect, it } from 'vitest';
import type { RowResult } from '../../src/output/records.ts';
import { PROMPT_QUEUE } from '../../src/queue/keys.ts';
import { runCli, spawnCli, waitFor } from '../helpers/cli.ts';
import { readJsonLines, tempDir, writePromptsCsv } from '../helpers/files.ts';
import { useSimulatorAndRedis } from '../helpers/harness.ts';

/**
 * QA (qaplat, finding 1): batches took turns for the workers but not for a rate-limited model's
 * slots. 20 rows posted 10 s after a 1,000-row batch on a 600-rpm model finished after 94 s, none of
 * them done until the large batch ended: its queued rows had booked every slot for minutes ahead.
 */
describe('two batches on one rate-limited model, through real workers', () => {
  const RPM = 2400;
  const h = useSimulatorAndRedis('fair-batches', { latency_ms: 2, models: { limited: { rpm: RPM } } });

  it('starts the small batch’s rows within seconds while the large one runs, and the pace stays within the rpm', async () => {
    const dir = await tempDir('fair-batches');
    const cfg = join(dir, 'switchyard.yaml');
    // 2,400 rpm at 98% headroom: 39 calls a second, so the large batch's 1,000 rows take about 25 s. Its 64 worker slots take
    // its rows off the queue within a second or two.
    await writeFile(cfg, stringify({ providers: { sim: { base_url: h.sim.url } }, models: { limited: { provider: 'sim', rpm: RPM } }, default_model: 'limited', limits: { headroom: 0.98 } }));
    const large = spawnCli(['run', await writePromptsCsv(await tempDir('fair-large'), 1000), '--config', cfg, '--out', join(dir, 'large'), '--batch-id', 'large', '--concurrency', '64'], h.env());
    try {
      // The large batch's rows are queued and most of them taken by its workers, parked until their slots (or turns) come.
      const parked = `${h.prefix}:${PROMPT_QUEUE}:delayed`;
      await waitFor(async () => (await h.redis.zcard(parked)) >= 800, 30_000);
      const postedAt = Date.now();
      const small = await runCli(['run', await writePromptsCsv(await tempDir('fair-small'), 10), '--config', cfg, '--out', join(dir, 'small'), '--batch-id', 'small', '--concurrency', '4'], h.env());
      expect(small.code, small.stderr).toBe(0);
      const smallRows = await readJsonLines<RowResult>(join(dir, 'small', 'results.jsonl'));
      expect(smallRows.filter((row) => row.status === 'succeeded')).toHaveLength(10);
      const smallDone = Math.max(...smallRows.map((row) => Date.parse(row.completed_at)));
      // First come, first served it waited for the large batch's booked rows (25.0 s measured); taking turns, for the 4 s the
      // model's slots are booked ahead and its own (4.1 s).
      expect(smallDone - postedAt).toBeLessThan(8000);
      const largeRun = await large.done;
      expect(largeRun.code, largeRun.stderr).toBe(0);
      const largeRows = await readJsonLines<RowResult>(join(dir, 'large', 'results.jsonl'));
      expect(largeRows.filter((row) => row.status === 'succeeded')).toHaveLength(1000);
      // The small batch was done well before the large one.
      expect(Math.max(...largeRows.map((row) => Date.parse(row.completed_at))) - smallDone).toBeGreaterThan(5000);
    } finally {
      if (large.exitCode === null) large.kill('SIGTERM');
      await large.done;
    }
    const stats = h.sim.stats().models.limited!;
    expect(stats.requests).toBe(1010);
    expect(stats.by_status[429] ?? 0).toBe(0);
  }, 90_000);
});
