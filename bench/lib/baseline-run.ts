import { readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { ROOT, USAGE_PROBE } from './paths.ts';
import { runCommand, type CommandResult } from './run-command.ts';
import type { UsageRecord } from './usage-record.ts';

const BASELINE = path.join(ROOT, 'bench', 'baseline-plain-sdk.ts');

export interface BaselineRunResult extends CommandResult {
  usage: UsageRecord | null;
}

/** bench/baseline-plain-sdk.ts as its own process (with the usage probe), timed from spawn to exit. */
export async function runBaseline(options: { csv: string; simUrl: string; outFile: string; concurrency: number; timeoutMs: number }): Promise<BaselineRunResult> {
  const usageFile = `${options.outFile}.usage.json`;
  await rm(options.outFile, { force: true });
  await rm(usageFile, { force: true });
  const args = ['--import', USAGE_PROBE, BASELINE, options.csv, options.simUrl, options.outFile, String(options.concurrency)];
  const result = await runCommand(process.execPath, args, { cwd: ROOT, env: { ...process.env, SWITCHYARD_USAGE_FILE: usageFile }, timeoutMs: options.timeoutMs });
  let usage: UsageRecord | null = null;
  try {
    usage = JSON.parse(await readFile(usageFile, 'utf8')) as UsageRecord;
  } catch {
    // no figures (killed hard)
  }
  return { ...result, usage };
}

export function checkBaseline(label: string, result: BaselineRunResult): void {
  if (!result.timedOut && result.exitCode === 0) return;
  throw new Error(`${label}: ${result.timedOut ? 'timed out' : `exit ${result.exitCode ?? result.signal}`}\n${result.stdout.slice(-2000)}\n${result.stderr.slice(-2000)}`);
}

const FLOOR = path.join(ROOT, 'bench', 'floor-bare-http.mjs');

/** bench/floor-bare-http.mjs as its own process, timed from spawn to exit. */
export async function runFloor(options: { simUrl: string; requests: number; concurrency: number; timeoutMs: number }): Promise<CommandResult> {
  const args = [FLOOR, options.simUrl, String(options.requests), String(options.concurrency)];
  return runCommand(process.execPath, args, { cwd: ROOT, timeoutMs: options.timeoutMs });
}
