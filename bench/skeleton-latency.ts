/**
 * Latency-bound batch: 2,000 rows at 100 ms simulated latency, concurrency 50. The bound is
 * 2,000 x 0.1 s / 50 = 4 s. Times the whole `switchyard run` command (start-up, enqueue, workers,
 * collector, report) from spawn to exit, 5 repetitions alternating with the plain-SDK baseline
 * (bench/baseline-plain-sdk.ts) against the same simulator process. Five, because the two are
 * within 1% of each other and one repetition moves by more than that on a shared machine; it also
 * counts the repetitions Switchyard won. Each repetition also times the floor
 * (bench/floor-bare-http.mjs: the same requests with Node's bare http client and nothing else),
 * which says how much of the distance to the bound is the machine's and how much is Switchyard's.
 * Targets: Switchyard / bound <= 1.10 and Switchyard / baseline <= 1.0 (medians). Prints
 * PASS/FAIL, exits 0.
 * Usage: node bench/skeleton-latency.ts [repetitions=5]
 */
import path from 'node:path';
import { checkBaseline, runBaseline, runFloor } from './lib/baseline-run.ts';
import { machineLine, withBenchEnv } from './lib/bench-env.ts';
import { writePromptsCsv } from './lib/prompts-csv.ts';
import { deletePrefix } from './lib/redis.ts';
import { median, passFail, seconds } from './lib/stats.ts';
import { checkRun, runSwitchyard, writeBenchConfig } from './lib/switchyard-run.ts';

const ROWS = 2000;
const LATENCY_MS = 100;
const CONCURRENCY = 50;
const BOUND_MS = (ROWS * LATENCY_MS) / CONCURRENCY;
const TIMEOUT_MS = 120_000;
const repetitions = Number(process.argv[2] ?? 5);

console.log(`skeleton-latency: ${ROWS} rows, ${LATENCY_MS} ms latency, concurrency ${CONCURRENCY}, bound ${seconds(BOUND_MS)}; ${machineLine()}`);

await withBenchEnv('latency', LATENCY_MS, async (env) => {
  const csv = await writePromptsCsv(env.dir, ROWS);
  const config = await writeBenchConfig(env.dir, env.sim.url, CONCURRENCY);
  const common = { config, concurrency: CONCURRENCY, redisUrl: env.redis.url, prefix: env.prefix, timeoutMs: TIMEOUT_MS };

  // Warm-up (not counted): module files into the page cache, simulator JIT.
  const warmCsv = await writePromptsCsv(env.dir, 200);
  checkRun('warm-up switchyard', await runSwitchyard({ ...common, csv: warmCsv, outDir: path.join(env.dir, 'warm'), batchId: 'warm' }), 200);
  checkBaseline('warm-up baseline', await runBaseline({ csv: warmCsv, simUrl: env.sim.url, outFile: path.join(env.dir, 'warm.jsonl'), concurrency: CONCURRENCY, timeoutMs: TIMEOUT_MS }));

  const sy: number[] = [];
  const syInner: number[] = [];
  const base: number[] = [];
  const floor: number[] = [];
  for (let rep = 1; rep <= repetitions; rep++) {
    const run = await runSwitchyard({ ...common, csv, outDir: path.join(env.dir, `out-${rep}`), batchId: `latency-${rep}` });
    checkRun(`switchyard rep ${rep}`, run, ROWS);
    await deletePrefix(env.redis.url, env.prefix);
    const plain = await runBaseline({ csv, simUrl: env.sim.url, outFile: path.join(env.dir, `baseline-${rep}.jsonl`), concurrency: CONCURRENCY, timeoutMs: TIMEOUT_MS });
    checkBaseline(`baseline rep ${rep}`, plain);
    const bare = await runFloor({ simUrl: env.sim.url, requests: ROWS, concurrency: CONCURRENCY, timeoutMs: TIMEOUT_MS });
    if (bare.timedOut || bare.exitCode !== 0) throw new Error(`floor rep ${rep}: ${bare.timedOut ? 'timed out' : `exit ${bare.exitCode}`}\n${bare.stdout}\n${bare.stderr}`);
    floor.push(bare.wallMs);
    sy.push(run.wallMs);
    syInner.push(run.report?.totals.elapsed_ms ?? Number.NaN);
    base.push(plain.wallMs);
    console.log(`  rep ${rep}: switchyard ${seconds(run.wallMs)} (report elapsed ${seconds(run.report?.totals.elapsed_ms ?? Number.NaN)}), baseline ${seconds(plain.wallMs)}, floor ${seconds(bare.wallMs)} (${bare.stdout.trim()})`);
  }

  const syMedian = median(sy);
  const baseMedian = median(base);
  const floorMedian = median(floor);
  const toBound = syMedian / BOUND_MS;
  const toBaseline = syMedian / baseMedian;
  const won = sy.filter((ms, i) => ms < (base[i] ?? Number.NaN)).length;
  console.log(`  median wall: switchyard ${seconds(syMedian)} (report elapsed ${seconds(median(syInner))}), baseline ${seconds(baseMedian)} (baseline / bound ${(baseMedian / BOUND_MS).toFixed(2)})`);
  console.log(`  floor (bare http client, nothing else) ${seconds(floorMedian)} = ${(floorMedian / BOUND_MS).toFixed(2)} x the bound; Switchyard adds ${seconds(syMedian - floorMedian)} to it, the baseline ${seconds(baseMedian - floorMedian)}`);
  console.log(`  switchyard / bound    = ${toBound.toFixed(2)}  target <= 1.10  ${passFail(toBound <= 1.1)}`);
  console.log(`  switchyard / baseline = ${toBaseline.toFixed(3)}  target <= 1.00  ${passFail(toBaseline <= 1.0)}  (switchyard faster in ${won} of ${repetitions} repetitions)`);
});
