/**
 * How many chat completions per second the simulator serves at 0 ms latency, through the real
 * openai SDK with 50 calls in flight. Client and simulator share this one process (the worst case:
 * one core for both). Usage: node bench/sim-throughput.ts [total=20000] [concurrency=50] [stream]
 */
import OpenAI from 'openai';
import { startSimulator } from '../src/sim/server.ts';

const BOUND_RPS = 1000; // the simulator must not be what limits a benchmark of the system under test

const total = Number(process.argv[2] ?? 20_000);
const concurrency = Number(process.argv[3] ?? 50);
const stream = process.argv[4] === 'stream';

const sim = await startSimulator({});
const client = new OpenAI({ baseURL: sim.url, apiKey: 'x', maxRetries: 0 });

async function call(i: number): Promise<void> {
  const messages = [{ role: 'user' as const, content: `Question ${i % 500}: what is the capital of France?` }];
  if (!stream) {
    await client.chat.completions.create({ model: 'deepseek-v4-flash', messages });
    return;
  }
  const chunks = await client.chat.completions.create({ model: 'deepseek-v4-flash', messages, stream: true });
  for await (const _chunk of chunks);
}

let next = 0;
async function lane(): Promise<void> {
  while (next < total) await call(next++);
}

await Promise.all(Array.from({ length: Math.min(concurrency, 200) }, lane)); // warm-up: connections, JIT
sim.reset();
next = 0;
const started = performance.now();
const cpuStart = process.cpuUsage();
await Promise.all(Array.from({ length: concurrency }, lane));
const seconds = (performance.now() - started) / 1000;
const cpu = process.cpuUsage(cpuStart);
const served = sim.stats().models['deepseek-v4-flash']?.by_status['200'] ?? 0;
await sim.close();

const rps = served / seconds;
console.log(`sim throughput (${stream ? 'streaming' : 'JSON'}, ${concurrency} in flight, client in the same process)`);
console.log(`  ${served} answers in ${seconds.toFixed(2)} s = ${rps.toFixed(0)} req/s; CPU ${((cpu.user + cpu.system) / 1e3 / (seconds * 1e3) * 100).toFixed(0)}% of one core`);
console.log(`  ratio to bound ${BOUND_RPS} req/s: ${(rps / BOUND_RPS).toFixed(2)} (>= 1 is good)`);
