import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { once } from 'node:events';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.ts';
import { callModel, chargedUsage, type ModelRequest } from '../../src/models/call-model.ts';
import { ModelCallError } from '../../src/models/model-error.ts';
import { createProviderClients } from '../../src/models/provider-clients.ts';
import { countMessageTokens } from '../../src/routing/token-count.ts';
import type { CallRecord, RowResult } from '../../src/output/records.ts';
import type { Report } from '../../src/output/report-json.ts';
import { startSimulator, type Simulator } from '../../src/sim/server.ts';
import { runCli, spawnCli, waitFor } from '../helpers/cli.ts';
import { readJsonLines, tempDir, writePromptsCsv } from '../helpers/files.ts';
import { useSimulatorAndRedis } from '../helpers/harness.ts';

const messages = [{ role: 'user' as const, content: 'Tell me about streams' }];

function providerAt(baseUrl: string, timeoutMs = 60_000) {
  const config = parseConfig({ providers: { p: { base_url: baseUrl, timeout_ms: timeoutMs } }, models: { m: { provider: 'p', stream: true } }, default_model: 'm' }, 'test');
  return createProviderClients(config).get('p')!;
}

const request: ModelRequest = { model: 'm', upstream: 'm', messages, temperature: 0, maxTokens: 200, stream: true };

describe('a streamed call (models.<name>.stream)', () => {
  let sim: Simulator;
  beforeAll(async () => {
    // 50 ms to the first token, then 200 tokens a second: an answer of 20-120 tokens takes 0.1-0.6 s more.
    sim = await startSimulator({ port: 0, latency_ms: 50, tokens_per_second: 200, models: { bare: { omit_usage: true } } });
  });
  afterAll(() => sim.close());

  it('gives the same answer and usage as a whole one, and its time to first token', async () => {
    const provider = providerAt(sim.url);
    const started = performance.now();
    const streamed = await callModel(provider, request);
    const streamMs = performance.now() - started;
    const whole = await callModel(provider, { ...request, stream: false });
    expect(streamed.output).toBe(whole.output);
    expect(streamed.usage).toEqual(whole.usage);
    expect(streamed).toMatchObject({ usageEstimated: false, finishReason: whole.finishReason, httpStatus: 200 });
    expect(whole.ttftMs).toBeNull();
    // The first word came after the latency, long before the last one.
    expect(streamed.ttftMs).toBeGreaterThanOrEqual(45);
    expect(streamed.ttftMs!).toBeLessThan(streamMs - 50);
  });

  it('waits for an answer under a timeout_ms of weeks (review: the SDK\'s backstop, at twice it, was past the longest timer Node.js sets, so it fired at once)', async () => {
    // 1.5e9 ms, 17 days: twice it does not fit a timer's 32 bits, which Node.js sets to 1 ms instead.
    const answer = await callModel(providerAt(sim.url, 1_500_000_000), request);
    expect(answer.output).not.toBe('');
    expect(answer.finishReason).toBe('stop');
  });

  it('counts the tokens itself when the stream carries no usage', async () => {
    const answer = await callModel(providerAt(sim.url), { ...request, model: 'm', upstream: 'bare' });
    expect(answer.usageEstimated).toBe(true);
    expect(answer.usage.output_tokens).toBeGreaterThan(0);
  });
});

describe('a streamed call that goes wrong', () => {
  const chunk = (delta: Record<string, string>, finish: string | null) => JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 0, model: 'm', choices: [{ index: 0, delta, finish_reason: finish }] });
  const usageChunk = JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 0, model: 'm', choices: [], usage: { prompt_tokens: 11, completion_tokens: 7, total_tokens: 18 } });
  const routes: Record<string, (res: ServerResponse) => void> = {
    // One word, then silence.
    '/stall/v1/chat/completions': (res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write('data: {"id":"c","object":"chat.completion.chunk","created":0,"model":"m","choices":[{"index":0,"delta":{"content":"Hello"},"finish_reason":null}]}\n\n');
    },
    '/cut/v1/chat/completions': (res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write('data: {"id":"c","object":"chat.completion.chunk","created":0,"model":"m","choices":[{"index":0,"delta":{"content":"Hello"},"finish_reason":null}]}\n\n');
      setTimeout(() => res.socket?.destroy(), 20);
    },
    '/error-event/v1/chat/completions': (res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.end('data: {"error":{"message":"The server had an error while processing your request","type":"server_error"}}\n\n');
    },
    // The whole answer and its usage, then the connection drops (or stays open, silent) before [DONE].
    '/finish-then-cut/v1/chat/completions': (res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(`data: ${chunk({ content: 'Hello' }, 'stop')}\n\ndata: ${usageChunk}\n\n`);
      setTimeout(() => res.socket?.destroy(), 20);
    },
    '/finish-then-stall/v1/chat/completions': (res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(`data: ${chunk({ content: 'Hello' }, 'stop')}\n\n`);
    },
    // Text and the usage the provider bills, but no finish_reason: cut off, and charged what it reported.
    '/no-finish/v1/chat/completions': (res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.end(`data: ${chunk({ content: 'Hello' }, null)}\n\ndata: ${usageChunk}\n\ndata: [DONE]\n\n`);
    },
    '/json/v1/chat/completions': (res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"id":"c","object":"chat.completion","created":0,"model":"m","choices":[]}');
    },
  };
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => routes[req.url ?? '']?.(res));
  });
  let base = '';
  beforeAll(async () => {
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => {
    server.closeAllConnections();
    server.close();
  });

  const failure = (path: string, timeoutMs?: number) => callModel(providerAt(`${base}${path}/v1`, timeoutMs), request).then(
    () => null,
    (error: unknown) => error as ModelCallError,
  );

  it('times out when the stream stalls past timeout_ms, and may be retried', async () => {
    const started = performance.now();
    const error = await failure('/stall', 300);
    expect(performance.now() - started).toBeLessThan(3000);
    expect(error).toBeInstanceOf(ModelCallError);
    expect(error).toMatchObject({ code: 'timeout', retryable: true });
    expect(error!.message).toContain('stopped sending its streamed answer: nothing for 300 ms after 1 chunk (providers.p.timeout_ms)');
    // The provider took the prompt and sent a word: the call is charged them, counted here.
    expect(error!.estimatedUsage?.usage).toEqual({ input_tokens: countMessageTokens(messages), output_tokens: 1 });
  });

  it('fails retryably when the connection breaks off mid-answer or the stream reports an error', async () => {
    expect(await failure('/cut')).toMatchObject({ code: 'connection_error', retryable: true, message: expect.stringContaining('broke off its streamed answer after 1 chunk'), estimatedUsage: { usage: { input_tokens: countMessageTokens(messages), output_tokens: 1 } } });
    expect(await failure('/error-event')).toMatchObject({ code: 'server_error', retryable: true, message: expect.stringContaining('sent an error in its streamed answer after 0 chunks'), estimatedUsage: null });
  });

  it('keeps an answer whose stream broke or stalled after its finish_reason (QA: thrown away and paid for again at $0)', async () => {
    const cut = await callModel(providerAt(`${base}/finish-then-cut/v1`), request);
    expect(cut).toMatchObject({ output: 'Hello', finishReason: 'stop', usage: { input_tokens: 11, output_tokens: 7 }, usageEstimated: false });
    const stalled = await callModel(providerAt(`${base}/finish-then-stall/v1`, 300), request);
    expect(stalled).toMatchObject({ output: 'Hello', finishReason: 'stop', usageEstimated: true });
  });

  it('charges a stream cut off without its finish_reason the usage it reported (QA: recorded at $0)', async () => {
    const error = await failure('/no-finish');
    expect(error).toMatchObject({ code: 'connection_error', retryable: true, estimatedUsage: { usage: { input_tokens: 11, output_tokens: 7 }, reported: true } });
    expect(chargedUsage(null, error)).toMatchObject({ usage: { input_tokens: 11, output_tokens: 7 }, estimated: false });
  });

  it('says to turn streaming off when the provider answers with a whole JSON body', async () => {
    expect(await failure('/json')).toMatchObject({ code: 'bad_response', message: expect.stringContaining('not an event stream: set models.m.stream to false if the provider cannot stream') });
  });
});

describe('a streamed call while this process is busy', () => {
  // The provider in a process of its own, so that it answers on time while this one is busy.
  const script = `
    const chunk = (delta, finish) => JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 0, model: 'm', choices: [{ index: 0, delta, finish_reason: finish }] });
    require('node:http').createServer((req, res) => {
      req.resume();
      req.on('end', () => setTimeout(() => {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.end('data: ' + chunk({ content: 'Hello' }, null) + '\\n\\ndata: ' + chunk({}, 'stop') + '\\n\\ndata: [DONE]\\n\\n');
      }, 50));
    }).listen(0, '127.0.0.1', function () { console.log(this.address().port); });
  `;
  let provider: ChildProcess | undefined;
  let base = '';
  beforeAll(async () => {
    provider = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    const [port] = (await once(provider.stdout!, 'data')) as [Buffer];
    base = `http://127.0.0.1:${port.toString().trim()}`;
  });
  afterAll(() => void provider?.kill());

  it('takes headers that came in time though this process was busy past the deadline (the SDK\'s timer ran first and called it a timeout)', async () => {
    const start = performance.now();
    // Busy (after the poll) from 20 ms until past the 1 s deadline: the answer, sent at 50 ms, waits in the socket.
    setTimeout(() => setImmediate(() => {
      while (performance.now() < start + 1300) Math.sqrt(start);
    }), 20);
    const answer = await callModel(providerAt(`${base}/v1`, 1000), request);
    expect(answer).toMatchObject({ output: 'Hello', finishReason: 'stop' });
  });
});

describe('switchyard run with a streaming model', () => {
  const h = useSimulatorAndRedis('streamed-run', { latency_ms: 30, tokens_per_second: 400 });

  it('records each call\'s time to first token and reports it per model', async () => {
    const dir = await tempDir('streamed-run');
    const config = join(dir, 'stream.yaml');
    await import('node:fs/promises').then((fs) => fs.writeFile(config, `providers: {sim: {base_url: "${h.sim.url}"}}\nmodels:\n  streamed: {provider: sim, upstream: m, stream: true, price: {input_per_mtok: 1, output_per_mtok: 2}}\n  whole: {provider: sim, upstream: m, price: {input_per_mtok: 1, output_per_mtok: 2}}\ndefault_model: streamed\n`));
    const input = await writePromptsCsv(dir, 6, { model: (row) => (row % 2 === 0 ? 'whole' : undefined) });
    const out = join(dir, 'out');
    const run = await runCli(['run', input, '--config', config, '--out', out], h.env());
    expect(run.code, run.stderr).toBe(0);
    const calls = await readJsonLines<CallRecord>(join(out, 'costs.jsonl'));
    for (const call of calls) {
      if (call.model === 'streamed') expect(call.ttft_ms).toBeGreaterThanOrEqual(25);
      else expect(call.ttft_ms).toBeUndefined();
    }
    const results = await readJsonLines<RowResult>(join(out, 'results.jsonl'));
    expect(results.every((r) => r.status === 'succeeded' && (r.output ?? '').length > 0)).toBe(true);
    const report = JSON.parse(await readFile(join(out, 'report.json'), 'utf8')) as Report;
    expect(report.models.streamed!.ttft_p50_ms).toBeGreaterThanOrEqual(25);
    expect(report.models.whole!.ttft_p50_ms).toBeNull();
    expect(await readFile(join(out, 'report.md'), 'utf8')).toContain('| TTFT p50 | TTFT p95 |');
    expect(run.stdout).toMatch(/streamed .* first token p50 \d/);
  });
});

describe('a run stopped while every stream is stalled', () => {
  const h = useSimulatorAndRedis('stalled-stop');
  let requests = 0;
  // Headers, then nothing: each call runs to its timeout_ms, after the stop.
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      requests++;
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.flushHeaders();
    });
  });
  let base = '';
  beforeAll(async () => {
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => {
    server.closeAllConnections();
    server.close();
  });

  it('leaves the rows for the resume though their timeouts opened the circuit, and says until when it stays shut (QA: a Ctrl-C failed the rows, exit 1; a resume within the cooldown failed them all)', async () => {
    const dir = await tempDir('stalled-stop');
    const config = join(dir, 'stalled.yaml');
    await writeFile(config, `providers: {p: {base_url: "${base}/v1", timeout_ms: 1500}}\nmodels:\n  s: {provider: p, stream: true, price: {input_per_mtok: 1, output_per_mtok: 2}}\ndefault_model: s\nbreaker: {failure_threshold: 2, cooldown_ms: 60000}\n`);
    const input = await writePromptsCsv(dir, 4);
    const out = join(dir, 'out');
    const run = spawnCli(['run', input, '--config', config, '--out', out, '--batch-id', 'stalled-stop', '--concurrency', '8'], h.env());
    await waitFor(async () => requests >= 4, 20_000);
    run.kill('SIGINT');
    const ended = await run.done;
    expect(ended.code, ended.stdout + ended.stderr).toBe(130);
    expect(await readJsonLines<RowResult>(join(out, 'results.jsonl'))).toEqual([]);
    // The calls in flight were not cut short: they timed out, and are recorded.
    const calls = await readJsonLines<CallRecord>(join(out, 'costs.jsonl'));
    expect(calls.map((call) => call.error_code)).toEqual(['timeout', 'timeout', 'timeout', 'timeout']);
    expect(ended.stdout).toMatch(/^Circuits open after repeated failures \(the circuit breaker\): s's circuit stays shut until \d\d:\d\d:\d\d UTC \(in [^)]+\)\. A resume sooner passes it over with no call \(breaker\.max_wait_ms is 0\): a row goes on to the next of its fallbacks that is open, or fails when none is\. To run the rows on it, resume after that\.$/m);
    expect(ended.stdout).toContain('Stopped early: the outputs above hold the 0 rows finished so far.');
  });
});
