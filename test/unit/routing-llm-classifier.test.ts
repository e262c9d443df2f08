import { describe, expect, it } from 'vitest';
import type { ModelAnswer, ModelRequest } from '../../src/models/call-model.ts';
import { ModelCallError } from '../../src/models/model-error.ts';
import { DEFAULT_TASK_TYPE_DESCRIPTIONS } from '../../src/routing/default-task-types.ts';
import { classifierMessages, classifyWithLlm, MAX_PROMPT_CHARS, parseTaskLabel } from '../../src/routing/llm-classifier.ts';

const LABELS = ['complex', 'coding', 'moderate', 'creative', 'simple'];

function answering(output: string) {
  const requests: ModelRequest[] = [];
  const call = async (request: ModelRequest): Promise<ModelAnswer> => {
    requests.push(request);
    return { output, usage: { input_tokens: 120, output_tokens: 2 }, usageEstimated: false, countingMs: 0, finishReason: 'stop', requestId: 'req_1', httpStatus: 200, ttftMs: null };
  };
  return { requests, call };
}

const input = { text: 'Write a Python function', taskTypes: LABELS, model: 'cheap', upstream: 'cheap-upstream', maxTokens: 8 };

describe('parseTaskLabel', () => {
  it('takes the first label named, case-insensitively, as a whole word', () => {
    expect(parseTaskLabel('coding', LABELS)).toBe('coding');
    expect(parseTaskLabel('  Coding.\n', LABELS)).toBe('coding');
    expect(parseTaskLabel('Label: COMPLEX', LABELS)).toBe('complex');
    expect(parseTaskLabel('creative, or maybe simple', LABELS)).toBe('creative');
    expect(parseTaskLabel('decoding', LABELS)).toBeNull();
    expect(parseTaskLabel('I cannot tell', LABELS)).toBeNull();
    expect(parseTaskLabel('', LABELS)).toBeNull();
  });

  it('prefers the longer label at the same position and ignores a <think> block', () => {
    expect(parseTaskLabel('code-review', ['code', 'code-review'])).toBe('code-review');
    expect(parseTaskLabel('<think>simple or coding? it has code</think>coding', LABELS)).toBe('coding');
    expect(parseTaskLabel('<think>this looks simple', LABELS)).toBeNull();
  });
});

describe('classifierMessages', () => {
  it('lists the labels (with meanings when given) in the system message and the prompt as the user message', () => {
    const messages = classifierMessages({ ...input, descriptions: DEFAULT_TASK_TYPE_DESCRIPTIONS });
    expect(messages).toHaveLength(2);
    expect(messages[0]?.role).toBe('system');
    expect(messages[0]?.content).toContain('exactly one of these labels');
    expect(messages[0]?.content).toContain(`- coding: ${DEFAULT_TASK_TYPE_DESCRIPTIONS.coding}`);
    expect(messages[0]?.content).toContain('23 characters long.');
    expect(messages[1]).toEqual({ role: 'user', content: 'Write a Python function' });
    expect(classifierMessages({ text: 'x', taskTypes: ['a', 'b'] })[0]?.content).toMatch(/- a\n- b$/);
  });

  it('shows a long prompt as its start and end, and says how long it is', () => {
    const text = `${'a'.repeat(10_000)}${'b'.repeat(10_000)}`;
    const [system, user] = classifierMessages({ text, taskTypes: LABELS });
    expect(system?.content).toContain('20000 characters long (its middle is left out here)');
    expect(user?.content.length).toBeLessThan(MAX_PROMPT_CHARS + 100);
    expect(user?.content.startsWith('aaa')).toBe(true);
    expect(user?.content.endsWith('bbb')).toBe(true);
    expect(user?.content).toContain('[... 16000 characters left out ...]');
  });
});

describe('classifyWithLlm', () => {
  it('asks at temperature 0 with the configured model and max_tokens, and returns the label and the call facts', async () => {
    const fake = answering('Coding');
    const result = await classifyWithLlm({ call: fake.call }, input);
    expect(fake.requests).toHaveLength(1);
    expect(fake.requests[0]).toMatchObject({ model: 'cheap', upstream: 'cheap-upstream', temperature: 0, maxTokens: 8 });
    expect(result).toMatchObject({ taskType: 'coding', reason: 'llm: coding', error: null, httpStatus: 200 });
    expect(result.answer?.usage).toEqual({ input_tokens: 120, output_tokens: 2 });
    expect(result.latencyMs).toBeGreaterThanOrEqual(0);
    expect(Date.parse(result.startedAt)).not.toBeNaN();
  });

  it('returns null with the answer (for its cost record) when the answer names no label', async () => {
    const result = await classifyWithLlm({ call: answering('It depends on the context of the question').call }, input);
    expect(result).toMatchObject({ taskType: null, error: null, httpStatus: 200, reason: 'llm answer "It depends on the context of the question" names no task type' });
    expect(result.answer?.usage.input_tokens).toBe(120);
  });

  it('returns null with the error and its HTTP status when the call fails', async () => {
    const call = async (): Promise<ModelAnswer> => {
      throw new ModelCallError({ code: 'rate_limited', model: 'cheap', status: 429, retryable: true, message: 'model "cheap" is rate limited (429)' });
    };
    const result = await classifyWithLlm({ call }, input);
    expect(result).toMatchObject({ taskType: null, answer: null, httpStatus: 429, reason: 'llm call failed: model "cheap" is rate limited (429)' });
    expect(result.error).toBeInstanceOf(ModelCallError);

    const odd = await classifyWithLlm({ call: () => Promise.reject('boom') }, input);
    expect(odd).toMatchObject({ taskType: null, httpStatus: null, reason: 'llm call failed: boom' });
    expect(odd.error).toBeInstanceOf(Error);
  });
});
