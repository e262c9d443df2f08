import { readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { CLI, CLI_ENV, CLI_NODE_FLAGS, ROOT, USAGE_PROBE } from './paths.ts';
import { runCommand, type CommandResult } from './run-command.ts';
import type { UsageRecord } from './usage-record.ts';

/** A switchyard.yaml with one model, "fast", on the given simulator. */
export async function writeBenchConfig(dir: string, simUrl: string, concurrency: number): Promise<string> {
  const file = path.join(dir, 'switchyard.yaml');
  const yaml = [
    'providers:',
    `  sim: { base_url: ${simUrl}, timeout_ms: 30000 }`,
    'models:',
    '  fast: { provider: sim, price: { input_per_mtok: 0.14, output_per_mtok: 0.28 } }',
    'default_model: fast',
    `concurrency: ${concurrency}`,
    '',
  ].join('\n');
  await writeFile(file, yaml);
  return file;
}

export interface SwitchyardRunOptions {
  csv: string;
  config: string;
  outDir: string;
  batchId: string;
  concurrency: number;
  redisUrl: string;
  prefix: string;
  timeoutMs: number;
  /** Extra node flags before the script, e.g. ['--cpu-prof', '--cpu-prof-dir=...']. */
  nodeFlags?: string[];
}

export interface SwitchyardRunResult extends CommandResult {
  report: { totals: { rows: number; succeeded: number; failed: number; elapsed_ms: number; rows_per_second: number | null } } | null;
  usage: UsageRecord | null;
}

/** `node --import usage-probe.mjs dist/cli.js run ...` as its own process, timed from spawn to exit. */
export async function runSwitchyard(options: SwitchyardRunOptions): Promise<SwitchyardRunResult> {
  const usageFile = path.join(options.outDir, '..', `${path.basename(options.outDir)}.usage.json`);
  await rm(options.outDir, { recursive: true, force: true });
  await rm(usageFile, { force: true });
  const args = [
    ...CLI_NODE_FLAGS,
    ...(options.nodeFlags ?? []),
    '--import', USAGE_PROBE,
    CLI, 'run', options.csv,
    '--config', options.config,
    '--out', options.outDir,
    '--batch-id', options.batchId,
    '--concurrency', String(options.concurrency),
  ];
  const env = { ...process.env, ...CLI_ENV, REDIS_URL: options.redisUrl, SWITCHYARD_PREFIX: options.prefix, SWITCHYARD_USAGE_FILE: usageFile };
  const result = await runCommand(process.execPath, args, { cwd: ROOT, env, timeoutMs: options.timeoutMs });
  const report = await readJson<SwitchyardRunResult['report']>(path.join(options.outDir, 'report.json'));
  const usage = await readJson<UsageRecord>(usageFile);
  return { ...result, report, usage };
}

async function readJson<T>(file: string): Promise<T | null> {
  try {
    return JSON.parse(await readFile(file, 'utf8')) as T;
  } catch {
    return null;
  }
}

/** When the first stdout line matching `pattern` arrived, in ms since spawn (about the same clock as the usage probe's, which starts a few ms later); NaN for none. */
export function lineAt(run: SwitchyardRunResult, pattern: RegExp): number {
  return run.lines.find((line) => pattern.test(line.text))?.ms ?? Number.NaN;
}

/** Throws with the command's output when a run did not finish cleanly with every row succeeded. */
export function checkRun(label: string, result: SwitchyardRunResult, rows: number): void {
  const ok = !result.timedOut && result.exitCode === 0 && result.report?.totals.succeeded === rows;
  if (ok) return;
  const why = result.timedOut ? 'timed out' : `exit ${result.exitCode ?? result.signal}, succeeded ${result.report?.totals.succeeded ?? '?'} of ${rows}`;
  throw new Error(`${label}: ${why}\n--- stdout (tail)\n${result.stdout.slice(-3000)}\n--- stderr (tail)\n${result.stderr.slice(-3000)}`);
}
