import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parse } from 'csv-parse/sync';
import { describe, expect, it } from 'vitest';
import { usdToNanos } from '../../src/models/pricing.ts';
import type { CallRecord, RowResult } from '../../src/output/records.ts';
import type { Report } from '../../src/output/report-json.ts';
import { runCli } from '../helpers/cli.ts';
import { readJsonLines, tempDir, writeSimConfig } from '../helpers/files.ts';
import { useSimulatorAndRedis } from '../helpers/harness.ts';

const ROWS = 20;

/** Distinct prompts; the last row's max_tokens is too small for a whole answer (finish_reason "length"). */
async function writeRows(dir: string): Promise<string> {
  const lines = ['id,prompt,max_tokens'];
  for (let row = 1; row <= ROWS; row++) lines.push(`q${row},"Say something about item ${row}, briefly",${row === ROWS ? 2 : ''}`);
  const path = join(dir, 'prompts.csv');
  await writeFile(path, `${lines.join('\n')}\n`);
  return path;
}

async function outputs(out: string) {
  return {
    results: await readJsonLines<RowResult>(join(out, 'results.jsonl')),
    calls: await readJsonLines<CallRecord>(join(out, 'costs.jsonl')),
    report: JSON.parse(await readFile(join(out, 'report.json'), 'utf8')) as Report,
  };
}

describe('the answer cache (config cache)', () => {
  const h = useSimulatorAndRedis('answer-cache', { latency_ms: 2 });

  it('answers a request it has seen from Redis, with no call and no cost, and says what that saved', async () => {
    h.sim.reset();
    const dir = await tempDir('answer-cache');
    const config = await writeSimConfig(dir, h.sim.url, { cache: { ttl_hours: 1 }, report: { baseline_model: 'pro' } }, ['flash', 'pro']);
    const input = await writeRows(dir);
    const requests = () => Object.values(h.sim.stats().models).reduce((sum, model) => sum + (model?.requests ?? 0), 0);

    const first = await runCli(['run', input, '--config', config, '--batch-id', 'cache-first', '--out', join(dir, 'first')], h.env());
    expect(first.code, first.stdout + first.stderr).toBe(0);
    expect(requests()).toBe(ROWS);
    const before = await outputs(join(dir, 'first'));
    expect(before.results.every((result) => result.cached === undefined)).toBe(true);
    expect(before.results.at(-1)!.finish_reason).toBe('length');

    // The same file as another batch: every finished answer comes from the cache.
    const second = await runCli(['run', input, '--config', config, '--batch-id', 'cache-second', '--out', join(dir, 'second')], h.env());
    expect(second.code, second.stdout + second.stderr).toBe(0);
    expect(requests()).toBe(ROWS + 1); // the answer cut at max_tokens was not kept: asked again
    const after = await outputs(join(dir, 'second'));
    for (const [i, result] of after.results.slice(0, -1).entries()) {
      const earlier = before.results[i]!;
      expect(result).toMatchObject({ status: 'succeeded', model: 'flash', output: earlier.output, cost_usd: 0, attempts: 0, usage: { input_tokens: 0, output_tokens: 0 }, request_id: earlier.request_id });
      expect(result.cached).toMatchObject({ batch_id: 'cache-first', row: earlier.row, usage: earlier.usage, saved_usd: earlier.cost_usd });
    }
    expect(after.results.at(-1)!.cached).toBeUndefined();
    expect(after.calls.map((call) => call.row)).toEqual([ROWS]);
    // Saved: what the cached rows' calls cost the first time, at the same prices.
    const savedNanos = before.calls.filter((call) => call.row !== ROWS).reduce((sum, call) => sum + usdToNanos(call.cost_usd!), 0);
    expect(after.report.cache).toEqual({ answered_rows: ROWS - 1, saved_usd: savedNanos / 1e9, unpriced_rows: 0 });
    expect(after.report.totals.cost_usd).toBe(after.calls[0]!.cost_usd);
    expect(second.stdout).toContain('Note: the answer cache is on: a request made before (same endpoint and upstream model, messages, temperature, max_tokens and body fields), in the last 1 h 00 min, gets the answer it had');
    // The baseline compares the calls made: the cached rows had none.
    expect(second.stdout).toMatch(/^Savings +This batch cost \$[\d.]+ \(the 19 rows answered from the cache aside\): [\d.]+% less than/m);
    expect(second.stdout).toMatch(/^Cache +19 rows answered from the cache \(\$[\d.]+ saved\)$/m);
    expect(await readFile(join(dir, 'second', 'report.md'), 'utf8')).toContain('- Cache: 19 rows answered from the cache ($');
    const csv = parse(await readFile(join(dir, 'second', 'results.csv'), 'utf8'), { columns: true }) as Array<Record<string, string>>;
    expect(csv[0]!['cached_from']).toBe('cache-first row 1');
    expect(csv.at(-1)!['cached_from']).toBe('');

    // A dry run cannot tell which rows the cache would answer (it reads no Redis), and says so.
    const dry = await runCli(['run', input, '--config', config, '--dry-run'], h.env());
    expect(dry.stdout).toContain('Note: the answer cache is on (cache in the config): rows whose request was answered before, in any batch on this Redis and key prefix, are not called; the estimate counts every row as called.');

    // Another model is another request: asked, not taken from flash's answers.
    const pinned = await runCli(['run', input, '--config', config, '--model', 'pro', '--out', join(dir, 'pro')], h.env());
    expect(pinned.code, pinned.stdout + pinned.stderr).toBe(0);
    expect(requests()).toBe(2 * ROWS + 1);
    expect((await outputs(join(dir, 'pro'))).report.cache.answered_rows).toBe(0);

    // An A/B run now answered from the cache but for its cut row: the arms compare on the calls this batch made.
    const ab = await runCli(['run', input, '--config', config, '--ab', 'flash,pro', '--out', join(dir, 'ab')], h.env());
    expect(ab.code, ab.stdout + ab.stderr).toBe(0);
    expect(requests()).toBe(2 * ROWS + 2);
    const abOut = await outputs(join(dir, 'ab'));
    for (const [name, arm] of Object.entries(abOut.report.ab_arms)) {
      const rows = abOut.results.filter((r) => r.ab_arm === name);
      const called = rows.filter((r) => !r.cached);
      expect(arm, name).toMatchObject({ rows: rows.length, cached_rows: rows.length - called.length });
      // Cost per answer: over the answers this batch paid for, not the free ones.
      expect(arm.cost_per_answer_usd, name).toBe(called.length === 0 ? null : called[0]!.cost_usd);
    }
    expect(await readFile(join(dir, 'ab', 'report.md'), 'utf8')).toContain('| Arm | Rows | OK | Failed | From cache |');

    // Rows of one batch with the same request, waiting for the call slot behind the first: they take its answer.
    const same = join(dir, 'same.csv');
    await writeFile(same, `id,prompt\n${Array.from({ length: 12 }, (_, i) => `s${i},Always the same question`).join('\n')}\n`);
    const requestsBefore = requests();
    const repeated = await runCli(['run', same, '--config', config, '--concurrency', '1', '--out', join(dir, 'same')], h.env());
    expect(repeated.code, repeated.stdout + repeated.stderr).toBe(0);
    expect(requests() - requestsBefore).toBe(1);
    expect((await outputs(join(dir, 'same'))).report.cache.answered_rows).toBe(11);

    // Without `cache` in the config, every row calls its model.
    const uncached = await writeSimConfig(join(dir, 'first'), h.sim.url, {}, ['flash', 'pro']);
    const plain = await runCli(['run', input, '--config', uncached, '--out', join(dir, 'plain')], h.env());
    expect(plain.code, plain.stdout + plain.stderr).toBe(0);
    expect(requests()).toBe(3 * ROWS + 3);
    expect(plain.stdout).not.toMatch(/^Cache/m);

    // --no-cache: the configured cache is neither read nor written by that batch.
    const fresh = join(dir, 'fresh.csv');
    await writeFile(fresh, 'id,prompt\nf1,A question first asked with --no-cache\n');
    const off = await runCli(['run', input, '--config', config, '--no-cache', '--batch-id', 'cache-off', '--out', join(dir, 'off')], h.env());
    expect(off.code, off.stdout + off.stderr).toBe(0);
    expect(off.stdout).toContain('Note: the answer cache is off for this batch (--no-cache): every row is called, and no answer is kept for later.');
    expect(off.stdout).not.toContain('Note: the answer cache is on');
    expect(requests()).toBe(4 * ROWS + 3);
    expect((await outputs(join(dir, 'off'))).report.cache.answered_rows).toBe(0);
    const offAgain = await runCli(['run', fresh, '--config', config, '--no-cache', '--out', join(dir, 'fresh-off')], h.env());
    expect(offAgain.code, offAgain.stdout + offAgain.stderr).toBe(0);
    const freshOn = await runCli(['run', fresh, '--config', config, '--out', join(dir, 'fresh-on')], h.env());
    expect(freshOn.code, freshOn.stdout + freshOn.stderr).toBe(0);
    expect(requests()).toBe(4 * ROWS + 5); // the --no-cache answer was not kept: asked again
    const dryOff = await runCli(['run', input, '--config', config, '--dry-run', '--no-cache'], h.env());
    expect(dryOff.stdout).not.toContain('the answer cache is on');

    // The batch keeps it off, as it keeps --judge, even given its config file again; --cache turns it on.
    const metaKey = `${h.prefix}:batch:{cache-off}`;
    expect(await h.redis.hget(metaKey, 'cache_off')).toBe('true');
    const kept = await runCli(['run', '--resume', 'cache-off', '--config', config], h.env());
    expect(kept.code, kept.stdout + kept.stderr).toBe(0);
    expect(kept.stdout).toContain('Note: the answer cache is off for this batch, as its earlier run was given --no-cache (--cache turns it on again).');
    expect((await runCli(['status', 'cache-off'], h.env())).stdout).toContain('cache     off for this batch (--no-cache; a resume with --cache turns it on)');
    const on = await runCli(['run', '--resume', 'cache-off', '--cache'], h.env());
    expect(on.code, on.stdout + on.stderr).toBe(0);
    expect(on.stdout).toContain('Note: the answer cache is on');
    expect(await h.redis.hget(metaKey, 'cache_off')).toBeNull();

    // --cache where the config has no cache to use says so.
    const nothingToUse = await runCli(['run', fresh, '--config', uncached, '--cache', '--out', join(dir, 'nothing-to-use')], h.env());
    expect(nothingToUse.code, nothingToUse.stdout + nothingToUse.stderr).toBe(0);
    expect(nothingToUse.stdout).toContain('Note: --cache has no cache to use: this config has no `cache` key');
  });
});
