/**
 * A requests-per-minute limit shared by every worker (issue 3). The simulator limits model "fast"
 * to 3,000 requests per rolling 60 s window (429 beyond, with retry-after); the Switchyard config
 * says `rpm: 3000` on that model (default `limits.headroom` 0.98). 6,000 rows, 50 ms latency,
 * concurrency 200, in two shapes:
 *   1. one `switchyard run` process at concurrency 200;
 *   2. two processes sharing the limit through Redis: `run --concurrency 100` plus one
 *      `switchyard worker --concurrency 100`.
 * Beside them, the plain SDK + p-limit script (bench/baseline-plain-sdk.ts, concurrency 200,
 * maxRetries 0) against the same limit: every 429 it gets is a lost row.
 * Each run gets a fresh simulator (its window starts empty) and a clean key prefix.
 *
 * Measured from each run's costs.jsonl (one line per call, `started_at` and `http_status`):
 *   achieved rate = accepted calls per minute over the span from the first to the last accepted
 *   start, as a share of the limit (target >= 97%); share of calls answered 429 (target <= 1%);
 *   rows succeeded (target: all). Plus the busiest 60 s window, the pace per second and a timeline.
 * One repetition of each (a run takes about 2 minutes at the limit); the whole script about 5-6 min.
 * Prints PASS/FAIL, exits 0 unless something could not run.
 * Usage: node bench/limits-rpm.ts [rows=6000] [rpm=3000]
 */
import path from 'node:path';
import { runBaseline } from './lib/baseline-run.ts';
import { readCalls } from './lib/call-log.ts';
import { machineLine } from './lib/bench-env.ts';
import { reportLimitRun, type LimitRunFigures } from './lib/limit-figures.ts';
import { startWorkerProcess, withLimitsEnv, type LimitsEnv, type WorkerProcess } from './lib/limits-env.ts';
import { baselineLosses, callErrors, cpuMs, productLine, runTimeLimitMs, writeYaml } from './lib/limits-run.ts';
import { writePromptsCsv } from './lib/prompts-csv.ts';
import { runSwitchyard, type SwitchyardRunResult } from './lib/switchyard-run.ts';

const ROWS = Number(process.argv[2] ?? 6000);
const RPM = Number(process.argv[3] ?? 3000);
const LATENCY_MS = 50;
const CONCURRENCY = 200;
const HEADROOM = 0.98;
const TARGETS = { minShare: 0.97, max429Share: 0.01 };
const IDEAL_MS = (ROWS / (RPM * HEADROOM)) * 60_000;
const TIME_LIMIT_MS = runTimeLimitMs(IDEAL_MS);

console.log(`limits-rpm: ${ROWS} rows, simulator limit ${RPM} requests/min on "fast" (rolling 60 s), latency ${LATENCY_MS} ms, concurrency ${CONCURRENCY}; config rpm ${RPM}, headroom ${HEADROOM}; ${machineLine()}; ${productLine()}`);
console.log(`  at ${HEADROOM * 100}% of the limit the calls take ${(IDEAL_MS / 1000).toFixed(1)} s; each run's time limit ${(TIME_LIMIT_MS / 1000).toFixed(0)} s; 1 repetition each`);

const simArgs = ['--model-limits', JSON.stringify({ fast: { rpm: RPM } })];

async function switchyardRun(env: LimitsEnv, csv: string, shape: 'one' | 'two'): Promise<LimitRunFigures> {
  await env.clearKeys();
  const sim = await env.freshSim({ latencyMs: LATENCY_MS, args: simArgs });
  const config = await writeYaml(env.dir, `switchyard-${shape}.yaml`, [
    'providers:',
    `  sim: { base_url: ${sim.url}, timeout_ms: 30000 }`,
    'models:',
    `  fast: { provider: sim, rpm: ${RPM}, price: { input_per_mtok: 0.14, output_per_mtok: 0.28 } }`,
    'default_model: fast',
    `concurrency: ${CONCURRENCY}`,
  ]);
  const runConcurrency = shape === 'one' ? CONCURRENCY : CONCURRENCY / 2;
  const worker =
    shape === 'two'
      ? await startWorkerProcess({ redisUrl: env.redis.url, prefix: env.prefix, concurrency: CONCURRENCY / 2, usageFile: path.join(env.dir, 'worker.usage.json') })
      : null;
  const outDir = path.join(env.dir, `out-${shape}`);
  let run: SwitchyardRunResult;
  let stopped: Awaited<ReturnType<WorkerProcess['stop']>> | undefined;
  const spawnedAt = Date.now();
  try {
    run = await runSwitchyard({ csv, config, outDir, batchId: `rpm-${shape}`, concurrency: runConcurrency, redisUrl: env.redis.url, prefix: env.prefix, timeoutMs: TIME_LIMIT_MS });
  } finally {
    stopped = await worker?.stop();
  }
  const calls = await readCalls(path.join(outDir, 'costs.jsonl'));
  const notes = [
    `run process: exit ${run.exitCode ?? run.signal}${run.timedOut ? ' (TIMED OUT: figures are from the calls it logged)' : ''}, CPU ${(cpuMs(run.usage) / 1000).toFixed(1)} s (${(cpuMs(run.usage) / ROWS).toFixed(2)} ms/row); report call_errors ${JSON.stringify(await callErrors(outDir))}`,
  ];
  if (stopped) notes.push(`worker process: exit ${stopped.exitCode ?? stopped.signal}, CPU ${(cpuMs(stopped.usage) / 1000).toFixed(1)} s (a share of the rows ran there)`);
  if (run.exitCode !== 0) notes.push(`run stderr (tail): ${run.stderr.slice(-600).replace(/\s+/g, ' ')}`);
  const label =
    shape === 'one'
      ? `Switchyard, one process (run --concurrency ${CONCURRENCY}):`
      : `Switchyard, two processes sharing the limit (run --concurrency ${CONCURRENCY / 2} + worker --concurrency ${CONCURRENCY / 2}):`;
  return reportLimitRun({ label, calls, rows: ROWS, succeededRows: run.report?.totals.succeeded ?? null, wallMs: run.wallMs, unit: 'requests', limitPerMinute: RPM, counted: () => 1, targets: TARGETS, notes, spawnedAt, lines: run.lines });
}

await withLimitsEnv('limits-rpm', async (env) => {
  const csv = await writePromptsCsv(env.dir, ROWS);
  const one = await switchyardRun(env, csv, 'one');
  const two = await switchyardRun(env, csv, 'two');

  const sim = await env.freshSim({ latencyMs: LATENCY_MS, args: simArgs });
  const outFile = path.join(env.dir, 'baseline.jsonl');
  const plain = await runBaseline({ csv, simUrl: sim.url, outFile, concurrency: CONCURRENCY, timeoutMs: 120_000 });
  const lost = await baselineLosses(outFile);
  console.log(`  plain SDK + p-limit, concurrency ${CONCURRENCY}, maxRetries 0 (bench/baseline-plain-sdk.ts):`);
  console.log(
    `    wall ${(plain.wallMs / 1000).toFixed(1)} s, exit ${plain.exitCode ?? plain.signal}; ${lost.answered} of ${ROWS} rows answered, ` +
      `${lost.lost429} lost to 429 (${((lost.lost429 / ROWS) * 100).toFixed(1)}%), ${lost.lostOther} lost otherwise${lost.otherSample ? ` (e.g. ${lost.otherSample.slice(0, 120)})` : ''}`,
  );

  console.log('  summary:');
  for (const [name, f] of [['one process', one], ['two processes', two]] as const) {
    console.log(
      `    ${name.padEnd(14)} ${(f.share * 100).toFixed(1)}% of the limit, ${(f.rejectedShare * 100).toFixed(2)}% of calls answered 429, ${f.succeededRows ?? '?'}/${ROWS} rows succeeded  ${f.pass ? 'PASS' : 'FAIL'}`,
    );
  }
  console.log(`    plain SDK      ${lost.answered}/${ROWS} rows answered, ${lost.lost429} lost to 429 (no target; for comparison)`);
});
