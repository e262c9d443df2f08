/**
 * CPU-bound batch: 5,000 rows at 0 ms simulated latency, concurrency 64, one `switchyard run`
 * process (the simulator in its own process). Measures rows/s end to end (rows / wall time of the
 * whole command) and CPU ms per row of the run process (user + sys from process.resourceUsage(),
 * via bench/lib/usage-probe.mjs). Median of 3. Target: >= 1,500 rows/s. The plain-SDK baseline is
 * run alongside for reference (no target). Prints PASS/FAIL, exits 0.
 * Usage: node bench/skeleton-throughput.ts [repetitions=3] [rows=5000]
 */
import path from 'node:path';
import { checkBaseline, runBaseline } from './lib/baseline-run.ts';
import { machineLine, withBenchEnv } from './lib/bench-env.ts';
import { writePromptsCsv } from './lib/prompts-csv.ts';
import { deletePrefix } from './lib/redis.ts';
import { median, megabytes, passFail, seconds } from './lib/stats.ts';
import { checkRun, runSwitchyard, writeBenchConfig } from './lib/switchyard-run.ts';
import type { UsageRecord } from './lib/usage-record.ts';

const repetitions = Number(process.argv[2] ?? 3);
const ROWS = Number(process.argv[3] ?? 5000);
const CONCURRENCY = 64;
const TARGET_RPS = 1500;
const TIMEOUT_MS = 300_000;

const cpuMs = (usage: UsageRecord | null) => (usage ? (usage.userCPUTime + usage.systemCPUTime) / 1000 : Number.NaN);

console.log(`skeleton-throughput: ${ROWS} rows, 0 ms latency, concurrency ${CONCURRENCY}, target >= ${TARGET_RPS} rows/s; ${machineLine()}`);

await withBenchEnv('throughput', 0, async (env) => {
  const csv = await writePromptsCsv(env.dir, ROWS);
  const config = await writeBenchConfig(env.dir, env.sim.url, CONCURRENCY);
  const common = { config, concurrency: CONCURRENCY, redisUrl: env.redis.url, prefix: env.prefix, timeoutMs: TIMEOUT_MS };

  const warmCsv = await writePromptsCsv(env.dir, 200);
  checkRun('warm-up', await runSwitchyard({ ...common, csv: warmCsv, outDir: path.join(env.dir, 'warm'), batchId: 'warm' }), 200);
  await deletePrefix(env.redis.url, env.prefix);

  const rps: number[] = [];
  const innerRps: number[] = [];
  const cpuPerRow: number[] = [];
  const rss: number[] = [];
  const heap: number[] = [];
  const baseRps: number[] = [];
  const baseCpuPerRow: number[] = [];
  for (let rep = 1; rep <= repetitions; rep++) {
    const run = await runSwitchyard({ ...common, csv, outDir: path.join(env.dir, `out-${rep}`), batchId: `throughput-${rep}` });
    checkRun(`switchyard rep ${rep}`, run, ROWS);
    await deletePrefix(env.redis.url, env.prefix);
    const plain = await runBaseline({ csv, simUrl: env.sim.url, outFile: path.join(env.dir, `baseline-${rep}.jsonl`), concurrency: CONCURRENCY, timeoutMs: TIMEOUT_MS });
    checkBaseline(`baseline rep ${rep}`, plain);
    rps.push(ROWS / (run.wallMs / 1000));
    innerRps.push(run.report?.totals.rows_per_second ?? Number.NaN);
    cpuPerRow.push(cpuMs(run.usage) / ROWS);
    rss.push(run.usage?.maxRSS ?? Number.NaN);
    heap.push((run.usage?.peakHeapTotal ?? Number.NaN) / 1024);
    baseRps.push(ROWS / (plain.wallMs / 1000));
    baseCpuPerRow.push(cpuMs(plain.usage) / ROWS);
    console.log(
      `  rep ${rep}: switchyard ${seconds(run.wallMs)} = ${(ROWS / (run.wallMs / 1000)).toFixed(0)} rows/s (report ${run.report?.totals.rows_per_second ?? '?'} rows/s), ` +
        `CPU ${cpuMs(run.usage).toFixed(0)} ms = ${(cpuMs(run.usage) / ROWS).toFixed(2)} ms/row, maxRSS ${megabytes(run.usage?.maxRSS ?? Number.NaN)}; ` +
        `baseline ${seconds(plain.wallMs)} = ${(ROWS / (plain.wallMs / 1000)).toFixed(0)} rows/s, ${(cpuMs(plain.usage) / ROWS).toFixed(2)} ms/row`,
    );
  }

  const m = median(rps);
  console.log(`  median: switchyard ${m.toFixed(0)} rows/s end to end (report's own figure ${median(innerRps).toFixed(0)} rows/s), ${median(cpuPerRow).toFixed(2)} CPU ms/row, maxRSS ${megabytes(median(rss))} (peak V8 heapTotal ${megabytes(median(heap))})`);
  console.log(`  median: baseline   ${median(baseRps).toFixed(0)} rows/s, ${median(baseCpuPerRow).toFixed(2)} CPU ms/row; switchyard / baseline rows/s = ${(m / median(baseRps)).toFixed(2)}`);
  console.log(`  switchyard rows/s / target ${TARGET_RPS} = ${(m / TARGET_RPS).toFixed(2)}  target >= 1.00  ${passFail(m >= TARGET_RPS)}`);
});
