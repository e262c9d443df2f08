/**
 * What routing, the shared rate limiter and the circuit breaker cost per call (issue 3), where
 * nothing else hides it: 5,000 rows at 0 ms simulated latency, one `switchyard run` process,
 * concurrency 64, the simulator in its own process with no limits.
 *   (a) plain: one model, no routing section, no rpm/tpm.
 *   (b) routed and limited: three models on the same simulator, `routing.routes` for the five
 *       built-in task types (simple, moderate, complex, coding, creative) across them, and
 *       rpm 10,000,000 + tpm 2,000,000,000 on every model (they never bind, but every call books
 *       a slot and settles its tokens: two Lua round trips), breaker defaults.
 * Both read the same CSV, whose prompts fall into the five task types in turn (checked in the
 * report). The rules classifier and the breaker check run in both: the product has no switch for
 * them, so (b) - (a) is the cost of routes over several models plus the limiter's reserve and settle.
 * Rows/s = rows / wall time of the whole command; CPU ms/row of the run process (usage probe).
 * A 200-row warm-up of each first, then 3 repetitions alternating a, b; medians.
 * Target: rows/s of (b) / (a) >= 0.8. Prints PASS/FAIL, exits 0.
 * Usage: node bench/limits-overhead.ts [repetitions=3] [rows=5000]
 */
import { createWriteStream } from 'node:fs';
import { once } from 'node:events';
import path from 'node:path';
import { machineLine, withBenchEnv } from './lib/bench-env.ts';
import { cpuMs, productLine, writeYaml } from './lib/limits-run.ts';
import { deletePrefix } from './lib/redis.ts';
import { median, passFail } from './lib/stats.ts';
import { checkRun, runSwitchyard, type SwitchyardRunResult } from './lib/switchyard-run.ts';

const repetitions = Number(process.argv[2] ?? 3);
const ROWS = Number(process.argv[3] ?? 5000);
const CONCURRENCY = 64;
const TARGET_RATIO = 0.8;
const TIMEOUT_MS = 300_000;

/** One prompt per task type of the built-in rules, in turn (see src/routing/default-task-types.ts). */
const TEMPLATES: Array<(n: number) => string> = [
  (n) => `Question ${n}: explain item ${n % 997}, briefly`, // simple (no keyword)
  (n) => `Evaluate option ${n % 991} briefly`, // moderate (one complex word)
  (n) => `Analyze and compare the strategy for market ${n % 983}`, // complex (two or more)
  (n) => `Debug the python function number ${n % 977}`, // coding
  (n) => `Write a short poem about river ${n % 971}`, // creative
];

async function writeMixedCsv(dir: string, rows: number): Promise<string> {
  const file = path.join(dir, `mixed-${rows}.csv`);
  const out = createWriteStream(file);
  let chunk = 'id,prompt\n';
  for (let row = 1; row <= rows; row++) {
    chunk += `r${row},"${(TEMPLATES[row % TEMPLATES.length] as (n: number) => string)(row)}"\n`;
    if (chunk.length > 64 * 1024 || row === rows) {
      if (!out.write(chunk)) await once(out, 'drain');
      chunk = '';
    }
  }
  out.end();
  await once(out, 'finish');
  return file;
}

const price = 'price: { input_per_mtok: 0.14, output_per_mtok: 0.28 }';
const NEVER_BINDS = 'rpm: 10000000, tpm: 2000000000';

console.log(`limits-overhead: ${ROWS} rows, 0 ms latency, concurrency ${CONCURRENCY}, one process; (a) no routing, no limits vs (b) routes over 3 models + rpm/tpm that never bind + breaker; target (b)/(a) rows/s >= ${TARGET_RATIO}; ${machineLine()}; ${productLine()}`);

await withBenchEnv('limits-overhead', 0, async (env) => {
  const csv = await writeMixedCsv(env.dir, ROWS);
  const warmCsv = await writeMixedCsv(env.dir, 200);
  const provider = `  sim: { base_url: ${env.sim.url}, timeout_ms: 30000 }`;
  const configs = {
    a: await writeYaml(env.dir, 'plain.yaml', ['providers:', provider, 'models:', `  fast: { provider: sim, ${price} }`, 'default_model: fast', `concurrency: ${CONCURRENCY}`]),
    b: await writeYaml(env.dir, 'routed.yaml', [
      'providers:',
      provider,
      'models:',
      `  fast: { provider: sim, ${NEVER_BINDS}, ${price} }`,
      `  mid: { provider: sim, ${NEVER_BINDS}, ${price} }`,
      `  big: { provider: sim, ${NEVER_BINDS}, ${price} }`,
      'default_model: fast',
      `concurrency: ${CONCURRENCY}`,
      'routing:',
      '  routes:',
      '    simple: [fast, mid]',
      '    moderate: [mid, big]',
      '    complex: [big, mid]',
      '    coding: [mid, big]',
      '    creative: [fast, big]',
    ]),
  };
  const run = async (which: 'a' | 'b', file: string, rows: number, label: string): Promise<SwitchyardRunResult> => {
    const result = await runSwitchyard({ csv: file, config: configs[which], outDir: path.join(env.dir, `out-${label}`), batchId: label, concurrency: CONCURRENCY, redisUrl: env.redis.url, prefix: env.prefix, timeoutMs: TIMEOUT_MS });
    checkRun(label, result, rows);
    await deletePrefix(env.redis.url, env.prefix);
    return result;
  };

  await run('a', warmCsv, 200, 'warm-a');
  await run('b', warmCsv, 200, 'warm-b');

  const figures = { a: { rps: [] as number[], inner: [] as number[], cpu: [] as number[] }, b: { rps: [] as number[], inner: [] as number[], cpu: [] as number[] } };
  let routing = '';
  for (let rep = 1; rep <= repetitions; rep++) {
    const parts: string[] = [];
    for (const which of ['a', 'b'] as const) {
      const result = await run(which, csv, ROWS, `overhead-${which}-${rep}`);
      const rps = ROWS / (result.wallMs / 1000);
      figures[which].rps.push(rps);
      figures[which].inner.push(result.report?.totals.rows_per_second ?? Number.NaN);
      figures[which].cpu.push(cpuMs(result.usage) / ROWS);
      parts.push(`(${which}) ${(result.wallMs / 1000).toFixed(2)} s = ${rps.toFixed(0)} rows/s (report ${result.report?.totals.rows_per_second ?? '?'}), ${(cpuMs(result.usage) / ROWS).toFixed(2)} CPU ms/row`);
      if (which === 'b' && rep === 1) {
        const report = result.report as unknown as { task_types?: Record<string, { rows: number }>; models?: Record<string, { calls: number }> } | null;
        const types = Object.entries(report?.task_types ?? {}).map(([type, t]) => `${type} ${t.rows}`).join(', ');
        const models = Object.entries(report?.models ?? {}).map(([model, m]) => `${model} ${m.calls}`).join(', ');
        routing = `(b) routed rows by task type: ${types}; calls by model: ${models}`;
      }
    }
    console.log(`  rep ${rep}: ${parts.join('; ')}`);
  }
  if (routing) console.log(`  ${routing}`);
  const m = { a: median(figures.a.rps), b: median(figures.b.rps) };
  const ratio = m.b / m.a;
  const cpu = { a: median(figures.a.cpu), b: median(figures.b.cpu) };
  console.log(`  median (a) plain:            ${m.a.toFixed(0)} rows/s end to end (report ${median(figures.a.inner).toFixed(0)}), ${cpu.a.toFixed(2)} CPU ms/row`);
  console.log(`  median (b) routed + limits:  ${m.b.toFixed(0)} rows/s end to end (report ${median(figures.b.inner).toFixed(0)}), ${cpu.b.toFixed(2)} CPU ms/row`);
  console.log(`  extra CPU per row in (b): ${(cpu.b - cpu.a).toFixed(2)} ms (${((cpu.b / cpu.a - 1) * 100).toFixed(0)}%)`);
  console.log(`  (b) / (a) rows/s = ${ratio.toFixed(2)}  target >= ${TARGET_RATIO}  ${passFail(ratio >= TARGET_RATIO)}`);
});
