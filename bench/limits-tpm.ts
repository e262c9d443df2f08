/**
 * A tokens-per-minute limit shared by every worker (issue 3): the same setting as limits-rpm.ts
 * (model "fast", 50 ms latency, concurrency 200, a fresh simulator per run), with a tpm limit as
 * the binding one and no rpm. The config's `max_tokens` is 128 (the simulator's answers are 20-120
 * tokens, so none is cut short) and the prompts are about 16-18 tokens.
 *
 * How tokens are counted matters, and the simulator can do both (`--tpm-counts`):
 *   requested  prompt + max_tokens at admission, whatever the answer uses (OpenAI-like);
 *   usage      prompt + the answer's actual tokens (providers that meter usage).
 * The config's `tpm_counts` says the same as the simulator's. With `requested`, Switchyard books
 * prompt + max_tokens (its chars/4 prompt estimate is the simulator's own count for ASCII prompts
 * when no model has a context_window) and gives none of it back; with `usage`, prompt + the answers'
 * running length, settled to the call's actual usage afterwards. Each mode gets its own run, with the
 * limit chosen so that it binds at about TARGET_RPM requests per minute *as that mode counts*:
 * tpm = TARGET_RPM x the mean tokens per request of these rows, worked out here with the
 * simulator's own token functions (and checked against the calls' logged usage afterwards).
 *
 * Measured from costs.jsonl: tokens per minute as the provider counts them (accepted calls only)
 * over the span from the first to the last accepted start, as a share of tpm (target >= 97%);
 * share of calls answered 429 (target <= 1%); rows succeeded (target: all). One repetition each.
 * Usage: node bench/limits-tpm.ts [rows=5000] [target_rpm=2500] [runs=requested,usage,requested-two,requested-c4,usage-c4]
 *   runs: comma-separated; each is a counting mode (requested | usage) with optional flags:
 *   -two    two processes (run --concurrency 100 + worker --concurrency 100);
 *   -c<N>   concurrency N instead of 200 (e.g. -c4: so few rows in flight that each books its slot
 *           just before its call, after the previous calls settled);
 *   -steady queue.max_pending 500 (enqueue_chunk 100): rows book their slots a chunk at a time,
 *           ~15 s ahead, as every row past the first 5,000 of a larger batch does (by default every
 *           row of a 5,000-row batch books its slot in the first seconds).
 * The five default runs take 2-3.5 min each: about 12 min in all.
 */
import { createReadStream } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { parse } from 'csv-parse';
import { machineLine } from './lib/bench-env.ts';
import { readCalls, type LoggedCall } from './lib/call-log.ts';
import { reportLimitRun, type LimitRunFigures } from './lib/limit-figures.ts';
import { startWorkerProcess, withLimitsEnv, type LimitsEnv, type WorkerProcess } from './lib/limits-env.ts';
import { callErrors, cpuMs, productLine, runTimeLimitMs, writeYaml } from './lib/limits-run.ts';
import { PRODUCT_ROOT } from './lib/paths.ts';
import { writePromptsCsv } from './lib/prompts-csv.ts';
import { runSwitchyard, type SwitchyardRunResult } from './lib/switchyard-run.ts';

type Mode = 'requested' | 'usage';
interface Scenario {
  name: string;
  mode: Mode;
  processes: 1 | 2;
  /** `queue.max_pending` 500 (and enqueue_chunk 100): rows are reserved only ~15 s ahead, after earlier calls settled. */
  steady: boolean;
  /** Rows in flight (`-c<N>`; default CONCURRENCY). */
  concurrency: number;
}

const LATENCY_MS = 50;
const CONCURRENCY = 200;
const ROWS = Number(process.argv[2] ?? 5000);
const TARGET_RPM = Number(process.argv[3] ?? 2500);
const SCENARIOS: Scenario[] = (process.argv[4] ?? 'requested,usage,requested-two,requested-c4,usage-c4').split(',').map((text) => {
  const name = text.trim();
  const [mode, ...flags] = name.split('-');
  if ((mode !== 'requested' && mode !== 'usage') || flags.some((flag) => flag !== 'two' && flag !== 'steady' && !/^c\d+$/.test(flag))) throw new Error(`unknown run "${name}"`);
  const concurrency = Number(flags.find((flag) => /^c\d+$/.test(flag))?.slice(1) ?? CONCURRENCY);
  return { name, mode, processes: flags.includes('two') ? 2 : 1, steady: flags.includes('steady'), concurrency };
});
const STEADY_PENDING = 500;
const MAX_TOKENS = 128;
const HEADROOM = 0.98;
const TARGETS = { minShare: 0.97, max429Share: 0.01 };
const MODEL = 'fast';

// The simulator's own token arithmetic, from the product under test.
const simModule = (file: string) => pathToFileURL(path.join(PRODUCT_ROOT, 'src', 'sim', file)).href;
const { composeAnswer } = (await import(simModule('answer.ts'))) as typeof import('../src/sim/answer.ts');
const { promptTokens } = (await import(simModule('tokens.ts'))) as typeof import('../src/sim/tokens.ts');
const { simOptionsSchema } = (await import(simModule('options.ts'))) as typeof import('../src/sim/options.ts');
const OUTPUT_TOKENS = simOptionsSchema.parse({}).output_tokens;

interface RowTokens {
  prompt: number;
  completion: number;
}

async function rowTokens(csv: string): Promise<RowTokens[]> {
  const rows: RowTokens[] = [];
  const parser = createReadStream(csv).pipe(parse({ columns: true, skip_empty_lines: true }));
  for await (const row of parser as AsyncIterable<{ prompt: string }>) {
    const messages = [{ role: 'user', text: row.prompt }];
    const answer = composeAnswer({ model: MODEL, messages, maxTokens: MAX_TOKENS, outputTokens: OUTPUT_TOKENS });
    rows.push({ prompt: promptTokens([row.prompt]), completion: answer.completionTokens });
  }
  return rows;
}

/** Tokens of one accepted call as a simulator in `mode` counts it at admission. */
const countedAs = (mode: Mode) => (call: LoggedCall) => call.inputTokens + (mode === 'requested' ? MAX_TOKENS : call.outputTokens);

async function switchyardRun(env: LimitsEnv, csv: string, scenario: Scenario, tpm: number): Promise<LimitRunFigures> {
  const { mode, processes, name } = scenario;
  await env.clearKeys();
  const sim = await env.freshSim({ latencyMs: LATENCY_MS, args: ['--model-limits', JSON.stringify({ [MODEL]: { tpm } }), '--tpm-counts', mode] });
  const config = await writeYaml(env.dir, `switchyard-${name}.yaml`, [
    'providers:',
    `  sim: { base_url: ${sim.url}, timeout_ms: 30000 }`,
    'models:',
    // The config says how the provider counts, as a user is told to (docs/config.md, tpm_counts).
    `  ${MODEL}: { provider: sim, tpm: ${tpm}, tpm_counts: ${scenario.mode}, price: { input_per_mtok: 0.14, output_per_mtok: 0.28 } }`,
    `default_model: ${MODEL}`,
    `concurrency: ${scenario.concurrency}`,
    `max_tokens: ${MAX_TOKENS}`,
    ...(scenario.steady ? ['queue:', `  max_pending: ${STEADY_PENDING}`, '  enqueue_chunk: 100'] : []),
  ]);
  const worker =
    processes === 2
      ? await startWorkerProcess({ redisUrl: env.redis.url, prefix: env.prefix, concurrency: scenario.concurrency / 2, usageFile: path.join(env.dir, `worker-${name}.usage.json`) })
      : null;
  const outDir = path.join(env.dir, `out-${name}`);
  const idealMs = (ROWS / TARGET_RPM / HEADROOM) * 60_000;
  let run: SwitchyardRunResult;
  let stopped: Awaited<ReturnType<WorkerProcess['stop']>> | undefined;
  const spawnedAt = Date.now();
  try {
    run = await runSwitchyard({ csv, config, outDir, batchId: `tpm-${name}`, concurrency: processes === 2 ? scenario.concurrency / 2 : scenario.concurrency, redisUrl: env.redis.url, prefix: env.prefix, timeoutMs: runTimeLimitMs(idealMs) });
  } finally {
    stopped = await worker?.stop();
  }
  const calls = await readCalls(path.join(outDir, 'costs.jsonl'));
  const accepted = calls.filter((c) => c.httpStatus !== 429);
  const mean = (f: (c: LoggedCall) => number) => accepted.reduce((sum, c) => sum + f(c), 0) / Math.max(1, accepted.length);
  const notes = [
    `tokens per accepted call: prompt ${mean((c) => c.inputTokens).toFixed(1)}, answer ${mean((c) => c.outputTokens).toFixed(1)}; ` +
      `counted by this simulator ${mean(countedAs(mode)).toFixed(1)}, ` +
      (mode === 'requested'
        ? `booked by Switchyard before the call ${(mean((c) => c.inputTokens) + MAX_TOKENS).toFixed(1)} (prompt + max_tokens), kept`
        : `booked by Switchyard before the call at prompt + the answers' running length (prompt + max_tokens, ${(mean((c) => c.inputTokens) + MAX_TOKENS).toFixed(1)}, before the first answer), settled to ${mean((c) => c.inputTokens + c.outputTokens).toFixed(1)}`),
    `run process: exit ${run.exitCode ?? run.signal}${run.timedOut ? ' (TIMED OUT: figures are from the calls it logged)' : ''}, wall ${(run.wallMs / 1000).toFixed(1)} s against ${(idealMs / 1000).toFixed(1)} s at ${HEADROOM * 100}% of the limit, ` +
      `CPU ${(cpuMs(run.usage) / 1000).toFixed(1)} s; report call_errors ${JSON.stringify(await callErrors(outDir))}`,
  ];
  if (stopped) notes.push(`worker process: exit ${stopped.exitCode ?? stopped.signal}, CPU ${(cpuMs(stopped.usage) / 1000).toFixed(1)} s`);
  if (run.exitCode !== 0) notes.push(`run stderr (tail): ${run.stderr.slice(-600).replace(/\s+/g, ' ')}`);
  const half = scenario.concurrency / 2;
  const shape = processes === 2 ? `two processes (run --concurrency ${half} + worker --concurrency ${half})` : `one process (run --concurrency ${scenario.concurrency})`;
  const pending = scenario.steady ? `queue.max_pending ${STEADY_PENDING}: rows booked ~15 s ahead` : 'queue.max_pending default (5000): every row booked at the start';
  const label = `[${name}] Switchyard vs a simulator counting "${mode}" (tpm ${tpm.toLocaleString('en-US')}), ${shape}, ${pending}:`;
  return reportLimitRun({ label, calls, rows: ROWS, succeededRows: run.report?.totals.succeeded ?? null, wallMs: run.wallMs, unit: 'tokens', limitPerMinute: tpm, counted: countedAs(mode), targets: TARGETS, notes, spawnedAt, lines: run.lines });
}

console.log(`limits-tpm: ${ROWS} rows, tpm limit on "${MODEL}" binding at about ${TARGET_RPM} requests/min, no rpm, latency ${LATENCY_MS} ms, concurrency ${CONCURRENCY}, max_tokens ${MAX_TOKENS}, headroom ${HEADROOM}; ${machineLine()}; ${productLine()}`);

await withLimitsEnv('limits-tpm', async (env) => {
  const csv = await writePromptsCsv(env.dir, ROWS);
  const tokens = await rowTokens(csv);
  const meanOf = (f: (r: RowTokens) => number) => tokens.reduce((sum, r) => sum + f(r), 0) / tokens.length;
  const perRequest: Record<Mode, number> = { requested: meanOf((r) => r.prompt + MAX_TOKENS), usage: meanOf((r) => r.prompt + r.completion) };
  const tpmFor = (mode: Mode) => Math.round(TARGET_RPM * perRequest[mode]);
  console.log(
    `  these rows, as the simulator counts them: prompt ${meanOf((r) => r.prompt).toFixed(1)}, answer ${meanOf((r) => r.completion).toFixed(1)} tokens on average; ` +
      `per request "requested" ${perRequest.requested.toFixed(1)} -> tpm ${tpmFor('requested').toLocaleString('en-US')}, "usage" ${perRequest.usage.toFixed(1)} -> tpm ${tpmFor('usage').toLocaleString('en-US')}`,
  );
  const results: Array<{ scenario: Scenario; figures: LimitRunFigures }> = [];
  for (const scenario of SCENARIOS) results.push({ scenario, figures: await switchyardRun(env, csv, scenario, tpmFor(scenario.mode)) });
  console.log('  summary:');
  for (const { scenario, figures: f } of results) {
    console.log(
      `    ${scenario.name.padEnd(17)} ${(f.share * 100).toFixed(1)}% of tpm, ${(f.rejectedShare * 100).toFixed(2)}% of calls answered 429, ` +
        `busiest 60 s ${(f.busiestShare * 100).toFixed(1)}% of tpm, ${f.succeededRows ?? '?'}/${ROWS} rows succeeded  ${f.pass ? 'PASS' : 'FAIL'}`,
    );
  }
});
