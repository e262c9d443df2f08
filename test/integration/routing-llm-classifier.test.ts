import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.ts';
import { CallsStopped } from '../../src/execution/call-slots.ts';
import { ClaimLostError } from '../../src/execution/claim-lost.ts';
import type { CallSettlement } from '../../src/execution/row-gate.ts';
import { createRowPlanner } from '../../src/execution/row-planner.ts';
import { freshProgress } from '../../src/execution/row-progress.ts';
import type { SwitchyardConfig } from '../../src/config/schema.ts';
import { callModel, type ModelRequest } from '../../src/models/call-model.ts';
import { callCostNanos, nanosToUsd } from '../../src/models/pricing.ts';
import { createProviderClients, type ProviderClient } from '../../src/models/provider-clients.ts';
import { DEFAULT_TASK_TYPE_DESCRIPTIONS } from '../../src/routing/default-task-types.ts';
import { classifierMessages, classifyWithLlm } from '../../src/routing/llm-classifier.ts';
import { classificationInput, classifyByRules, compileTaskRules, RULES_READ_CHARS } from '../../src/routing/rule-classifier.ts';
import { countMessageTokens } from '../../src/routing/token-count.ts';
import { startSimulator, type Simulator } from '../../src/sim/server.ts';
import { openRowGate } from '../helpers/open-row-gate.ts';

/**
 * The LLM classifier through the real `openai` SDK against the built-in simulator. The simulator
 * answers with the model name, the start of the user message and lorem words, so a plain question
 * gets an answer that names no label (the rules decide), while a prompt that starts with a label
 * gets that label echoed back.
 */

let sim: Simulator;
let config: SwitchyardConfig;
let provider: ProviderClient;

beforeAll(async () => {
  sim = await startSimulator({ output_tokens: { min: 20, max: 40 } });
  config = parseConfig(
    {
      providers: { sim: { base_url: sim.url } },
      models: {
        'deepseek-v4-flash': { provider: 'sim', price: { input_per_mtok: 0.14, output_per_mtok: 0.28 } },
        classifier: { provider: 'sim', upstream: 'tiny-labeler', price: { input_per_mtok: 0.1, output_per_mtok: 0.2 } },
      },
      default_model: 'deepseek-v4-flash',
      routing: { classifier: 'llm', llm_classifier: { model: 'classifier' } },
    },
    'test',
  );
  const client = createProviderClients(config).get('sim');
  if (!client) throw new Error('no sim provider client');
  provider = client;
});

afterAll(async () => {
  await sim?.close();
});

const rules = () => compileTaskRules(config.routing);
const deps = () => ({ call: (request: ModelRequest) => callModel(provider, request) });

function classifierInput(text: string, maxTokens: number) {
  const llm = config.routing?.llm_classifier;
  if (!llm) throw new Error('llm_classifier missing');
  return { text, taskTypes: rules().labels, model: llm.model, upstream: config.models[llm.model]?.upstream ?? llm.model, maxTokens, descriptions: DEFAULT_TASK_TYPE_DESCRIPTIONS };
}

describe('LLM classifier against the simulator', () => {
  it('records no classify call for a request never sent (its key was just rejected): the rules decide', async () => {
    const providers = createProviderClients(config);
    providers.get('sim')!.keyRejection.record('model "classifier" rejected the API key (401)');
    const { gate, settled } = openRowGate();
    const planRow = createRowPlanner(config, providers, undefined, gate);
    const planned = await planRow({ batchId: 'b', row: 1, id: 'r1', messages: [{ role: 'user', content: "What's the capital of France?" }], metadata: {} }, freshProgress());
    if ('waitMs' in planned) throw new Error('expected a plan');
    expect(planned.calls).toEqual([]);
    expect(planned.plan.routeReason).toContain('llm call failed: not sent, the key was just rejected');
    expect(settled).toEqual(['classifier:neutral']); // its slot and budget hold handed back
  });

  it('makes no classifier call for a row whose worker lost its claim while it waited (paused past its lock): the row is handed over, its slot given back', async () => {
    const { gate, settled } = openRowGate();
    const planRow = createRowPlanner(config, createProviderClients(config), undefined, gate);
    const before = sim.stats().models['tiny-labeler']?.requests ?? 0;
    const claimLost = async () => {
      throw new ClaimLostError();
    };
    const row = { batchId: 'b', row: 1, id: 'r1', messages: [{ role: 'user' as const, content: 'Write a poem about rain.' }], metadata: {} };
    await expect(planRow(row, freshProgress(), claimLost)).rejects.toBeInstanceOf(ClaimLostError);
    expect(sim.stats().models['tiny-labeler']?.requests ?? 0).toBe(before);
    expect(settled).toEqual(['classifier:neutral']);
  });

  it('gives its rate-limit slot back whole when the process stops while the classifier call waits for a call slot (review: a stop kept one slot per such row)', async () => {
    const settlements: CallSettlement[] = [];
    const { gate } = openRowGate({ settle: async (settlement) => void settlements.push(settlement) });
    const stopped = async () => {
      throw new CallsStopped();
    };
    const planRow = createRowPlanner(config, createProviderClients(config), undefined, gate, stopped);
    const planned = await planRow({ batchId: 'b', row: 1, id: 'r1', messages: [{ role: 'user', content: 'Write a poem about rain.' }], metadata: {} }, freshProgress());
    if ('waitMs' in planned) throw new Error('expected a plan');
    expect(planned.calls).toEqual([]);
    expect(settlements).toEqual([expect.objectContaining({ model: 'classifier', health: 'neutral', unsent: true })]);
  });

  it('charges a classifier call that timed out its prompt, counted, in its classify record and the budget: the rules decide', async () => {
    const silent = createServer(() => undefined); // takes the request, never answers
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    try {
      const price = { input_per_mtok: 0.1, output_per_mtok: 0.2 };
      const timingOut = parseConfig(
        {
          providers: { silent: { base_url: `http://127.0.0.1:${(silent.address() as AddressInfo).port}/v1`, timeout_ms: 150 } },
          models: { answerer: { provider: 'silent' }, classifier: { provider: 'silent', price } },
          default_model: 'answerer',
          routing: { classifier: 'llm', llm_classifier: { model: 'classifier' } },
        },
        'test',
      );
      const settlements: CallSettlement[] = [];
      const { gate } = openRowGate({ settle: async (settlement) => void settlements.push(settlement) });
      const planRow = createRowPlanner(timingOut, createProviderClients(timingOut), undefined, gate);
      const planned = await planRow({ batchId: 'b', row: 1, id: 'r1', messages: [{ role: 'user', content: "What's the capital of France?" }], metadata: {} }, freshProgress());
      if ('waitMs' in planned) throw new Error('expected a plan');
      expect(planned.plan.routeReason).toMatch(/^llm call failed: .*did not answer within 150 ms.*; rules: /);
      const { text } = classificationInput([{ role: 'user', content: "What's the capital of France?" }]);
      const prompt = countMessageTokens(classifierMessages({ text, taskTypes: compileTaskRules(timingOut.routing).labels, descriptions: DEFAULT_TASK_TYPE_DESCRIPTIONS }));
      const nanos = callCostNanos(price, { input_tokens: prompt, output_tokens: 0 })!;
      expect(planned.calls).toEqual([expect.objectContaining({ purpose: 'classify', status: 'failed', http_status: null, error_code: 'timeout', input_tokens: prompt, output_tokens: 0, cost_usd: nanosToUsd(nanos), usage_estimated: true })]);
      expect(settlements).toEqual([expect.objectContaining({ model: 'classifier', actualNanos: nanos, actualTokens: prompt })]);
    } finally {
      silent.closeAllConnections();
      silent.close();
    }
  });

  it('falls back to the rules when the answer names no label, with usage and cost for the classify record', async () => {
    const { text, chars } = classificationInput([{ role: 'user', content: "What's the capital of France?" }]);
    const maxTokens = config.routing?.llm_classifier?.max_tokens ?? 0;
    expect(maxTokens).toBe(8); // the schema's default

    const result = await classifyWithLlm(deps(), classifierInput(text, maxTokens));
    expect(result.error).toBeNull();
    expect(result.taskType).toBeNull();
    expect(result.reason).toMatch(/^llm answer ".*" names no task type$/);
    expect(result.httpStatus).toBe(200);
    expect(result.latencyMs).toBeGreaterThanOrEqual(0);
    expect(Date.parse(result.startedAt)).toBeLessThanOrEqual(Date.now());

    const answer = result.answer;
    expect(answer?.output).toMatch(/^\[tiny-labeler\]/); // the upstream name went to the endpoint
    expect(answer?.usage.input_tokens).toBeGreaterThan(0);
    expect(answer?.usage.output_tokens).toBeGreaterThan(0);
    expect(answer?.usage.output_tokens).toBeLessThanOrEqual(8); // max_tokens was sent
    expect(answer?.finishReason).toBe('length');
    expect(answer?.requestId).toMatch(/^req_/);

    // What the caller writes as the 'classify' cost record: the call's tokens at the classifier's price.
    const cost = callCostNanos(config.models.classifier?.price, answer?.usage ?? { input_tokens: 0, output_tokens: 0 });
    expect(cost).not.toBeNull();
    expect(nanosToUsd(cost ?? 0)).toBeCloseTo(((answer?.usage.input_tokens ?? 0) * 0.1 + (answer?.usage.output_tokens ?? 0) * 0.2) / 1e6, 12);

    // The simulator saw exactly this call, at temperature 0 through the SDK.
    expect(sim.stats().models['tiny-labeler']).toMatchObject({ requests: 1, prompt_tokens: answer?.usage.input_tokens, completion_tokens: answer?.usage.output_tokens });

    // The caller then uses the rules.
    expect(classifyByRules(text, rules(), chars)).toEqual({ taskType: 'simple', reason: 'rules: no keyword matched -> simple' });
  });

  it("shows the classifier a long document's end, and its whole length, not the end of the rules' first RULES_READ_CHARS (review: a closing instruction was cut off)", async () => {
    const bodies: string[] = [];
    const capturing = createServer((request, response) => {
      let body = '';
      request.on('data', (chunk: Buffer) => (body += chunk.toString()));
      request.on('end', () => {
        bodies.push(body);
        response.setHeader('content-type', 'application/json');
        response.end(JSON.stringify({ id: 'c', object: 'chat.completion', created: 0, model: 'classifier', choices: [{ index: 0, finish_reason: 'stop', message: { role: 'assistant', content: 'translation' } }], usage: { prompt_tokens: 900, completion_tokens: 1, total_tokens: 901 } }));
      });
    });
    await new Promise<void>((resolve) => capturing.listen(0, '127.0.0.1', resolve));
    try {
      const capturingConfig = parseConfig(
        {
          providers: { local: { base_url: `http://127.0.0.1:${(capturing.address() as AddressInfo).port}/v1` } },
          models: { answerer: { provider: 'local' }, classifier: { provider: 'local' } },
          default_model: 'answerer',
          routing: { classifier: 'llm', llm_classifier: { model: 'classifier' } },
        },
        'test',
      );
      const { gate } = openRowGate();
      const planRow = createRowPlanner(capturingConfig, createProviderClients(capturingConfig), undefined, gate);
      const document = 'Die Vertragsparteien vereinbaren Folgendes über Schäden. '.repeat(Math.ceil((1.5 * RULES_READ_CHARS) / 57));
      const content = `${document}\n\nTranslate the above into English.`;
      const planned = await planRow({ batchId: 'b', row: 1, id: 'r1', messages: [{ role: 'user', content }], metadata: {} }, freshProgress());
      if ('waitMs' in planned) throw new Error('expected a plan');
      const sent = JSON.parse(bodies[0] ?? '{}') as { messages: Array<{ role: string; content: string }> };
      const shown = sent.messages.findLast((message) => message.role === 'user')?.content ?? '';
      expect(shown).toContain('Translate the above into English.');
      const leftOut = Number(/\[\.\.\. (\d+) characters left out/.exec(shown)?.[1]);
      expect(leftOut).toBe(content.length - 4000);
    } finally {
      capturing.closeAllConnections();
      capturing.close();
    }
  });

  it('parks a row holding the classifier slot booked too far ahead, then classifies it with that slot', async () => {
    const slotAt = 123;
    let reservations = 0;
    const { gate } = openRowGate({ reserveCapacity: async () => (reservations++, { reserved: true, waitMs: 5000, slotAt }) });
    const planRow = createRowPlanner(config, createProviderClients(config), undefined, gate);
    const row = { batchId: 'b', row: 2, id: 'r2', messages: [{ role: 'user' as const, content: 'Coding question: how do I reverse a list?' }], metadata: {} };
    const progress = freshProgress();
    expect(await planRow(row, progress)).toEqual({ waitMs: 5000 });
    expect(progress).toMatchObject({ reservedModel: 'classifier', slotAt, reservedTokens: expect.any(Number) });
    // Woken just before its slot: it books nothing more and calls.
    progress.wakeAt = Date.now() + 20;
    const planned = await planRow(row, progress);
    if ('waitMs' in planned) throw new Error('expected a plan');
    expect(reservations).toBe(1);
    expect(planned.plan).toMatchObject({ taskType: 'coding', routeReason: 'llm: coding' });
    expect(planned.calls.map((c) => c.purpose)).toEqual(['classify']);
    expect(progress.reservedModel).toBeUndefined();
  });

  it('lets the rules decide when the classifier model is limited past limits.max_wait_ms and its on_limit is fallback', async () => {
    const fallbackConfig = { ...config, limits: { ...config.limits, on_limit: 'fallback' as const } };
    const { gate } = openRowGate({ reserveCapacity: async () => ({ reserved: false, waitMs: 90_000, limitedBy: 'requests' as const }) });
    const planRow = createRowPlanner(fallbackConfig, createProviderClients(fallbackConfig), undefined, gate);
    const planned = await planRow({ batchId: 'b', row: 3, id: 'r3', messages: [{ role: 'user', content: 'Hello' }], metadata: {} }, freshProgress());
    if ('waitMs' in planned) throw new Error('expected a plan');
    expect(planned.plan.routeReason).toBe('llm classifier skipped (classifier rate limited for 90 s, over limits.max_wait_ms); rules: no keyword matched -> simple');
    expect(planned.calls).toEqual([]);
  });

  it('takes the label when the answer names one', async () => {
    // The simulator echoes the prompt's start, so this answer contains "Coding".
    const result = await classifyWithLlm(deps(), classifierInput('Coding question: how do I reverse a list?', 64));
    expect(result).toMatchObject({ taskType: 'coding', reason: 'llm: coding', error: null, httpStatus: 200 });
  });

  it('returns the error and its status when the classifier model fails', async () => {
    sim.setOptions({ models: { 'tiny-labeler': { fail_status: 503 } } });
    try {
      const result = await classifyWithLlm(deps(), classifierInput('Anything at all', 8));
      expect(result.taskType).toBeNull();
      expect(result.answer).toBeNull();
      expect(result.httpStatus).toBe(503);
      expect(result.error?.message).toMatch(/failed with 503/);
      expect(result.reason).toMatch(/^llm call failed: /);
    } finally {
      sim.setOptions({ models: {} });
    }
  });

  it("holds in the budget what the classifier call can cost: a bound of its prompt whatever the provider's tokenizer (its bytes), and its max_tokens", async () => {
    const held: number[] = [];
    const price = config.models.classifier!.price!;
    const maxTokens = config.routing!.llm_classifier!.max_tokens;
    const { gate } = openRowGate({ reserveBudget: async (estimateNanos) => (held.push(estimateNanos), { ok: true, hold: null }) });
    const planRow = createRowPlanner(config, createProviderClients(config), undefined, gate);
    for (const content of ["What's the capital of France?", 'Write a sorting function in Rust, then explain its complexity. '.repeat(20)]) {
      const planned = await planRow({ batchId: 'b', row: 1, id: 'r1', messages: [{ role: 'user', content }], metadata: {} }, freshProgress());
      if ('waitMs' in planned) throw new Error('expected a plan');
      const call = planned.calls[0]!;
      // Its prompt never costs more than was held for it (a guess from the text's length was about 15% short of the
      // instructions). This simulator answers past max_tokens, which a provider does not: the answer is left out.
      const promptHeld = held.at(-1)! - callCostNanos(price, { input_tokens: 0, output_tokens: maxTokens })!;
      expect(callCostNanos(price, { input_tokens: call.input_tokens, output_tokens: 0 })!).toBeLessThanOrEqual(promptHeld);
    }
  });
});
