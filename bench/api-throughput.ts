/**
 * The HTTP API's overhead: the same 5,000-row CSV at 0 ms simulated latency, concurrency 64, run
 * (a) by `switchyard run` and (b) posted to a running `switchyard serve` (the built bundle, its own
 * process), taking turns. For (a) the time is the report's elapsed_ms (batch start to outputs
 * written, so Node's start-up is left out, as a running server has none); for (b) it is from the
 * POST to the first GET that shows the batch finished (polled every 20 ms), split into the POST
 * (upload and enqueue) and the rest. Also the server's CPU per row, from /proc. Median of 3.
 * Target: API time / run time <= 1.10 (the API must not be why a batch is slow). Exits 0.
 * With BENCH_SCRAPE_MS=N, GET /metrics is scraped every N ms while each posted batch runs (as
 * Prometheus would, only faster), so the scrape's cost to the rows shows in the API's time.
 * Usage: node bench/api-throughput.ts [repetitions=3] [rows=5000]
 */
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { machineLine, withBenchEnv } from './lib/bench-env.ts';
import { CLI, CLI_ENV, CLI_NODE_FLAGS, ROOT } from './lib/paths.ts';
import { writePromptsCsv } from './lib/prompts-csv.ts';
import { median, passFail, seconds } from './lib/stats.ts';
import { checkRun, runSwitchyard, writeBenchConfig } from './lib/switchyard-run.ts';

const repetitions = Number(process.argv[2] ?? 3);
const ROWS = Number(process.argv[3] ?? 5000);
const CONCURRENCY = 64;
const TARGET_RATIO = 1.1;
const TIMEOUT_MS = 300_000;
const SCRAPE_EVERY_MS = Number(process.env.BENCH_SCRAPE_MS ?? 0);

console.log(`api-throughput: ${ROWS} rows, 0 ms latency, concurrency ${CONCURRENCY}, run vs serve${SCRAPE_EVERY_MS > 0 ? `, /metrics scraped every ${SCRAPE_EVERY_MS} ms` : ''}; target API / run <= ${TARGET_RATIO}; ${machineLine()}`);

/** User + system CPU ms of a process so far, from /proc (Linux). */
async function processCpuMs(pid: number): Promise<number> {
  const fields = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1]!.split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100; // utime, stime in clock ticks (100/s)
}

await withBenchEnv('api', 0, async (env) => {
  const csv = await writePromptsCsv(env.dir, ROWS);
  const body = await readFile(csv);
  const config = await writeBenchConfig(env.dir, env.sim.url, CONCURRENCY);
  const common = { config, concurrency: CONCURRENCY, redisUrl: env.redis.url, prefix: env.prefix, timeoutMs: TIMEOUT_MS };
  const cliEnv = { ...process.env, ...CLI_ENV, REDIS_URL: env.redis.url, SWITCHYARD_PREFIX: env.prefix, LOG_LEVEL: 'error' };

  const server = spawn(process.execPath, [...CLI_NODE_FLAGS, CLI, 'serve', '--port', '0', '--config', config, '--out', path.join(env.dir, 'api-out'), '--concurrency', String(CONCURRENCY)], { cwd: ROOT, env: cliEnv, stdio: ['ignore', 'pipe', 'inherit'] });
  let output = '';
  server.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  try {
    const url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`serve did not start:\n${output}`)), 20_000);
      server.stdout.on('data', () => {
        const found = /listening on (http:\/\/\S+) /.exec(output)?.[1];
        if (found) {
          clearTimeout(timer);
          resolve(found);
        }
      });
    });

    async function submitAndWait(batchId: string, data: Buffer): Promise<{ postMs: number; totalMs: number; cpuMs: number }> {
      const cpuBefore = await processCpuMs(server.pid!);
      let scrapes = 0;
      const scraper = SCRAPE_EVERY_MS > 0 ? setInterval(() => void fetch(`${url}/metrics`).then((page) => page.arrayBuffer()).then(() => scrapes++), SCRAPE_EVERY_MS) : null;
      const start = performance.now();
      const posted = await fetch(`${url}/v1/batches?batch_id=${batchId}`, { method: 'POST', body: data, headers: { 'content-type': 'text/csv' } });
      if (posted.status !== 202) throw new Error(`POST answered ${posted.status}: ${await posted.text()}`);
      await posted.arrayBuffer();
      const postMs = performance.now() - start;
      for (;;) {
        const state = (await (await fetch(`${url}/v1/batches/${batchId}`)).json()) as { finished: boolean; rows: { succeeded: number } };
        if (state.finished) {
          if (state.rows.succeeded !== ROWS && data === body) throw new Error(`batch ${batchId}: ${state.rows.succeeded} of ${ROWS} succeeded`);
          break;
        }
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      const totalMs = performance.now() - start;
      if (scraper) {
        clearInterval(scraper);
        if (scrapes === 0) throw new Error('no scrape of /metrics was answered while the batch ran');
      }
      return { postMs, totalMs, cpuMs: (await processCpuMs(server.pid!)) - cpuBefore };
    }

    const warmCsv = await writePromptsCsv(path.join(env.dir), 200);
    checkRun('warm-up', await runSwitchyard({ ...common, csv: warmCsv, outDir: path.join(env.dir, 'warm'), batchId: 'warm' }), 200);
    await submitAndWait('api-warm', await readFile(warmCsv));

    const runMs: number[] = [];
    const apiMs: number[] = [];
    const apiPostMs: number[] = [];
    const apiCpuPerRow: number[] = [];
    for (let rep = 1; rep <= repetitions; rep++) {
      const run = await runSwitchyard({ ...common, csv, outDir: path.join(env.dir, `run-${rep}`), batchId: `run-${rep}` });
      checkRun(`run rep ${rep}`, run, ROWS);
      const api = await submitAndWait(`api-${rep}`, body);
      runMs.push(run.report!.totals.elapsed_ms);
      apiMs.push(api.totalMs);
      apiPostMs.push(api.postMs);
      apiCpuPerRow.push(api.cpuMs / ROWS);
      console.log(
        `  rep ${rep}: run ${seconds(run.report!.totals.elapsed_ms)} (report elapsed; wall ${seconds(run.wallMs)}); ` +
          `API ${seconds(api.totalMs)} (POST ${seconds(api.postMs)}), server CPU ${(api.cpuMs / ROWS).toFixed(2)} ms/row; ratio ${(api.totalMs / run.report!.totals.elapsed_ms).toFixed(2)}`,
      );
    }
    const ratio = median(apiMs) / median(runMs);
    console.log(`  median: run ${seconds(median(runMs))} = ${(ROWS / (median(runMs) / 1000)).toFixed(0)} rows/s; API ${seconds(median(apiMs))} = ${(ROWS / (median(apiMs) / 1000)).toFixed(0)} rows/s (POST ${seconds(median(apiPostMs))}), server ${median(apiCpuPerRow).toFixed(2)} CPU ms/row`);
    console.log(`  API / run = ${ratio.toFixed(2)}  target <= ${TARGET_RATIO}  ${passFail(ratio <= TARGET_RATIO)}`);
  } finally {
    server.kill('SIGTERM');
    await new Promise((resolve) => server.once('close', resolve));
  }
});
