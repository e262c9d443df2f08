import { spawn } from 'node:child_process';
import { CLI, ROOT } from './paths.ts';

export interface SimulatorProcess {
  url: string;
  pid: number;
  stop(): Promise<void>;
}

/**
 * Starts `switchyard sim` as its own process on a free 127.0.0.1 port and resolves once it prints
 * its URL. Rejects after `startTimeoutMs` (the process is killed then). `extraArgs` go to
 * `switchyard sim` as they are (e.g. `--model-limits <json>`, `--tpm-counts usage`).
 */
export function startSimulatorProcess(options: { latencyMs: number; startTimeoutMs?: number; extraArgs?: string[] }): Promise<SimulatorProcess> {
  const args = [CLI, 'sim', '--host', '127.0.0.1', '--port', '0', '--latency-ms', String(options.latencyMs), ...(options.extraArgs ?? [])];
  const child = spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);

  const stop = async () => {
    process.removeListener('exit', killOnExit);
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  };

  return new Promise((resolve, reject) => {
    let seen = '';
    const timer = setTimeout(() => {
      void stop();
      reject(new Error(`simulator did not print its URL within ${options.startTimeoutMs ?? 15_000} ms; output:\n${seen}`));
    }, options.startTimeoutMs ?? 15_000);
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (seen = (seen + chunk).slice(-8192)));
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      seen = (seen + chunk).slice(-8192);
      const match = /Simulator listening on (http:\/\/127\.0\.0\.1:\d+\/v1)/.exec(seen);
      if (match?.[1] && child.pid !== undefined) {
        clearTimeout(timer);
        resolve({ url: match[1], pid: child.pid, stop });
      }
    });
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    void exited.then(() => {
      clearTimeout(timer);
      reject(new Error(`simulator exited before printing its URL; output:\n${seen}`));
    });
  });
}
