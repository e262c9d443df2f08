import { spawn } from 'node:child_process';

export interface CommandResult {
  /** From spawn to the process's exit, measured here. */
  wallMs: number;
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
  stdout: string;
  stderr: string;
  /** When each stdout line arrived, in ms since spawn (the first 200 lines). */
  lines: Array<{ ms: number; text: string }>;
}

export interface RunCommandOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Hard limit: the process group gets SIGTERM, then SIGKILL 5 s later. */
  timeoutMs: number;
}

const KEEP_CHARS = 64 * 1024;

/** Runs a command to completion (or its time limit) and measures its wall time. */
export function runCommand(command: string, args: string[], options: RunCommandOptions): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(command, args, { cwd: options.cwd, env: options.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let stdout = '';
    let stderr = '';
    const lines: CommandResult['lines'] = [];
    let partial = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      stdout = (stdout + chunk).slice(-KEEP_CHARS);
      const parts = (partial + chunk).split('\n');
      partial = parts.pop() ?? '';
      const ms = performance.now() - started;
      for (const text of parts) if (lines.length < 200) lines.push({ ms, text });
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr = (stderr + chunk).slice(-KEEP_CHARS)));
    let timedOut = false;
    let killTimer: NodeJS.Timeout | undefined;
    const limit = setTimeout(() => {
      timedOut = true;
      killGroup(child.pid, 'SIGTERM');
      killTimer = setTimeout(() => killGroup(child.pid, 'SIGKILL'), 5000);
    }, options.timeoutMs);
    // If this benchmark process is stopped, take the command's process group with it.
    const killOnExit = () => killGroup(child.pid, 'SIGKILL');
    process.once('exit', killOnExit);
    let wallMs = 0;
    child.once('exit', () => (wallMs = performance.now() - started));
    child.once('error', (error) => {
      process.removeListener('exit', killOnExit);
      clearTimeout(limit);
      reject(error);
    });
    child.once('close', (exitCode, signal) => {
      process.removeListener('exit', killOnExit);
      clearTimeout(limit);
      clearTimeout(killTimer);
      resolve({ wallMs, exitCode, signal, timedOut, stdout, stderr, lines });
    });
  });
}

function killGroup(pid: number | undefined, signal: NodeJS.Signals): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, signal);
  } catch {
    // already gone
  }
}
