/**
 * The floor under the latency benchmark: the same number of chat requests to the same simulator
 * at the same concurrency, sent with Node's bare `http` client (keep-alive, no SDK, no CSV, no
 * output; the prompts of bench/lib/prompts-csv.ts). What is left between this and the 4 s bound is the machine's: Node's start-up, the
 * simulator's timers and its own CPU on the shared cores. Plain JavaScript, so that Node does not
 * load its type stripper into a process that is meant to do nothing else.
 *
 * Usage: node bench/floor-bare-http.mjs <base_url> <requests> [concurrency=50] [model=fast]
 * Prints the call latencies (p50, mean); exits 0 when every request got a 200.
 */
import http from 'node:http';

const [baseUrl, requestsArg, concurrencyArg = '50', model = 'fast'] = process.argv.slice(2);
if (!baseUrl || !requestsArg) {
  console.error('usage: node bench/floor-bare-http.mjs <base_url> <requests> [concurrency] [model]');
  process.exit(2);
}

const url = new URL(`${baseUrl.replace(/\/$/, '')}/chat/completions`);
const agent = new http.Agent({ keepAlive: true });
const requests = Number(requestsArg);
const latencies = [];
let failed = 0;
let sent = 0;

function call(row) {
  const body = JSON.stringify({ model, messages: [{ role: 'user', content: `Question ${row + 1}: explain item ${(row + 1) % 997}, briefly` }], temperature: 0.7, max_tokens: 1024 });
  const started = performance.now();
  return new Promise((resolve) => {
    const request = http.request(url, { method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (response) => {
      if (response.statusCode !== 200) failed++;
      response.resume();
      response.on('end', () => {
        latencies.push(performance.now() - started);
        resolve();
      });
    });
    request.on('error', () => {
      failed++;
      resolve();
    });
    request.end(body);
  });
}

async function slot() {
  while (sent < requests) await call(sent++);
}

await Promise.all(Array.from({ length: Number(concurrencyArg) }, slot));
agent.destroy();
latencies.sort((a, b) => a - b);
const mean = latencies.reduce((sum, ms) => sum + ms, 0) / latencies.length;
console.log(`${requests} requests, ${failed} failed; latency p50 ${latencies[latencies.length >> 1]?.toFixed(1)} ms, mean ${mean.toFixed(1)} ms`);
process.exitCode = failed === 0 ? 0 : 1;
