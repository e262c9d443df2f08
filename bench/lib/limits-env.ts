import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { cleanUpBenchRun } from './bench-env.ts';
import { CLI, CLI_ENV, CLI_NODE_FLAGS, ROOT, USAGE_PROBE, tmpDir } from './paths.ts';
import { deletePrefix, selectRedis, uniquePrefix, type BenchRedis } from './redis.ts';
import { startSimulatorProcess, type SimulatorProcess } from './simulator-process.ts';
import type { UsageRecord } from './usage-record.ts';

/**
 * The setting of the rate-limit benchmarks: Redis, a key prefix, a temp folder, and simulators
 * started on demand. A simulator's limits keep a rolling 60 s window, so every measured run gets a
 * fresh one (`freshSim`, which stops the previous one) and a clean prefix (`clearKeys`): nothing
 * one run used counts against the next. Everything is undone afterwards, the prefix's keys included.
 */

export interface LimitsEnv {
  dir: string;
  redis: BenchRedis;
  prefix: string;
  /** Stops the simulator started last (if any) and starts another with these `switchyard sim` flags. */
  freshSim(options: { latencyMs: number; args: string[] }): Promise<SimulatorProcess>;
  /** Deletes every key under the prefix (between runs). */
  clearKeys(): Promise<number>;
}

// Stopped from outside (run-all's time limit, Ctrl-C): exit through 'exit' so child processes are killed.
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => process.exit(130));

export async function withLimitsEnv<T>(name: string, body: (env: LimitsEnv) => Promise<T>): Promise<T> {
  const dir = tmpDir(name);
  const redis = await selectRedis();
  const prefix = uniquePrefix(name);
  let sim: SimulatorProcess | undefined;
  console.log(`  redis: ${redis.label}, key prefix ${prefix}; a fresh simulator (own process) for each run`);
  try {
    return await body({
      dir,
      redis,
      prefix,
      async freshSim(options) {
        await sim?.stop();
        sim = undefined;
        sim = await startSimulatorProcess({ latencyMs: options.latencyMs, extraArgs: options.args });
        return sim;
      },
      clearKeys: () => deletePrefix(redis.url, prefix),
    });
  } finally {
    await sim?.stop();
    await cleanUpBenchRun(redis, prefix, dir);
  }
}

export interface WorkerProcess {
  pid: number;
  /** SIGTERM (the worker finishes the rows in hand), SIGKILL after `graceMs`; resolves with its CPU figures. */
  stop(graceMs?: number): Promise<{ exitCode: number | null; signal: NodeJS.Signals | null; usage: UsageRecord | null; output: string }>;
}

/**
 * `switchyard worker --concurrency N` as its own process on the benchmark's Redis and prefix (with
 * the usage probe), resolved once it says it is running.
 */
export function startWorkerProcess(options: { redisUrl: string; prefix: string; concurrency: number; usageFile: string; startTimeoutMs?: number }): Promise<WorkerProcess> {
  const env = { ...process.env, ...CLI_ENV, REDIS_URL: options.redisUrl, SWITCHYARD_PREFIX: options.prefix, SWITCHYARD_USAGE_FILE: options.usageFile };
  const child = spawn(process.execPath, [...CLI_NODE_FLAGS, '--import', USAGE_PROBE, CLI, 'worker', '--concurrency', String(options.concurrency)], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const closed = new Promise<{ exitCode: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('close', (exitCode, signal) => resolve({ exitCode, signal })));
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);
  let output = '';
  const keep = (chunk: string) => (output = (output + chunk).slice(-16_384));
  child.stderr.setEncoding('utf8').on('data', keep);

  const stop: WorkerProcess['stop'] = async (graceMs = 30_000) => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    const result = await closed;
    clearTimeout(timer);
    process.removeListener('exit', killOnExit);
    let usage: UsageRecord | null = null;
    try {
      usage = JSON.parse(await readFile(options.usageFile, 'utf8')) as UsageRecord;
    } catch {
      // killed hard: no figures
    }
    return { ...result, usage, output };
  };

  return new Promise((resolve, reject) => {
    const limit = options.startTimeoutMs ?? 20_000;
    const timer = setTimeout(() => {
      void stop(1000);
      reject(new Error(`worker did not say it was running within ${limit} ms; output:\n${output}`));
    }, limit);
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      keep(chunk);
      if (/Worker running/.test(output) && child.pid !== undefined) {
        clearTimeout(timer);
        resolve({ pid: child.pid, stop });
      }
    });
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    void closed.then(({ exitCode, signal }) => {
      clearTimeout(timer);
      reject(new Error(`worker exited (${exitCode ?? signal}) before it was running; output:\n${output}`));
    });
  });
}
