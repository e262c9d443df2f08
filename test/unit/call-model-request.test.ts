import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.ts';
import { callModel, chargedUsage } from '../../src/models/call-model.ts';
import type { ModelCallError } from '../../src/models/model-error.ts';
import { createProviderClients } from '../../src/models/provider-clients.ts';
import { advanceEnsembleRow } from '../../src/ensemble/ensemble-row.ts';
import { createRowPlanner } from '../../src/execution/row-planner.ts';
import { freshProgress } from '../../src/execution/row-progress.ts';
import { advanceRow, type RowRunnerDeps } from '../../src/execution/row-runner.ts';
import { openRowGate } from '../helpers/open-row-gate.ts';

/** What the SDK puts on the wire for a model call, read by a server that answers every call alike. */
describe('the request callModel sends', () => {
  const bodies: Array<Record<string, unknown>> = [];
  const server = createServer(async (request: IncomingMessage, response) => {
    let text = '';
    for await (const chunk of request) text += String(chunk);
    bodies.push(JSON.parse(text) as Record<string, unknown>);
    response.writeHead(200, { 'content-type': 'application/json' });
    response.end(JSON.stringify({ id: 'c1', object: 'chat.completion', created: 0, model: 'm', choices: [{ index: 0, message: { role: 'assistant', content: '{}' }, finish_reason: 'stop' }], usage: { prompt_tokens: 3, completion_tokens: 1 } }));
  });
  beforeAll(() => new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve)));
  afterAll(() => server.close());

  it("carries a Batch line's other body fields, under the request's own model, messages and limits", async () => {
    const { port } = server.address() as AddressInfo;
    const config = parseConfig({ providers: { p: { base_url: `http://127.0.0.1:${port}/v1` } }, models: { m: { provider: 'p', upstream: 'm-upstream' } }, default_model: 'm' }, 'test');
    const provider = createProviderClients(config).get('p')!;
    const messages = [{ role: 'user' as const, content: 'hi' }];
    // A row routed or fallen back to another model keeps its fields but not the line's model.
    await callModel(provider, { model: 'm', upstream: 'm-upstream', messages, temperature: 0.2, maxTokens: 50, params: { response_format: { type: 'json_object' }, seed: 7, model: 'gpt-4o' } });
    await callModel(provider, { model: 'm', upstream: 'm-upstream', messages, temperature: 0.2, maxTokens: 50 });
    expect(bodies).toEqual([
      { response_format: { type: 'json_object' }, seed: 7, model: 'm-upstream', messages, temperature: 0.2, max_tokens: 50 },
      { model: 'm-upstream', messages, temperature: 0.2, max_tokens: 50 },
    ]);
  });
});

/** A model that declines to answer (OpenAI's structured outputs): content null, its reason in `refusal`. */
describe('a refusal', () => {
  const server = createServer(async (request: IncomingMessage, response) => {
    for await (const chunk of request) void chunk;
    response.writeHead(200, { 'content-type': 'application/json' });
    response.end(JSON.stringify({ id: 'c1', object: 'chat.completion', created: 0, model: 'm', choices: [{ index: 0, message: { role: 'assistant', content: null, refusal: "I can't help with that." }, finish_reason: 'stop' }], usage: { prompt_tokens: 3, completion_tokens: 6 } }));
  });
  beforeAll(() => new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve)));
  afterAll(() => server.close());

  it("is kept with the answer, whose output is empty", async () => {
    const { port } = server.address() as AddressInfo;
    const config = parseConfig({ providers: { p: { base_url: `http://127.0.0.1:${port}/v1` } }, models: { m: { provider: 'p' } }, default_model: 'm' }, 'test');
    const provider = createProviderClients(config).get('p')!;
    const answer = await callModel(provider, { model: 'm', upstream: 'm', messages: [{ role: 'user', content: 'hi' }], temperature: 0, maxTokens: 20 });
    expect(answer).toMatchObject({ output: '', refusal: "I can't help with that.", finishReason: 'stop', usage: { input_tokens: 3, output_tokens: 6 } });
  });
});

/** A gateway that reports 0 tokens for a call that had a prompt and an answer (QA: it went as $0, and past the budget). */
describe('a usage of zero tokens', () => {
  const server = createServer(async (request: IncomingMessage, response) => {
    for await (const chunk of request) void chunk;
    response.writeHead(200, { 'content-type': 'application/json' });
    response.end(JSON.stringify({ id: 'c1', object: 'chat.completion', created: 0, model: 'm', choices: [{ index: 0, message: { role: 'assistant', content: 'Lima is the capital.' }, finish_reason: 'stop' }], usage: { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 } }));
  });
  beforeAll(() => new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve)));
  afterAll(() => server.close());

  it('is taken as no usage, and the tokens are counted here', async () => {
    const { port } = server.address() as AddressInfo;
    const config = parseConfig({ providers: { p: { base_url: `http://127.0.0.1:${port}/v1` } }, models: { m: { provider: 'p' } }, default_model: 'm' }, 'test');
    const answer = await callModel(createProviderClients(config).get('p')!, { model: 'm', upstream: 'm', messages: [{ role: 'user', content: 'What is the capital of Peru?' }], temperature: 0, maxTokens: 20 });
    expect(answer.usageEstimated).toBe(true);
    expect(answer.usage.input_tokens).toBeGreaterThan(0);
    expect(answer.usage.output_tokens).toBeGreaterThan(0);
  });
});

/** 2xx answers that are no usable chat completion (QA: a TypeError for a text completion; usage dropped). */
describe('a 200 that is no usable answer', () => {
  const bodies: Record<string, unknown> = {
    legacy: { object: 'text_completion', choices: [{ index: 0, text: 'Paris.', finish_reason: 'stop' }], usage: { prompt_tokens: 12, completion_tokens: 3 } },
    none: { object: 'chat.completion', choices: [], usage: { prompt_tokens: 12, completion_tokens: 0 } },
  };
  const server = createServer(async (request: IncomingMessage, response) => {
    let text = '';
    for await (const chunk of request) text += String(chunk);
    const { model } = JSON.parse(text) as { model: string };
    if (model === 'login') {
      response.writeHead(200, { 'content-type': 'text/html' });
      response.end('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><script>var x = 1;</script><title>Sign in - Corp SSO</title></head><body>...</body></html>');
      return;
    }
    response.writeHead(200, { 'content-type': 'application/json' });
    response.end(JSON.stringify(bodies[model]));
  });
  beforeAll(() => new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve)));
  afterAll(() => server.close());

  const failure = async (upstream: string) => {
    const { port } = server.address() as AddressInfo;
    const config = parseConfig({ providers: { p: { base_url: `http://127.0.0.1:${port}/v1` } }, models: { m: { provider: 'p' } }, default_model: 'm' }, 'test');
    return callModel(createProviderClients(config).get('p')!, { model: 'm', upstream, messages: [{ role: 'user', content: 'hi' }], temperature: 0, maxTokens: 20 }).then(
      () => null,
      (error: unknown) => error as ModelCallError,
    );
  };

  it('says a choice without a message is no chat completion, and charges the usage it reported', async () => {
    const error = await failure('legacy');
    expect(error).toMatchObject({ code: 'bad_response', status: 200, estimatedUsage: { usage: { input_tokens: 12, output_tokens: 3 }, reported: true } });
    expect(error!.message).toMatch(/answered 200 with a choice that has no message \(a text completion's "text"\): providers\.p\.base_url must be an OpenAI-compatible chat completions API$/);
    expect(chargedUsage(null, error)).toMatchObject({ usage: { input_tokens: 12, output_tokens: 3 }, estimated: false });
  });

  it('says where to look for an answer with no choices, and charges its usage', async () => {
    const error = await failure('none');
    expect(error).toMatchObject({ code: 'empty_response', estimatedUsage: { usage: { input_tokens: 12, output_tokens: 0 } } });
    expect(error!.message).toContain('answered 200 with no choices, so no answer: check models.m.upstream and providers.p.base_url');
  });

  it("names a login page by its title", async () => {
    const error = await failure('login');
    expect(error).toMatchObject({ code: 'bad_response' });
    expect(error!.message).toContain('(text/html: Sign in - Corp SSO (an HTML page: a proxy or gateway answered');
  });
});

/** The temperature and max_tokens a row's calls go out with: the row's own, its task type's, its ensemble's, the config's. */
describe('the temperature and max_tokens rows are sent with', () => {
  const bodies: Array<{ model: string; temperature: number; max_tokens: number }> = [];
  const server = createServer(async (request: IncomingMessage, response) => {
    let text = '';
    for await (const chunk of request) text += String(chunk);
    bodies.push(JSON.parse(text) as (typeof bodies)[number]);
    response.writeHead(200, { 'content-type': 'application/json' });
    response.end(JSON.stringify({ id: 'c1', object: 'chat.completion', created: 0, model: 'm', choices: [{ index: 0, message: { role: 'assistant', content: 'ok' }, finish_reason: 'stop' }], usage: { prompt_tokens: 3, completion_tokens: 1 } }));
  });
  beforeAll(() => new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve)));
  afterAll(() => server.close());

  function depsFor(extra: Record<string, unknown>, gateParts: Parameters<typeof openRowGate>[0] = {}): RowRunnerDeps {
    const { port } = server.address() as AddressInfo;
    const config = parseConfig(
      {
        providers: { p: { base_url: `http://127.0.0.1:${port}/v1` } },
        models: { flash: { provider: 'p' }, writer: { provider: 'p' }, strong: { provider: 'p' } },
        default_model: 'flash',
        temperature: 0.7,
        max_tokens: 300,
        ...extra,
      },
      'test',
    );
    const providers = createProviderClients(config);
    const { gate } = openRowGate(gateParts);
    return { config, providers, gate, plan: createRowPlanner(config, providers, undefined, gate), sleep: async () => undefined };
  }
  const row = (id: string, content: string, own: { temperature?: number } = {}) => ({ batchId: 'b', row: 1, id, messages: [{ role: 'user' as const, content }], metadata: {}, ...own });

  it("uses the task type's temperature from routing.temperatures, unless the row sets its own", async () => {
    bodies.length = 0;
    const deps = depsFor({ routing: { routes: { creative: ['writer'] }, temperatures: { creative: 1.0 } } });
    await advanceRow(row('poem', 'Write a haiku about queues'), freshProgress(), deps);
    await advanceRow(row('own', 'Write a haiku about queues', { temperature: 0.1 }), freshProgress(), deps);
    await advanceRow(row('plain', 'What is the capital of Peru?'), freshProgress(), deps);
    expect(bodies.map((b) => [b.model, b.temperature])).toEqual([['writer', 1.0], ['writer', 0.1], ['flash', 0.7]]);
  });

  it('sends a reasoning model the token limit as max_completion_tokens and no temperature, whoever set one', async () => {
    bodies.length = 0;
    const deps = depsFor({ models: { flash: { provider: 'p' }, writer: { provider: 'p' }, strong: { provider: 'p', reasoning: true } }, default_model: 'strong' });
    await advanceRow(row('plain', 'What is the capital of Peru?'), freshProgress(), deps);
    await advanceRow(row('own', 'What is the capital of Peru?', { temperature: 0.1 }), freshProgress(), deps);
    await advanceRow({ ...row('flash', 'What is the capital of Peru?', { temperature: 0.1 }), model: 'flash' }, freshProgress(), deps);
    expect(bodies).toEqual([
      expect.not.objectContaining({ temperature: expect.anything(), max_tokens: expect.anything() }),
      expect.not.objectContaining({ temperature: expect.anything(), max_tokens: expect.anything() }),
      expect.objectContaining({ model: 'flash', temperature: 0.1, max_tokens: 300 }),
    ]);
    expect(bodies.slice(0, 2).map((b) => [b.model, (b as unknown as { max_completion_tokens: number }).max_completion_tokens, 'temperature' in b, 'max_tokens' in b])).toEqual([
      ['strong', 300, false, false],
      ['strong', 300, false, false],
    ]);
  });

  it("numbers a resumed row's calls from 1: an earlier run's calls carried with it are not this run's retries", async () => {
    bodies.length = 0;
    const deps = depsFor({});
    const earlier = { batch_id: 'b', row: 1, id: 'q', model: 'flash', attempt: 1, purpose: 'answer' as const, task_type: 'simple', chain_position: 0, status: 'failed' as const, http_status: 500, input_tokens: 0, output_tokens: 0, cost_usd: 0, latency_ms: 5, started_at: '2026-12-01T00:00:00.000Z', recorded: true as const };
    const step = await advanceRow(row('q', 'What is the capital of Peru?'), { ...freshProgress(), calls: [earlier, { ...earlier, attempt: 2 }] }, deps);
    if (step.kind !== 'finished') throw new Error('expected finished');
    expect(step.event.calls.filter((call) => !call.recorded).map((call) => call.attempt)).toEqual([1]);
  });

  it("sends an ensemble's temperature to its members and synthesizer, and its synthesis_max_tokens to the synthesizer", async () => {
    bodies.length = 0;
    const deps = depsFor({ ensembles: { council: { members: ['flash', 'writer'], synthesizer: 'strong', temperature: 0.3, synthesis_max_tokens: 2000 } } });
    const council = { name: 'council', config: deps.config.ensembles.council! };
    const step = await advanceEnsembleRow(row('q', 'Compare two queues', {}), freshProgress(), deps, council);
    expect(step.kind).toBe('finished');
    expect(bodies.map((b) => [b.model, b.temperature, b.max_tokens]).sort()).toEqual([['flash', 0.3, 300], ['strong', 0.3, 2000], ['writer', 0.3, 300]]);
  });

  it('ends an ensemble row whose members the budget refused as budget_exceeded, so the summary says to resume with more', async () => {
    bodies.length = 0;
    // The writer's calls are estimated far above the cheap member's: the budget refuses them.
    const models = { flash: { provider: 'p', price: { input_per_mtok: 0.1, output_per_mtok: 0.1 } }, writer: { provider: 'p', price: { input_per_mtok: 1000, output_per_mtok: 1000 } }, strong: { provider: 'p' } };
    const refusesDear = { reserveBudget: async (estimateNanos: number) => (estimateNanos > 1_000_000 ? { ok: false as const, heldByCallsInFlight: false, message: 'not run: over the batch budget' } : { ok: true as const, hold: null }) };
    const deps = depsFor({ models, ensembles: { council: { members: ['flash', 'writer'], synthesizer: 'strong' } } }, refusesDear);
    const step = await advanceEnsembleRow(row('q', 'Compare two queues'), freshProgress(), deps, { name: 'council', config: deps.config.ensembles.council! });
    expect(step.kind === 'finished' && step.event.result.error).toMatchObject({ code: 'budget_exceeded', message: expect.stringMatching(/^ensemble "council": 1 of 2 members answered, 2 needed; writer: /) });
  });

  it("says a synthesis the budget refused was not sent, rather than that it synthesized", async () => {
    const cheap = { input_per_mtok: 0.1, output_per_mtok: 0.1 };
    const models = { flash: { provider: 'p', price: cheap }, writer: { provider: 'p', price: cheap }, strong: { provider: 'p', price: { input_per_mtok: 1000, output_per_mtok: 1000 } } };
    const refusesDear = { reserveBudget: async (estimateNanos: number) => (estimateNanos > 1_000_000 ? { ok: false as const, heldByCallsInFlight: false, message: 'not run: over the batch budget' } : { ok: true as const, hold: null }) };
    const deps = depsFor({ models, ensembles: { council: { members: ['flash', 'writer'], synthesizer: 'strong' } } }, refusesDear);
    const step = await advanceEnsembleRow(row('q', 'Compare two queues'), freshProgress(), deps, { name: 'council', config: deps.config.ensembles.council! });
    if (step.kind !== 'finished') throw new Error('expected finished');
    expect(step.event.result).toMatchObject({ status: 'failed', model: 'strong', route_reason: 'ensemble "council": 2 of 2 members answered, its synthesis (strong) not sent', error: { code: 'budget_exceeded' } });
  });
});
