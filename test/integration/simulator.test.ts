import { request as httpRequest, Agent } from 'node:http';
import OpenAI, { AuthenticationError, BadRequestError, InternalServerError, NotFoundError, RateLimitError } from 'openai';
import { afterEach, describe, expect, it } from 'vitest';
import { runSimulatorFromCli } from '../../src/sim/cli-options.ts';
import { startSimulator, type Simulator, type SimulatorOptions } from '../../src/sim/server.ts';
import { estimateTokens } from '../../src/sim/tokens.ts';
import { schemaProblems } from '../helpers/json-schema-check.ts';

const open: Simulator[] = [];

async function simulator(options: SimulatorOptions = {}): Promise<{ sim: Simulator; client: OpenAI }> {
  const sim = await startSimulator(options);
  open.push(sim);
  return { sim, client: new OpenAI({ baseURL: sim.url, apiKey: 'x', maxRetries: 0 }) };
}

afterEach(async () => {
  await Promise.all(open.splice(0).map((sim) => sim.close()));
});

const question = [{ role: 'user' as const, content: 'What is the capital of France?' }];

async function expectError<T extends Error>(promise: Promise<unknown>, type: new (...args: never[]) => T): Promise<T> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(type);
  return error as T;
}

describe('simulator over HTTP with the openai SDK', () => {
  it('answers a chat completion with usage and a request id', async () => {
    const { sim, client } = await simulator();
    expect(sim.url).toBe(`http://127.0.0.1:${sim.port}/v1`);
    const { data, response } = await client.chat.completions.create({ model: 'deepseek-v4-flash', messages: question }).withResponse();
    expect(data.object).toBe('chat.completion');
    expect(data.id).toMatch(/^chatcmpl-/);
    expect(data.model).toBe('deepseek-v4-flash');
    const choice = data.choices[0];
    expect(choice?.message.role).toBe('assistant');
    expect(choice?.message.content).toMatch(/^\[deepseek-v4-flash\] Answer to "What is the capital of France\?": [A-Z]/);
    expect(choice?.finish_reason).toBe('stop');
    const usage = data.usage;
    expect(usage?.prompt_tokens).toBeGreaterThan(0);
    expect(usage?.completion_tokens).toBeGreaterThanOrEqual(20);
    expect(usage?.completion_tokens).toBeLessThanOrEqual(120);
    expect(usage?.total_tokens).toBe((usage?.prompt_tokens ?? 0) + (usage?.completion_tokens ?? 0));
    expect(response.headers.get('x-request-id')).toMatch(/^req_/);
    expect(response.headers.get('x-ratelimit-limit-requests')).toBeNull(); // no limits configured

    const stats = sim.stats().models['deepseek-v4-flash'];
    expect(stats).toMatchObject({ requests: 1, by_status: { '200': 1 }, prompt_tokens: usage?.prompt_tokens, completion_tokens: usage?.completion_tokens });
  });

  it('is deterministic, and streams the same text as it answers', async () => {
    const { client } = await simulator();
    const first = await client.chat.completions.create({ model: 'glm-4', messages: question });
    const again = await client.chat.completions.create({ model: 'glm-4', messages: question });
    expect(again.choices[0]?.message.content).toBe(first.choices[0]?.message.content);
    expect(again.usage).toEqual(first.usage);

    const stream = await client.chat.completions.create({ model: 'glm-4', messages: question, stream: true, stream_options: { include_usage: true } });
    let text = '';
    let deltas = 0;
    let finish: string | null = null;
    let usage: OpenAI.CompletionUsage | null | undefined;
    for await (const chunk of stream) {
      expect(chunk.object).toBe('chat.completion.chunk');
      const choice = chunk.choices[0];
      if (choice?.delta.content) deltas++;
      text += choice?.delta.content ?? '';
      finish = choice?.finish_reason ?? finish;
      if (chunk.usage) usage = chunk.usage;
    }
    expect(text).toBe(first.choices[0]?.message.content);
    expect(deltas).toBeGreaterThan(5);
    expect(finish).toBe('stop');
    expect(usage).toEqual(first.usage);

    const plain = await client.chat.completions.create({ model: 'glm-4', messages: question, stream: true });
    const chunks = [];
    for await (const chunk of plain) chunks.push(chunk);
    expect(chunks.some((chunk) => chunk.usage)).toBe(false);
  });

  it('stops at max_tokens with finish_reason "length", streamed or not', async () => {
    const { client } = await simulator();
    const cut = await client.chat.completions.create({ model: 'm', messages: question, max_tokens: 5 });
    expect(cut.choices[0]?.finish_reason).toBe('length');
    expect(cut.usage?.completion_tokens).toBeLessThanOrEqual(5);
    const stream = await client.chat.completions.create({ model: 'm', messages: question, max_completion_tokens: 5, stream: true });
    let finish: string | null = null;
    for await (const chunk of stream) finish = chunk.choices[0]?.finish_reason ?? finish;
    expect(finish).toBe('length');
  });

  it('answers a json_schema response_format with JSON of the schema, streamed or not, billing the schema as prompt', async () => {
    const { client } = await simulator();
    const schema = {
      type: 'object',
      properties: {
        city: { type: 'string' },
        population: { type: 'integer', minimum: 0 },
        founded: { type: ['string', 'null'], format: 'date' },
        districts: { type: 'array', items: { $ref: '#/$defs/district' }, maxItems: 3 },
      },
      required: ['city', 'population', 'founded', 'districts'],
      additionalProperties: false,
      $defs: { district: { type: 'object', properties: { name: { type: 'string' }, kind: { enum: ['urban', 'rural'] } }, required: ['name', 'kind'], additionalProperties: false } },
    };
    const response_format = { type: 'json_schema' as const, json_schema: { name: 'city', schema, strict: true } };
    const plain = await client.chat.completions.create({ model: 'glm-4', messages: question });
    const answer = await client.chat.completions.create({ model: 'glm-4', messages: question, response_format });
    const content = answer.choices[0]?.message.content ?? '';
    expect(schemaProblems(schema, JSON.parse(content)), content).toEqual([]);
    expect(answer.choices[0]?.finish_reason).toBe('stop');
    expect(answer.usage?.prompt_tokens).toBe((plain.usage?.prompt_tokens ?? 0) + estimateTokens(JSON.stringify(response_format.json_schema)));
    expect(answer.usage?.completion_tokens).toBe(estimateTokens(content));

    const stream = await client.chat.completions.create({ model: 'glm-4', messages: question, response_format, stream: true, stream_options: { include_usage: true } });
    let text = '';
    let deltas = 0;
    let usage: OpenAI.CompletionUsage | null | undefined;
    for await (const chunk of stream) {
      if (chunk.choices[0]?.delta.content) deltas++;
      text += chunk.choices[0]?.delta.content ?? '';
      if (chunk.usage) usage = chunk.usage;
    }
    expect(text).toBe(content);
    expect(deltas).toBeGreaterThan(5);
    expect(usage).toEqual(answer.usage);

    // As OpenAI and DeepSeek do, json_object needs the word "json" in the messages (any case, any message).
    const refused = await expectError(client.chat.completions.create({ model: 'glm-4', messages: question, response_format: { type: 'json_object' } }), BadRequestError);
    expect([refused.param, refused.message]).toEqual(['messages', "400 'messages' must contain the word 'json' in some form, to use 'response_format' of type 'json_object'."]);
    const asked = [{ role: 'system' as const, content: 'Reply in JSON.' }, ...question];
    const object = await client.chat.completions.create({ model: 'glm-4', messages: asked, response_format: { type: 'json_object' } });
    expect(JSON.parse(object.choices[0]?.message.content ?? '')).toMatchObject({ model: 'glm-4', question: 'What is the capital of France?', answer: expect.any(String) });
    const textFormat = await client.chat.completions.create({ model: 'glm-4', messages: question, response_format: { type: 'text' } });
    expect(textFormat.choices[0]?.message.content).toBe(plain.choices[0]?.message.content);
  });

  it('answers a 400 naming the keyword of a schema it does not support, and for a malformed response_format or seed', async () => {
    const { sim, client } = await simulator();
    const schema = { type: 'object', properties: { code: { type: 'string', pattern: '^[A-Z]{3}$' } }, required: ['code'], additionalProperties: false };
    const error = await expectError(client.chat.completions.create({ model: 'm', messages: question, response_format: { type: 'json_schema', json_schema: { name: 'iata', schema } } }), BadRequestError);
    expect(error.param).toBe('response_format');
    expect(error.code).toBe('unsupported_schema');
    expect(error.message).toMatch(/^400 Invalid schema for response_format 'iata': keyword 'pattern' \(at #\/properties\/code\) is not supported by the simulator/);
    const malformed = await fetch(`${sim.url}/chat/completions`, { method: 'POST', body: JSON.stringify({ model: 'm', messages: question, response_format: 'json' }) });
    expect(malformed.status).toBe(400);
    expect(await malformed.json()).toMatchObject({ error: { type: 'invalid_request_error', param: 'response_format' } });
    const seed = await fetch(`${sim.url}/chat/completions`, { method: 'POST', body: JSON.stringify({ model: 'm', messages: question, seed: 'abc' }) });
    expect(await seed.json()).toMatchObject({ error: { param: 'seed' } });
    expect(sim.stats().by_status).toEqual({ '400': 3 });
  });

  it('honours stop, streamed or not, and varies the answer with seed', async () => {
    const { client } = await simulator();
    const full = (await client.chat.completions.create({ model: 'm', messages: question })).choices[0]?.message.content ?? '';
    const stopAt = full.split(' ')[8]!;
    const cut = await client.chat.completions.create({ model: 'm', messages: question, stop: [stopAt, 'never there'] });
    expect(cut.choices[0]?.message.content).toBe(full.slice(0, full.indexOf(stopAt)));
    expect(cut.choices[0]?.finish_reason).toBe('stop');
    const stream = await client.chat.completions.create({ model: 'm', messages: question, stop: stopAt, stream: true });
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? '';
    expect(text).toBe(cut.choices[0]?.message.content);
    const seeded = await client.chat.completions.create({ model: 'm', messages: question, seed: 42 });
    expect(seeded.choices[0]?.message.content).not.toBe(full);
    expect((await client.chat.completions.create({ model: 'm', messages: question, seed: 42 })).choices[0]?.message.content).toBe(seeded.choices[0]?.message.content);
  });

  it('rejects a wrong or missing API key with 401 when one is set', async () => {
    const { sim, client } = await simulator({ api_key: 'sim-secret' });
    const error = await expectError(client.chat.completions.create({ model: 'm', messages: question }), AuthenticationError);
    expect(error.status).toBe(401);
    expect(error.code).toBe('invalid_api_key');
    expect(error.message).not.toContain('sim-secret');
    const missing = await fetch(`${sim.url}/chat/completions`, { method: 'POST', body: '{}' });
    expect(missing.status).toBe(401);
    const good = new OpenAI({ baseURL: sim.url, apiKey: 'sim-secret', maxRetries: 0 });
    const answer = await good.chat.completions.create({ model: 'm', messages: question });
    expect(answer.choices[0]?.message.content).toContain('[m]');
  });

  it('with strict_models, serves and lists only the configured models', async () => {
    const { client } = await simulator({ strict_models: true, models: { 'deepseek-v4-flash': {}, 'glm-4': {} } });
    const error = await expectError(client.chat.completions.create({ model: 'gpt-nope', messages: question }), NotFoundError);
    expect(error.code).toBe('model_not_found');
    expect(error.message).toContain('gpt-nope');
    await expect(client.chat.completions.create({ model: 'glm-4', messages: question })).resolves.toBeDefined();
    const models = [];
    for await (const model of client.models.list()) models.push(model.id);
    expect(models).toEqual(['deepseek-v4-flash', 'glm-4']);
  });

  it('answers a forced fail_status for one model only', async () => {
    const { sim, client } = await simulator({ models: { broken: { fail_status: 500 }, busy: { fail_status: 503 }, picky: { fail_status: 400 } } });
    const broken = await expectError(client.chat.completions.create({ model: 'broken', messages: question }), InternalServerError);
    expect(broken.status).toBe(500);
    expect((broken.error as { type?: string }).type).toBe('server_error');
    expect((await expectError(client.chat.completions.create({ model: 'busy', messages: question }), InternalServerError)).status).toBe(503);
    expect((await expectError(client.chat.completions.create({ model: 'picky', messages: question }), BadRequestError)).status).toBe(400);
    await expect(client.chat.completions.create({ model: 'fine', messages: question })).resolves.toBeDefined();
    expect(sim.stats().models.broken?.by_status).toEqual({ '500': 1 });

    sim.setOptions({ models: {} }); // the model recovers
    await expect(client.chat.completions.create({ model: 'broken', messages: question })).resolves.toBeDefined();
  });

  it('fails every call with failure_rate 1, and none with 0', async () => {
    const { sim, client } = await simulator({ failure_rate: 1 });
    const results = await Promise.allSettled(Array.from({ length: 20 }, () => client.chat.completions.create({ model: 'm', messages: question })));
    for (const result of results) {
      expect(result.status).toBe('rejected');
      if (result.status === 'rejected') expect(result.reason).toBeInstanceOf(InternalServerError);
    }
    expect(sim.stats().models.m?.by_status).toEqual({ '500': 20 });
    sim.setOptions({ failure_rate: 0 });
    await expect(client.chat.completions.create({ model: 'm', messages: question })).resolves.toBeDefined();
  });

  it('fails about failure_rate of calls, the same ones for the same seed', async () => {
    const outcomes = async () => {
      const { client } = await simulator({ failure_rate: 0.3, seed: 42 });
      const list: boolean[] = [];
      for (let i = 0; i < 100; i++) {
        list.push(await client.chat.completions.create({ model: 'm', messages: question }).then(() => true, () => false));
      }
      return list;
    };
    const first = await outcomes();
    const failures = first.filter((ok) => !ok).length;
    expect(failures).toBeGreaterThan(10);
    expect(failures).toBeLessThan(50);
    expect(await outcomes()).toEqual(first);
  });

  it('enforces rpm with 429, retry-after-ms and x-ratelimit headers', async () => {
    const { sim, client } = await simulator({ models: { limited: { rpm: 60 } } });
    for (let i = 0; i < 60; i++) {
      const { response } = await client.chat.completions.create({ model: 'limited', messages: question }).withResponse();
      expect(response.headers.get('x-ratelimit-limit-requests')).toBe('60');
      expect(response.headers.get('x-ratelimit-remaining-requests')).toBe(String(59 - i));
    }
    const error = await expectError(client.chat.completions.create({ model: 'limited', messages: question }), RateLimitError);
    expect(error.status).toBe(429);
    expect(error.code).toBe('rate_limit_exceeded');
    expect((error.error as { type?: string }).type).toBe('requests');
    const retryMs = Number(error.headers?.get('retry-after-ms'));
    expect(retryMs).toBeGreaterThan(50_000); // the first of 60 quick calls frees its slot about a minute later
    expect(retryMs).toBeLessThanOrEqual(60_000);
    expect(Number(error.headers?.get('retry-after'))).toBe(Math.ceil(retryMs / 1000));
    expect(error.headers?.get('x-ratelimit-remaining-requests')).toBe('0');
    // Another model is not limited.
    await expect(client.chat.completions.create({ model: 'other', messages: question })).resolves.toBeDefined();

    const stats = sim.stats().models.limited;
    expect(stats).toMatchObject({ requests: 61, by_status: { '200': 60, '429': 1 }, peak_rpm: 61 });
    sim.reset();
    expect(sim.stats().models).toEqual({});
    await expect(client.chat.completions.create({ model: 'limited', messages: question })).resolves.toBeDefined();
  });

  it('enforces tpm on prompt tokens plus max_tokens', async () => {
    const { client } = await simulator({ tpm: 1000 });
    const call = (max_tokens: number) => client.chat.completions.create({ model: 'm', messages: question, max_tokens }).withResponse();
    const first = await call(400);
    const remaining = Number(first.response.headers.get('x-ratelimit-remaining-tokens'));
    expect(first.response.headers.get('x-ratelimit-limit-tokens')).toBe('1000');
    expect(remaining).toBe(1000 - 400 - (first.data.usage?.prompt_tokens ?? 0));
    await call(400);
    const error = await expectError(call(400), RateLimitError);
    expect((error.error as { type?: string }).type).toBe('tokens');
    expect(Number(error.headers?.get('retry-after-ms'))).toBeGreaterThan(0);
    // A request bigger than the whole limit can never pass: 429 without a retry time.
    const tooLarge = await expectError(call(5000), RateLimitError);
    expect(tooLarge.message).toMatch(/Request too large/);
    expect(tooLarge.headers?.get('retry-after-ms')).toBeNull();
  });

  it('rejects prompts over the context window', async () => {
    const { client } = await simulator({ models: { tiny: { context_window: 50 } } });
    const error = await expectError(client.chat.completions.create({ model: 'tiny', messages: question, max_tokens: 100 }), BadRequestError);
    expect(error.code).toBe('context_length_exceeded');
    await expect(client.chat.completions.create({ model: 'tiny', messages: question, max_tokens: 10 })).resolves.toBeDefined();
    // A json_schema is prompt too, as on a provider.
    const schema = { type: 'object', description: 'x'.repeat(200), properties: { a: { type: 'string' } } };
    const withSchema = await expectError(client.chat.completions.create({ model: 'tiny', messages: question, max_tokens: 10, response_format: { type: 'json_schema', json_schema: { name: 's', schema } } }), BadRequestError);
    expect(withSchema.code).toBe('context_length_exceeded');
    expect(withSchema.message).toMatch(/in the messages and the response_format schema, 10 in the completion/);
  });

  it('waits about latency_ms before answering', async () => {
    const { client } = await simulator({ latency_ms: 300, latency_jitter_ms: 50 });
    const started = performance.now();
    await Promise.all(Array.from({ length: 10 }, () => client.chat.completions.create({ model: 'm', messages: question })));
    const elapsed = performance.now() - started;
    expect(elapsed).toBeGreaterThanOrEqual(240); // 300 - 50, minus timer slack; calls run in parallel
    expect(elapsed).toBeLessThan(3000);
  });

  it('answers bad bodies with 400 and unknown routes with a JSON 404', async () => {
    const { sim, client } = await simulator();
    const error = await expectError(client.chat.completions.create({ model: 'm', messages: [] }), BadRequestError);
    expect(error.param).toBe('messages');
    const notJson = await fetch(`${sim.url}/chat/completions`, { method: 'POST', body: '{oops', headers: { 'content-type': 'application/json' } });
    expect(notJson.status).toBe(400);
    expect(await notJson.json()).toMatchObject({ error: { type: 'invalid_request_error', code: 'invalid_json' } });
    const missing = await fetch(`${sim.url}/embeddings`, { method: 'POST', body: '{}' });
    expect(missing.status).toBe(404);
    expect(missing.headers.get('content-type')).toBe('application/json');
    expect(await missing.json()).toMatchObject({ error: { code: 'unknown_url' } });
    expect(sim.stats().by_status).toEqual({ '400': 2, '404': 1 });
  });

  it('closes idle keep-alive connections and pending calls on close', async () => {
    const sim = await startSimulator({ models: { slow: { latency_ms: 60_000 } } });
    const agent = new Agent({ keepAlive: true });
    const post = (model: string) =>
      new Promise<number>((resolve, reject) => {
        const body = JSON.stringify({ model, messages: question });
        const req = httpRequest(`${sim.url}/chat/completions`, { method: 'POST', agent, headers: { 'content-type': 'application/json' } }, (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        });
        req.on('error', reject);
        req.end(body);
      });
    expect(await post('fast')).toBe(200); // leaves an idle keep-alive socket
    const pending = post('slow').catch((error: unknown) => error);
    await new Promise((resolve) => setTimeout(resolve, 50));
    const started = performance.now();
    await sim.close();
    expect(performance.now() - started).toBeLessThan(2000);
    expect(await pending).toBeInstanceOf(Error); // the pending call's socket was dropped
    agent.destroy();
  });

  it('runs from command-line options until stopped', async () => {
    const lines: string[] = [];
    const controller = new AbortController();
    const running = runSimulatorFromCli({ port: '0', rpm: '1', modelLimits: '{"m":{"latency_ms":5}}' }, { log: (line) => lines.push(line), signal: controller.signal });
    await expect.poll(() => lines.length).toBe(1);
    const url = /^Simulator listening on (http:\/\/127\.0\.0\.1:\d+\/v1)$/.exec(lines[0] ?? '')?.[1];
    expect(url).toBeDefined();
    const client = new OpenAI({ baseURL: url, apiKey: 'x', maxRetries: 0 });
    await expect(client.chat.completions.create({ model: 'm', messages: question })).resolves.toBeDefined();
    await expectError(client.chat.completions.create({ model: 'm', messages: question }), RateLimitError);
    controller.abort();
    await running;
    expect(lines.slice(1)).toEqual([
      'Simulator stopped after 2 requests (1 x 200, 1 x 429); at most 1 chat request in flight at once.',
      expect.stringMatching(/^ {2}m: 2 requests \(1 x 200, 1 x 429\), \d+ prompt \+ \d+ completion tokens served, peak 2 requests\/min$/),
    ]);
    await expect(fetch(`${url}/models`)).rejects.toThrow();
  });
});
