import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { RowResult } from '../../src/output/records.ts';
import type { Report } from '../../src/output/report.ts';
import { abArmFor, parseAbSplit } from '../../src/routing/ab-split.ts';
import { runCli } from '../helpers/cli.ts';
import { readJsonLines, tempDir, writePromptsCsv, writeSimConfig } from '../helpers/files.ts';
import { useSimulatorAndRedis } from '../helpers/harness.ts';

describe('run --ab: an A/B split of the rows between models', () => {
  const h = useSimulatorAndRedis('ab-split', { latency_ms: 1 });

  it('sends each row to the arm its id hashes to, reports the arms side by side, and keeps the split on resume', async () => {
    const dir = await tempDir('ab');
    const config = await writeSimConfig(dir, h.sim.url);
    // Row 40 names its own model: it stays out of the split.
    const input = await writePromptsCsv(dir, 40, { model: (row) => (row === 40 ? 'fast' : undefined) });
    const out = join(dir, 'out');
    const ran = await runCli(['run', input, '--config', config, '--out', out, '--batch-id', 'ab', '--ab', 'fast=3,slow=1'], h.env());
    expect(ran.code, ran.stderr).toBe(0);
    expect(ran.stdout).toContain('A/B split: each row that names no model goes to fast 75%, slow 25%, by its id (the same id, the same model, every run).');
    const arms = parseAbSplit('fast=3,slow=1', ['fast', 'slow']);
    const results = await readJsonLines<RowResult>(join(out, 'results.jsonl'));
    for (const result of results.slice(0, 39)) {
      expect(result.model).toBe(abArmFor(result.id, arms));
      expect(result.route_reason).toBe(`A/B arm "${result.model}"`);
    }
    expect(results[39]).toMatchObject({ model: 'fast', route_reason: 'row model "fast"' });
    const report = JSON.parse(await readFile(join(out, 'report.json'), 'utf8')) as Report;
    expect(report.models.fast!.rows + report.models.slow!.rows).toBe(40);
    expect(report.models.slow!.rows).toBeGreaterThan(3);

    const meta = `${h.prefix}:batch:{ab}`;
    expect(JSON.parse((await h.redis.hget(meta, 'ab_split'))!)).toEqual(arms);
    expect((await runCli(['run', '--resume', 'ab'], h.env())).stdout).toContain('A/B split: each row that names no model goes to fast 75%, slow 25%');
    // --route auto goes back to routing: the split is dropped, not left behind for the workers.
    await runCli(['run', '--resume', 'ab', '--route', 'auto'], h.env());
    expect(await h.redis.hget(meta, 'ab_split')).toBeNull();

    // A run going on does not show the last run's finish as its own.
    expect(await h.redis.hget(meta, 'finished_at')).not.toBeNull();
    expect((await runCli(['run', '--resume', 'ab', '--config', config, '--detach'], h.env())).code).toBe(0);
    expect(await h.redis.hmget(meta, 'status', 'finished_at')).toEqual(['running', null]);
  });

  it('refuses a split naming an unknown model, or given with --model', async () => {
    const dir = await tempDir('ab-bad');
    const config = await writeSimConfig(dir, h.sim.url);
    const input = await writePromptsCsv(dir, 2);
    const unknown = await runCli(['run', input, '--config', config, '--ab', 'fast,fastest'], h.env());
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('--ab: "fastest" is not in the config; models and ensembles: fast, slow');
    const both = await runCli(['run', input, '--config', config, '--ab', 'fast,slow', '--model', 'fast'], h.env());
    expect(both.code).toBe(2);
    expect(both.stderr).toContain('give either --ab or --model/--route, not both');
  });
});
