/**
 * Diagnostics behind the skeleton benchmarks (no targets): where a `switchyard run` spends its
 * time and memory.
 *  1. Start-up alone: `node -e 0`, `switchyard --help` (the built CLI), and importing the sources'
 *     src/batch/run-batch.ts (type stripping: slower than the bundle the CLI loads).
 *  2. Fixed cost of a 1-row run (wall, CPU, peak RSS).
 *  3. Phases of the latency benchmark's run (2,000 rows, 100 ms, concurrency 50), from stdout line
 *     arrival times and the first job's key appearing in Redis.
 *  4. A `node --cpu-prof` profile of a 5,000-row run at 0 ms: self time by origin and by function.
 *  5. Redis commands per row (INFO commandstats of a private redis-server, 2,000 rows at 0 ms).
 *  6. Memory: peak RSS and V8 heap of a 20,000-row run with default heap settings and with a small
 *     heap (--max-old-space-size=96 --max-semi-space-size=4), to separate live data from V8 headroom.
 *  7. Rows finished per second over a 30,000-row run at 0 ms (from results.jsonl's completed_at):
 *     start-up, the enqueue phase and the steady state, one by one.
 * Usage: node bench/where-time-goes.ts [repetitions=3] [sections, e.g. profile,commands; default all]
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { Redis } from 'ioredis';
import { machineLine, withBenchEnv, type BenchEnv } from './lib/bench-env.ts';
import { printProfileSummary, summariseProfile } from './lib/cpu-profile-summary.ts';
import { CLI, PRODUCT_ROOT, ROOT } from './lib/paths.ts';
import { writePromptsCsv } from './lib/prompts-csv.ts';
import { deletePrefix } from './lib/redis.ts';
import { runCommand } from './lib/run-command.ts';
import { median, megabytes } from './lib/stats.ts';
import { checkRun, lineAt, runSwitchyard, writeBenchConfig, type SwitchyardRunResult } from './lib/switchyard-run.ts';

const repetitions = Number(process.argv[2] ?? 3);
const ms = (value: number) => `${value.toFixed(0)} ms`;
const cpuMs = (run: SwitchyardRunResult) => (run.usage ? (run.usage.userCPUTime + run.usage.systemCPUTime) / 1000 : Number.NaN);

console.log(`where-time-goes: ${machineLine()}`);

// 1. Start-up alone.
async function wallOf(args: string[]): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < 5; i++) times.push((await runCommand(process.execPath, args, { cwd: ROOT, timeoutMs: 30_000 })).wallMs);
  return median(times);
}
const bare = await wallOf(['-e', '0']);
const help = await wallOf([CLI, '--help']);
const importRun = await wallOf(['--input-type=module', '-e', `await import(${JSON.stringify(path.join(PRODUCT_ROOT, 'src/batch/run-batch.ts'))})`]);
console.log('1. start-up (median of 5, wall from spawn to exit)');
console.log(`  node -e 0                        ${ms(bare)}`);
console.log(`  switchyard --help                ${ms(help)}`);
console.log(`  node -e "import(src/batch/run-batch.ts)" ${ms(importRun)}  (sources, type-stripped; bullmq, ioredis, openai, zod, pino, csv ... loaded)`);

/** Scans the (small) keyspace for a key matching `pattern`. */
async function anyKeyMatches(redis: Redis, pattern: string): Promise<boolean> {
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
    if (keys.length > 0) return true;
    cursor = next;
  } while (cursor !== '0');
  return false;
}

/** Polls Redis for the first job's hash (its id ends with the row's fingerprint, hence the pattern); resolves with ms since `t0` (or NaN after the limit). */
function firstJobSeen(url: string, pattern: string, t0: number, limitMs: number): { promise: Promise<number>; stop: () => void } {
  const redis = new Redis(url, { maxRetriesPerRequest: 1 });
  let stopped = false;
  const promise = (async () => {
    try {
      while (!stopped && performance.now() - t0 < limitMs) {
        if (await anyKeyMatches(redis, pattern)) return performance.now() - t0;
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
      return Number.NaN;
    } finally {
      redis.disconnect();
    }
  })();
  return { promise, stop: () => (stopped = true) };
}

async function fixedCost(env: BenchEnv): Promise<void> {
  const csv = await writePromptsCsv(env.dir, 1);
  const config = await writeBenchConfig(env.dir, env.sim.url, 64);
  const runs: SwitchyardRunResult[] = [];
  for (let rep = 1; rep <= repetitions; rep++) {
    const run = await runSwitchyard({ csv, config, outDir: path.join(env.dir, `one-${rep}`), batchId: `one-${rep}`, concurrency: 64, redisUrl: env.redis.url, prefix: env.prefix, timeoutMs: 60_000 });
    checkRun('1-row run', run, 1);
    runs.push(run);
  }
  await deletePrefix(env.redis.url, env.prefix);
  console.log(`2. a 1-row run (median of ${repetitions}): wall ${ms(median(runs.map((r) => r.wallMs)))}, CPU ${ms(median(runs.map(cpuMs)))}, maxRSS ${megabytes(median(runs.map((r) => r.usage?.maxRSS ?? Number.NaN)))}`);
  console.log(`  "Batch" line at ${ms(median(runs.map((r) => lineAt(r, /^Batch /))))}, "Read ... rows" line at ${ms(median(runs.map((r) => lineAt(r, /^Read [\d,]+ rows?:/))))}, summary at ${ms(median(runs.map((r) => lineAt(r, /^Rows /))))}, exit at ${ms(median(runs.map((r) => r.wallMs)))}`);
}

async function phases(env: BenchEnv): Promise<void> {
  const rows = 2000;
  const csv = await writePromptsCsv(env.dir, rows);
  const config = await writeBenchConfig(env.dir, env.sim.url, 50);
  const table: Array<Record<string, number>> = [];
  for (let rep = 1; rep <= repetitions; rep++) {
    const batchId = `phases-${rep}`;
    const t0 = performance.now();
    const watch = firstJobSeen(env.redis.url, `${env.prefix}:prompts:${batchId}_1_*`, t0, 120_000);
    const run = await runSwitchyard({ csv, config, outDir: path.join(env.dir, `phases-${rep}`), batchId, concurrency: 50, redisUrl: env.redis.url, prefix: env.prefix, timeoutMs: 120_000 });
    watch.stop();
    checkRun('phases run', run, rows);
    const report = run.report as unknown as { totals: { elapsed_ms: number }; models: Record<string, { latency_p50_ms: number; latency_p95_ms: number }> };
    table.push({
      batchLine: lineAt(run, /^Batch /),
      firstJob: await watch.promise,
      readLine: lineAt(run, /^Read [\d,]+ rows?:/),
      summary: lineAt(run, /^Rows /),
      exit: run.wallMs,
      reportElapsed: report.totals.elapsed_ms,
      p50: report.models.fast?.latency_p50_ms ?? Number.NaN,
      p95: report.models.fast?.latency_p95_ms ?? Number.NaN,
      cpu: cpuMs(run),
    });
    await deletePrefix(env.redis.url, env.prefix);
  }
  const m = (key: string) => median(table.map((row) => row[key] as number));
  console.log(`3. phases of a ${rows}-row run at 100 ms, concurrency 50 (ms since spawn, median of ${repetitions}; bound for the calls alone 4000 ms)`);
  console.log(`  "Batch" line printed (modules loaded)    ${ms(m('batchLine'))}`);
  console.log(`  first job in Redis                        ${ms(m('firstJob'))}`);
  console.log(`  "Read ... rows" printed (all enqueued)    ${ms(m('readLine'))}`);
  console.log(`  summary printed (collector + report done) ${ms(m('summary'))}`);
  console.log(`  process exit                              ${ms(m('exit'))}`);
  console.log(`  report elapsed_ms ${ms(m('reportElapsed'))}; call latency p50 ${ms(m('p50'))}, p95 ${ms(m('p95'))} (simulator: 100 ms); run CPU ${ms(m('cpu'))}`);
}

/** A `switchyard run` under `node --cpu-prof` (each in a folder of its own); returns the run and its profile. */
async function profiledRun(env: BenchEnv, options: { name: string; rows: number; concurrency: number; timeoutMs: number }): Promise<{ run: SwitchyardRunResult; profileFile: string }> {
  const csv = await writePromptsCsv(env.dir, options.rows);
  const config = await writeBenchConfig(env.dir, env.sim.url, options.concurrency);
  const profDir = path.join(env.dir, `cpuprof-${options.name}`);
  const run = await runSwitchyard({ csv, config, outDir: path.join(env.dir, `${options.name}-out`), batchId: options.name, concurrency: options.concurrency, redisUrl: env.redis.url, prefix: env.prefix, timeoutMs: options.timeoutMs, nodeFlags: ['--cpu-prof', `--cpu-prof-dir=${profDir}`] });
  checkRun(`profiled run ${options.name}`, run, options.rows);
  await deletePrefix(env.redis.url, env.prefix);
  const file = readdirSync(profDir).find((name) => name.endsWith('.cpuprofile'));
  if (!file) throw new Error(`no .cpuprofile written for ${options.name}`);
  return { run, profileFile: path.join(profDir, file) };
}

async function profile(env: BenchEnv): Promise<void> {
  const rows = 5000;
  const { run, profileFile } = await profiledRun(env, { name: 'profile', rows, concurrency: 64, timeoutMs: 300_000 });
  const u = run.usage;
  console.log(`4. CPU profile of a ${rows}-row run at 0 ms, concurrency 64 (main thread; profiling slows it): wall ${ms(run.wallMs)}, CPU ${ms(cpuMs(run))} (${(cpuMs(run) / rows).toFixed(2)} ms/row)`);
  if (u) console.log(`  memory peaks: maxRSS ${megabytes(u.maxRSS)}, heapTotal ${megabytes(u.peakHeapTotal / 1024)}, heapUsed ${megabytes(u.peakHeapUsed / 1024)}, external ${megabytes(u.peakExternal / 1024)}, arrayBuffers ${megabytes(u.peakArrayBuffers / 1024)}`);
  printProfileSummary(summariseProfile(profileFile, 25));
}

async function redisCommands(env: BenchEnv): Promise<void> {
  const rows = 2000;
  const module = pathToFileURL(path.join(PRODUCT_ROOT, 'src', 'queue', 'redis-server-process.ts')).href;
  const { startRedisServer } = (await import(module)) as typeof import('../src/queue/redis-server-process.ts');
  const server = await startRedisServer({ dir: path.join(env.dir, 'redis'), persist: false });
  const redis = new Redis(server.url);
  try {
    const csv = await writePromptsCsv(env.dir, rows);
    const config = await writeBenchConfig(env.dir, env.sim.url, 64);
    await redis.config('RESETSTAT');
    const run = await runSwitchyard({ csv, config, outDir: path.join(env.dir, 'cmd-out'), batchId: 'commands', concurrency: 64, redisUrl: server.url, prefix: env.prefix, timeoutMs: 120_000 });
    checkRun('commands run', run, rows);
    const stats = await redis.info('commandstats');
    const entries = [...stats.matchAll(/^cmdstat_(\S+?):calls=(\d+),usec=(\d+)/gm)].map((m) => ({ name: m[1] ?? '?', calls: Number(m[2]), usec: Number(m[3]) }));
    entries.sort((a, b) => b.usec - a.usec);
    const calls = entries.reduce((sum, e) => sum + e.calls, 0);
    const usec = entries.reduce((sum, e) => sum + e.usec, 0);
    console.log(`5. Redis commands of a ${rows}-row run at 0 ms, concurrency 64 (private redis-server ${server.url}; INFO commandstats, Lua scripts' inner calls included)`);
    console.log(`  ${calls} commands = ${(calls / rows).toFixed(1)} per row; Redis busy ${(usec / 1000).toFixed(0)} ms = ${(usec / rows).toFixed(0)} us per row; run wall ${ms(run.wallMs)}`);
    for (const e of entries.slice(0, 14)) console.log(`    ${e.name.padEnd(18)} ${String(e.calls).padStart(7)} calls  ${(e.calls / rows).toFixed(2).padStart(6)}/row  ${(e.usec / 1000).toFixed(0).padStart(6)} ms`);
  } finally {
    redis.disconnect();
    await server.stop();
  }
}

async function memory(env: BenchEnv): Promise<void> {
  const rows = 20_000;
  const csv = await writePromptsCsv(env.dir, rows);
  const config = await writeBenchConfig(env.dir, env.sim.url, 64);
  console.log(`6. memory of a ${rows}-row run at 0 ms, concurrency 64: default V8 heap vs a small one`);
  for (const nodeFlags of [[], ['--max-old-space-size=96', '--max-semi-space-size=4']]) {
    const run = await runSwitchyard({ csv, config, outDir: path.join(env.dir, `mem-${nodeFlags.length}`), batchId: `mem-${nodeFlags.length}`, concurrency: 64, redisUrl: env.redis.url, prefix: env.prefix, timeoutMs: 300_000, nodeFlags });
    await deletePrefix(env.redis.url, env.prefix);
    const u = run.usage;
    const done = `${run.report?.totals.succeeded ?? 0} of ${rows} succeeded${run.timedOut ? ', TIMED OUT' : ''}`;
    console.log(`  ${(nodeFlags.join(' ') || 'default heap').padEnd(50)} maxRSS ${megabytes(u?.maxRSS ?? Number.NaN)}, heapTotal ${megabytes((u?.peakHeapTotal ?? Number.NaN) / 1024)}, heapUsed ${megabytes((u?.peakHeapUsed ?? Number.NaN) / 1024)}; ${done}; ${(rows / (run.wallMs / 1000)).toFixed(0)} rows/s, CPU ${(cpuMs(run) / rows).toFixed(2)} ms/row`);
  }
}

async function latencyProfile(env: BenchEnv): Promise<void> {
  const rows = 2000;
  const { run, profileFile } = await profiledRun(env, { name: 'lat-profile', rows, concurrency: 50, timeoutMs: 120_000 });
  console.log(`3b. CPU profile of the ${rows}-row run at 100 ms, concurrency 50: wall ${ms(run.wallMs)}, CPU ${ms(cpuMs(run))}`);
  printProfileSummary(summariseProfile(profileFile, 15));
}

async function timeline(env: BenchEnv): Promise<void> {
  const rows = 30_000;
  const csv = await writePromptsCsv(env.dir, rows);
  const config = await writeBenchConfig(env.dir, env.sim.url, 64);
  const outDir = path.join(env.dir, 'timeline');
  const run = await runSwitchyard({ csv, config, outDir, batchId: 'timeline', concurrency: 64, redisUrl: env.redis.url, prefix: env.prefix, timeoutMs: 300_000 });
  checkRun('timeline run', run, rows);
  await deletePrefix(env.redis.url, env.prefix);
  const done = readFileSync(path.join(outDir, 'results.jsonl'), 'utf8').trim().split('\n').map((line) => Date.parse((JSON.parse(line) as { completed_at: string }).completed_at));
  const first = Math.min(...done);
  const perSecond: number[] = [];
  for (const t of done) {
    const second = Math.floor((t - first) / 1000);
    perSecond[second] = (perSecond[second] ?? 0) + 1;
  }
  const batchLine = lineAt(run, /^Batch /);
  console.log(`7. rows finished per second, ${rows}-row run at 0 ms, concurrency 64: wall ${ms(run.wallMs)}; "Batch" at ${ms(batchLine)}, all enqueued at ${ms(lineAt(run, /^Read [\d,]+ rows?:/))}, summary at ${ms(lineAt(run, /^Rows /))} (since spawn)`);
  console.log(`  second after the first row finished: rows finished in it`);
  console.log(`  ${Array.from(perSecond, (n, s) => `${s}s:${n ?? 0}`).join(' ')}`);
  const full = perSecond.slice(3, -1).filter((n): n is number => n !== undefined);
  console.log(`  median of the full seconds after the first 3: ${median(full).toFixed(0)} rows/s`);
}

// Sections run in this order; a comma-separated list as the second argument picks some of them.
const sections: Array<[name: string, latencyMs: number, run: (env: BenchEnv) => Promise<void>]> = [
  ['fixed', 0, fixedCost],
  ['phases', 100, phases],
  ['latprof', 100, latencyProfile],
  ['profile', 0, profile],
  ['commands', 0, redisCommands],
  ['heap', 0, memory],
  ['timeline', 0, timeline],
];
const picked = process.argv[3]?.split(',');
const unknown = picked?.filter((name) => !sections.some(([known]) => known === name)) ?? [];
if (unknown.length > 0) throw new Error(`unknown section(s) ${unknown.join(', ')}; known: ${sections.map(([name]) => name).join(', ')}`);
for (const [name, latencyMs, run] of sections) {
  if (!picked || picked.includes(name)) await withBenchEnv(name, latencyMs, run);
}
