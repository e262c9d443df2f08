/**
 * Flat memory: peak RSS (maxRSS from process.resourceUsage(), via bench/lib/usage-probe.mjs) of
 * one `switchyard run` process for 20,000 rows and for 200,000 rows at 0 ms simulated latency,
 * concurrency 64, each run once. Targets: both < 200 MB, and about the same (200k / 20k <= 1.25).
 * Each run is bounded by a time limit (SIGTERM; the probe still records the peak RSS so far).
 * Prints PASS/FAIL, exits 0.
 * Usage: node bench/skeleton-memory.ts [small=20000] [large=200000]
 */
import path from 'node:path';
import { machineLine, withBenchEnv } from './lib/bench-env.ts';
import { writePromptsCsv } from './lib/prompts-csv.ts';
import { deletePrefix } from './lib/redis.ts';
import { megabytes, passFail, seconds } from './lib/stats.ts';
import { lineAt, runSwitchyard, writeBenchConfig, type SwitchyardRunResult } from './lib/switchyard-run.ts';

const sizes = [Number(process.argv[2] ?? 20_000), Number(process.argv[3] ?? 200_000)];
const CONCURRENCY = 64;
const TARGET_MB = 200;
const MAX_GROWTH = 1.25;
/** Generous: 200k rows at a few hundred rows/s is several minutes on a small machine. */
const timeoutFor = (rows: number) => Math.max(120_000, rows * 5);

console.log(`skeleton-memory: peak RSS of "switchyard run" for ${sizes.join(' and ')} rows, 0 ms latency, concurrency ${CONCURRENCY}, target < ${TARGET_MB} MB; ${machineLine()}`);

await withBenchEnv('memory', 0, async (env) => {
  const config = await writeBenchConfig(env.dir, env.sim.url, CONCURRENCY);
  const results: Array<{ rows: number; run: SwitchyardRunResult }> = [];
  for (const rows of sizes) {
    const csv = await writePromptsCsv(env.dir, rows);
    const run = await runSwitchyard({
      csv,
      config,
      outDir: path.join(env.dir, `out-${rows}`),
      batchId: `memory-${rows}`,
      concurrency: CONCURRENCY,
      redisUrl: env.redis.url,
      prefix: env.prefix,
      timeoutMs: timeoutFor(rows),
    });
    await deletePrefix(env.redis.url, env.prefix);
    const done = run.report?.totals.succeeded ?? 0;
    const status = run.timedOut ? `TIMED OUT after ${seconds(run.wallMs)} (limit ${seconds(timeoutFor(rows))})` : `exit ${run.exitCode}, ${done} of ${rows} succeeded`;
    const cpu = run.usage ? (run.usage.userCPUTime + run.usage.systemCPUTime) / 1000 : Number.NaN;
    console.log(`  ${rows} rows: maxRSS ${megabytes(run.usage?.maxRSS ?? Number.NaN)}; ${status}; wall ${seconds(run.wallMs)} = ${(rows / (run.wallMs / 1000)).toFixed(0)} rows/s, CPU ${(cpu / rows).toFixed(2)} ms/row`);
    const u = run.usage;
    if (u) console.log(`    peaks of process.memoryUsage(): heapTotal ${megabytes(u.peakHeapTotal / 1024)}, heapUsed ${megabytes(u.peakHeapUsed / 1024)}, external ${megabytes(u.peakExternal / 1024)}, arrayBuffers ${megabytes(u.peakArrayBuffers / 1024)}`);
    if (u) console.log(`    (heapUsed peak at ${seconds(u.peakHeapUsedAtMs)}, arrayBuffers peak at ${seconds(u.peakArrayBuffersAtMs)}; all enqueued at ${seconds(lineAt(run, /^Read [\d,]+ rows?:/))}, summary at ${seconds(lineAt(run, /^Rows /))}, exit at ${seconds(u.exitAtMs)}; times since the run process started)`);
    if (!run.timedOut && run.exitCode !== 0) console.log(`    stderr tail: ${run.stderr.slice(-1500)}`);
    results.push({ rows, run });
  }
  const [small, large] = results.map((r) => (r.run.usage?.maxRSS ?? Number.NaN) / 1024);
  if (small === undefined || large === undefined) return;
  const ratio = large / small;
  console.log(`  maxRSS ${sizes[0]} rows ${small.toFixed(1)} MB, ${sizes[1]} rows ${large.toFixed(1)} MB; ratio ${ratio.toFixed(2)}`);
  console.log(`  peak RSS < ${TARGET_MB} MB for both: ${passFail(small < TARGET_MB && large < TARGET_MB)}`);
  console.log(`  flat (large / small <= ${MAX_GROWTH}): ${passFail(ratio <= MAX_GROWTH)}`);
});
