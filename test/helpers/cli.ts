import { spawn, type ChildProcess } from 'node:child_process';
import { inject } from 'vitest';
import type {} from './test-cli.ts'; // the ProvidedContext declaration

/** Runs the real `switchyard` CLI as a separate process, as a user would: bundled by the global setup (./test-cli.ts). */
const CLI = inject('cliPath');

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function spawnCli(args: string[], env: Record<string, string>, options: { cwd?: string } = {}): ChildProcess & { output: () => CliResult; done: Promise<CliResult> } {
  const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...env, LOG_LEVEL: env.LOG_LEVEL ?? 'error' }, stdio: ['ignore', 'pipe', 'pipe'], ...options });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const output = () => ({ code: child.exitCode, stdout, stderr });
  const done = new Promise<CliResult>((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })));
  return Object.assign(child, { output, done });
}

export function runCli(args: string[], env: Record<string, string>, options: { cwd?: string } = {}): Promise<CliResult> {
  return spawnCli(args, env, options).done;
}

/** Resolves once `check()` is true; throws after `timeoutMs`. */
export async function waitFor(check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/** Resolves once `read()` contains `text`; throws with the output so far after `timeoutMs`. */
export async function waitForOutput(read: () => string, text: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!read().includes(text)) {
    if (Date.now() > deadline) throw new Error(`no "${text}" within ${timeoutMs} ms; output so far:\n${read()}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/**
 * Runs `switchyard run <args> --batch-id <batchId>`, kills it outright (SIGKILL) once `killWhen()`
 * holds, then resumes the batch with the same config; returns the resume's result.
 */
export async function killRunThenResume(run: { args: string[]; batchId: string; config: string; killWhen: () => boolean }, env: Record<string, string>): Promise<CliResult> {
  const first = spawnCli(['run', ...run.args, '--config', run.config, '--batch-id', run.batchId], env);
  await waitFor(async () => run.killWhen(), 20_000);
  first.kill('SIGKILL');
  await first.done;
  return runCli(['run', '--resume', run.batchId, '--config', run.config], env);
}
