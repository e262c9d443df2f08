/**
 * How long a `GET /metrics` scrape takes with batches open: `switchyard serve --no-worker` (the
 * built bundle, its own process) holds OPEN batches of ROWS rows each, all rows queued, beside
 * FINISHED small batches run before by a server with workers; then SCRAPES scrapes one after
 * another, timed at the client (the server's own Redis read time, switchyard_metrics_redis_read_seconds,
 * beside it). Target: median scrape <= 50 ms, and the page's size independent of the rows.
 * Usage: node bench/metrics-scrape.ts [open=20] [rows=2000] [finished=30] [scrapes=50]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { machineLine, withBenchEnv } from './lib/bench-env.ts';
import { CLI, CLI_ENV, CLI_NODE_FLAGS, ROOT } from './lib/paths.ts';
import { writePromptsCsv } from './lib/prompts-csv.ts';
import { median, passFail } from './lib/stats.ts';
import { writeBenchConfig } from './lib/switchyard-run.ts';

const OPEN = Number(process.argv[2] ?? 20);
const ROWS = Number(process.argv[3] ?? 2000);
const FINISHED = Number(process.argv[4] ?? 30);
const SCRAPES = Number(process.argv[5] ?? 50);
const TARGET_MS = 50;

console.log(`metrics-scrape: ${OPEN} open batches of ${ROWS} rows, ${FINISHED} finished ones, ${SCRAPES} scrapes; target median <= ${TARGET_MS} ms; ${machineLine()}`);

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

await withBenchEnv('metrics', 0, async (env) => {
  const config = await writeBenchConfig(env.dir, env.sim.url, 64);
  const cliEnv = { ...process.env, ...CLI_ENV, REDIS_URL: env.redis.url, SWITCHYARD_PREFIX: env.prefix, LOG_LEVEL: 'error' };
  const servers: ChildProcess[] = [];
  async function startServer(extra: string[]): Promise<{ url: string; process: ChildProcess }> {
    const server = spawn(process.execPath, [...CLI_NODE_FLAGS, CLI, 'serve', '--port', '0', '--config', config, '--out', path.join(env.dir, `out-${servers.length}`), ...extra], { cwd: ROOT, env: cliEnv, stdio: ['ignore', 'pipe', 'inherit'] });
    servers.push(server);
    let output = '';
    const url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`serve did not start:\n${output}`)), 20_000);
      server.stdout!.on('data', (chunk: Buffer) => {
        output += chunk.toString();
        const found = /listening on (http:\/\/\S+) /.exec(output)?.[1];
        if (found) {
          clearTimeout(timer);
          resolve(found);
        }
      });
    });
    return { url, process: server };
  }
  async function post(url: string, batchId: string, body: Buffer): Promise<void> {
    const posted = await fetch(`${url}/v1/batches?batch_id=${batchId}`, { method: 'POST', body, headers: { 'content-type': 'text/csv' } });
    if (posted.status !== 202) throw new Error(`POST answered ${posted.status}: ${await posted.text()}`);
    await posted.arrayBuffer();
  }
  async function waitUntil(url: string, batchId: string, done: (view: { finished: boolean; rows: { total: number | null } }) => boolean): Promise<void> {
    for (;;) {
      if (done((await (await fetch(`${url}/v1/batches/${batchId}`)).json()) as { finished: boolean; rows: { total: number | null } })) return;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
  try {
    const small = await readFile(await writePromptsCsv(path.join(env.dir), 5));
    const working = await startServer([]);
    for (let i = 0; i < FINISHED; i++) await post(working.url, `done-${i}`, small);
    for (let i = 0; i < FINISHED; i++) await waitUntil(working.url, `done-${i}`, (view) => view.finished);
    working.process.kill('SIGTERM');
    await new Promise((resolve) => working.process.once('exit', resolve));

    const large = await readFile(await writePromptsCsv(path.join(env.dir), ROWS));
    const idle = await startServer(['--no-worker']);
    for (let i = 0; i < OPEN; i++) await post(idle.url, `open-${i}`, large);
    for (let i = 0; i < OPEN; i++) await waitUntil(idle.url, `open-${i}`, (view) => view.rows.total === ROWS);

    const clientMs: number[] = [];
    const redisMs: number[] = [];
    let page = '';
    for (let i = 0; i < SCRAPES; i++) {
      const start = performance.now();
      page = await (await fetch(`${idle.url}/metrics`)).text();
      clientMs.push(performance.now() - start);
      redisMs.push(Number(/^switchyard_metrics_redis_read_seconds (\S+)$/m.exec(page)?.[1]) * 1000);
    }
    const queued = [...page.matchAll(/^switchyard_batch_rows_queued\{[^}]*\} (\d+)$/gm)].reduce((sum, match) => sum + Number(match[1]), 0);
    if (queued !== OPEN * ROWS) throw new Error(`the page shows ${queued} rows queued, not ${OPEN * ROWS}`);
    const ms = (value: number) => `${value.toFixed(1)} ms`;
    console.log(`  scrape (client): median ${ms(median(clientMs))}, p95 ${ms(percentile(clientMs, 95))}, max ${ms(Math.max(...clientMs))}`);
    console.log(`  of which Redis reads (server): median ${ms(median(redisMs))}, p95 ${ms(percentile(redisMs, 95))}`);
    console.log(`  page: ${Buffer.byteLength(page)} bytes, ${page.split('\n').filter((line) => line !== '' && !line.startsWith('#')).length} samples; ${queued} rows queued in ${OPEN} batches`);
    console.log(`  median <= ${TARGET_MS} ms  ${passFail(median(clientMs) <= TARGET_MS)}`);
  } finally {
    for (const server of servers) if (server.exitCode === null) server.kill('SIGKILL');
  }
});
