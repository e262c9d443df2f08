import { rm } from 'node:fs/promises';
import { deletePrefix, selectRedis, uniquePrefix, type BenchRedis } from './redis.ts';
import { startSimulatorProcess, type SimulatorProcess } from './simulator-process.ts';
import { tmpDir } from './paths.ts';

export interface BenchEnv {
  name: string;
  dir: string;
  redis: BenchRedis;
  prefix: string;
  sim: SimulatorProcess;
}

/**
 * Redis (shared or private), a simulator process at `latencyMs`, a unique key prefix and a temp
 * folder for one benchmark; everything is undone afterwards, the prefix's keys included.
 * Set BENCH_KEEP=1 to keep the temp folder.
 */
// Stopped from outside (run-all's time limit, Ctrl-C): exit through 'exit' so child processes are killed.
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => process.exit(130));

export async function withBenchEnv<T>(name: string, latencyMs: number, body: (env: BenchEnv) => Promise<T>): Promise<T> {
  const dir = tmpDir(name);
  const redis = await selectRedis();
  const prefix = uniquePrefix(name);
  let sim: SimulatorProcess | undefined;
  try {
    sim = await startSimulatorProcess({ latencyMs });
    console.log(`  redis: ${redis.label}, key prefix ${prefix}; simulator ${sim.url} (latency ${latencyMs} ms, own process)`);
    return await body({ name, dir, redis, prefix, sim });
  } finally {
    await sim?.stop();
    await cleanUpBenchRun(redis, prefix, dir);
  }
}

/** Header lines every benchmark prints, so a pasted output carries its machine. */
/** After a run: delete its keys (never FLUSHALL), stop a private Redis, remove its files unless BENCH_KEEP=1. */
export async function cleanUpBenchRun(redis: BenchRedis, prefix: string, dir: string): Promise<void> {
  const deleted = await deletePrefix(redis.url, prefix).catch((error: unknown) => {
    console.error(`  could not delete keys under ${prefix}: ${String(error)}`);
    return 0;
  });
  console.log(`  cleanup: deleted ${deleted} leftover keys under ${prefix}:*`);
  await redis.stop();
  if (process.env.BENCH_KEEP !== '1') await rm(dir, { recursive: true, force: true });
}

export function machineLine(): string {
  return `node ${process.version}, ${process.platform}/${process.arch}`;
}
