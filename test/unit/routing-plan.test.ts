import { createRequire } from 'node:module';
import { describe, expect, it, vi } from 'vitest';
import { parseConfig } from '../../src/config/load.ts';
import type { ChatMessage } from '../../src/input/row.ts';
import { routePlanSchema } from '../../src/execution/row-progress.ts';
import { noModelMessage, planRoute, type RouteInput } from '../../src/routing/route-plan.ts';
import {
  countMessageTokens,
  countPromptTokens,
  countTextTokens,
  estimateMessageTokens,
  maxMessageTokens,
  maxParamsTokens,
  MESSAGE_OVERHEAD_TOKENS,
  REPLY_PRIMING_TOKENS,
  requestFieldsText,
  tokenizerStatus,
} from '../../src/routing/token-count.ts';

const config = parseConfig(
  {
    providers: { sim: { base_url: 'http://127.0.0.1:9/v1' } },
    models: {
      flash: { provider: 'sim', context_window: 128_000, max_output_tokens: 8192 },
      pro: { provider: 'sim', context_window: 128_000 },
      qwen: { provider: 'sim', context_window: 32_000, max_output_tokens: 8192, fallbacks: ['glm'] },
      glm: { provider: 'sim' },
      small: { provider: 'sim', context_window: 4096, fallbacks: ['qwen', 'flash', 'qwen'] },
    },
    default_model: 'flash',
    routing: { routes: { complex: ['pro', 'flash'], creative: ['qwen', 'glm'] } },
  },
  'test',
);

const ask = (content: string): ChatMessage[] => [{ role: 'user', content }];

/** The library's own count of the whole text at once (no cuts), to compare with. */
function wholeTextCount(text: string): number {
  const encoding = createRequire(import.meta.url)('gpt-tokenizer/encoding/o200k_base') as typeof import('gpt-tokenizer/encoding/o200k_base');
  return encoding.countTokens(text, { disallowedSpecial: new Set() });
}

/** `length` characters drawn from `alphabet`, the same every run. */
function randomText(alphabet: string, length: number): string {
  let seed = 1;
  let text = '';
  for (let i = 0; i < length; i++) {
    seed = (seed * 1_103_515_245 + 12_345) >>> 0;
    text += alphabet[(seed >>> 16) % alphabet.length];
  }
  return text;
}

/** A countTokens that records its calls and answers a fixed number. */
function fixedCount(tokens: number, fieldTokens = 0) {
  const calls: number[] = [];
  return {
    calls,
    count: (messages: readonly ChatMessage[], fieldsText: string) => {
      calls.push(messages.length);
      return { messages: tokens, fields: fieldsText === '' ? 0 : fieldTokens };
    },
  };
}

function plan(input: Partial<RouteInput>, tokens = 10, fieldTokens = 0) {
  const counter = fixedCount(tokens, fieldTokens);
  const result = planRoute({ messages: ask('hi'), maxTokens: 1024, maxTokensFrom: "the row's max_tokens", taskType: 'simple', routeReason: 'rules: no keyword matched -> simple', ...input }, config, counter.count);
  return { result, countCalls: counter.calls.length };
}

describe('planRoute: where the chain comes from', () => {
  it('follows routing.routes for the task type, keeping the classifier reason', () => {
    const { result } = plan({ taskType: 'complex', routeReason: 'rules: complex (analyze, strategy; score 2)' });
    expect(result).toMatchObject({ taskType: 'complex', routeReason: 'rules: complex (analyze, strategy; score 2)', chain: ['pro', 'flash'], skipped: [] });
  });

  it('uses [default_model] for a type without a route', () => {
    expect(plan({ taskType: 'coding' }).result.chain).toEqual(['flash']);
    expect(plan({ taskType: 'simple' }).result.chain).toEqual(['flash']);
  });

  it("follows default_model's own fallbacks for a type without a route, as for a row pinned to it", () => {
    const withFallbacks = parseConfig({ ...config, default_model: 'qwen', routing: undefined }, 'test');
    const route = (taskType: string) => planRoute({ messages: ask('hi'), maxTokens: 1024, maxTokensFrom: "the row's max_tokens", taskType, routeReason: 'r' }, withFallbacks, () => ({ messages: 10, fields: 0 })).chain;
    expect(route('simple')).toEqual(['qwen', 'glm']);
  });

  it("uses a row's own model with its fallbacks, ahead of a pinned model", () => {
    expect(plan({ rowModel: 'qwen', pinnedModel: 'pro', taskType: 'complex' }).result).toMatchObject({ chain: ['qwen', 'glm'], routeReason: 'row model "qwen"', taskType: 'complex' });
  });

  it('says a model put to the row by --compare is a compared model, not the row\'s own', () => {
    expect(plan({ rowModel: 'qwen', compared: true }).result).toMatchObject({ chain: ['qwen', 'glm'], routeReason: 'compared model "qwen"' });
  });

  it('uses a pinned model (--model / --route) with its fallbacks, without duplicates', () => {
    expect(plan({ pinnedModel: 'pro', taskType: 'creative' }).result).toMatchObject({ chain: ['pro'], routeReason: 'pinned model "pro"' });
    expect(plan({ pinnedModel: 'small' }).result.chain).toEqual(['small', 'qwen', 'flash']);
  });

  it('pins an A/B arm\'s rows to its model, and routes the arm "auto" by task type, saying which arm it was', () => {
    expect(plan({ abArm: 'qwen', taskType: 'complex' }).result).toMatchObject({ chain: ['qwen', 'glm'], routeReason: 'A/B arm "qwen"' });
    expect(plan({ abArm: 'auto', taskType: 'complex', routeReason: 'rules: complex (analyze, strategy; score 2)' }).result).toMatchObject({
      chain: ['pro', 'flash'],
      routeReason: 'A/B arm "auto": rules: complex (analyze, strategy; score 2)',
    });
    expect(plan({ abArm: 'auto', rowModel: 'glm' }).result).toMatchObject({ chain: ['glm'], routeReason: 'row model "glm"' });
  });

  it('skips a model that is not configured', () => {
    expect(plan({ rowModel: 'nope' }).result).toMatchObject({ chain: [], skipped: [{ model: 'nope', reason: 'not a configured model' }] });
  });
});

describe('planRoute: context windows', () => {
  it('does not count tokens when no model in the chain has a context window', () => {
    const { result, countCalls } = plan({ pinnedModel: 'glm', messages: ask('x'.repeat(1_000_000)) });
    expect(countCalls).toBe(0);
    expect(result).toMatchObject({ chain: ['glm'], promptTokensCounted: false, promptTokens: estimateMessageTokens(ask('x'.repeat(1_000_000))) });
  });

  it('does not count tokens when even the byte bound fits every window', () => {
    const { result, countCalls } = plan({ taskType: 'creative', messages: ask('A short poem, please.') });
    expect(countCalls).toBe(0);
    expect(result).toMatchObject({ chain: ['qwen', 'glm'], promptTokensCounted: false });
  });

  it('drops one model whose window is too small and keeps the rest', () => {
    const { result, countCalls } = plan({ taskType: 'creative', maxTokens: 2048, messages: ask('x'.repeat(40_000)) }, 31_000);
    expect(countCalls).toBe(1);
    expect(result).toMatchObject({
      chain: ['glm'],
      skipped: [{ model: 'qwen', reason: 'context window 32000 < 31000 prompt + 2048 output tokens', contextWindow: 32_000 }],
      promptTokens: 31_000,
      promptTokensCounted: true,
    });
  });

  it("reserves min(max_tokens, the model's max_output_tokens) for the answer", () => {
    const long = ask('x'.repeat(40_000));
    expect(plan({ taskType: 'creative', maxTokens: 20_000, messages: long }, 23_000).result.chain).toEqual(['qwen', 'glm']); // 23000 + 8192 <= 32000
    expect(plan({ taskType: 'creative', maxTokens: 20_000, messages: long }, 24_000).result.skipped).toEqual([
      { model: 'qwen', reason: 'context window 32000 < 24000 prompt + 8192 output tokens', at: 0, contextWindow: 32_000 },
    ]);
    // pro has no max_output_tokens: the whole max_tokens is reserved.
    expect(plan({ pinnedModel: 'pro', maxTokens: 20_000, messages: ask('y'.repeat(200_000)) }, 110_000).result.skipped).toEqual([
      { model: 'pro', reason: 'context window 128000 < 110000 prompt + 20000 output tokens', at: 0, contextWindow: 128_000 },
    ]);
  });

  it('leaves an empty chain when every model is skipped, with a message naming each and saying to shorten the prompt when it alone is too long', () => {
    const { result } = plan({ pinnedModel: 'small', maxTokens: 1000, messages: ask('z'.repeat(600_000)) }, 200_000);
    expect(result.chain).toEqual([]);
    expect(result.skipped.map((skip) => skip.model)).toEqual(['small', 'qwen', 'flash']);
    expect(noModelMessage(result)).toBe(
      'no model can take this prompt (200000 tokens): small: context window 4096 < 200000 prompt + 1000 output tokens; ' +
        'qwen: context window 32000 < 200000 prompt + 1000 output tokens; flash: context window 128000 < 200000 prompt + 1000 output tokens. ' +
        'The prompt alone leaves no room for an answer in any of these context windows: shorten it, or add a model with a larger context window to models.small.fallbacks',
    );
  });

  it('names the config key that lists the models, to add a larger one to, not "the chain" (QA: a judge was told of a chain it has not)', () => {
    const huge = ask('z'.repeat(600_000));
    // Pinned (a row's model, --model, an A/B arm; the judge, a synthesizer and an ensemble member are pinned calls): that model's fallbacks.
    expect(noModelMessage(plan({ pinnedModel: 'small', messages: huge }, 200_000).result)).toMatch(/, or add a model with a larger context window to models\.small\.fallbacks$/);
    expect(noModelMessage(plan({ rowModel: 'pro', messages: huge }, 200_000).result)).toMatch(/to models\.pro\.fallbacks$/);
    // Routed: the task type's route, or default_model's fallbacks for a type without one.
    expect(noModelMessage(plan({ taskType: 'complex', messages: huge }, 200_000).result)).toMatch(/to routing\.routes\.complex$/);
    expect(noModelMessage(plan({ taskType: 'coding', messages: huge }, 200_000).result)).toMatch(/to models\.flash\.fallbacks$/);
    // A plan saved in a parked row's progress keeps it; one saved before it was kept says "the chain", as it did.
    const saved = plan({ taskType: 'complex', maxTokens: 200_000 }, 9).result;
    expect(routePlanSchema.parse(JSON.parse(JSON.stringify(saved))).chainFrom).toBe('routing.routes.complex');
    expect(noModelMessage(routePlanSchema.parse({ ...saved, chainFrom: undefined }))).toMatch(/, or add a model with a larger context window to the chain$/);
  });

  it("says the answer's max_tokens is what does not fit when the prompt alone does, and what to set (QA: a 9-token prompt was blamed)", () => {
    const { result } = plan({ pinnedModel: 'pro', maxTokens: 200_000, maxTokensFrom: "the row's max_tokens" }, 9);
    expect(result.chain).toEqual([]);
    expect(noModelMessage(result)).toBe(
      'no model has room for this prompt (9 tokens) and its answer: pro: context window 128000 < 9 prompt + 200000 output tokens. ' +
        "The prompt fits pro's context window, the answer's max_tokens does not: set the row's max_tokens (or models.pro.max_output_tokens) to 127991 or less, " +
        'or add a model with a larger context window to models.pro.fallbacks',
    );
    // small's window cannot hold the prompt, qwen's and flash's can beside less of an answer: flash's has the most room.
    const mixed = plan({ pinnedModel: 'small', maxTokens: 10_000, maxTokensFrom: "the config's max_tokens" }, 125_000).result;
    expect(mixed.chain).toEqual([]);
    expect(noModelMessage(mixed)).toMatch(/^no model has room for this prompt \(125000 tokens\) and its answer: small: .*\. The prompt fits flash's context window, the answer's max_tokens does not: set the config's max_tokens \(or models\.flash\.max_output_tokens\) to 3000 or less, or add/);
    // A plan saved in a parked row's progress (a synthesis's, checkpointed before its call) keeps what the advice needs.
    expect(noModelMessage(routePlanSchema.parse(JSON.parse(JSON.stringify(result))))).toBe(noModelMessage(result));
    // A chain empty for another reason than a window is said as before.
    expect(noModelMessage(plan({ rowModel: 'nope' }).result)).toMatch(/^no model can take this prompt \(\d+ tokens\): nope: not a configured model$/);
  });

  it("counts the request fields sent beside the messages as prompt: a response_format's schema that a window cannot hold skips the model, named (QA: it was sent, and refused 400)", () => {
    // A short prompt whose schema's bytes pass small's window: counted, it does not fit beside the answer.
    const params = { response_format: { type: 'json_schema', json_schema: { name: 'form', schema: { description: 'x'.repeat(5000) } } } };
    const { result, countCalls } = plan({ rowModel: 'small', params }, 10, 3500);
    expect(countCalls).toBe(1);
    expect(result).toMatchObject({
      chain: ['qwen', 'flash'],
      skipped: [{ model: 'small', reason: 'context window 4096 < 3510 prompt (3500 of them its response_format) + 1024 output tokens', contextWindow: 4096 }],
      promptTokens: 3510,
      fields: { names: ['response_format'], tokens: 3500 },
    });
    // None with room: the row fails naming the fields, which are what to shorten; the plan saved in a row's progress keeps them.
    const bigSchema = { response_format: { type: 'json_schema', json_schema: { name: 'form', schema: { description: 'x'.repeat(130_000) } } } };
    const pinned = plan({ pinnedModel: 'pro', params: { seed: 1, ...bigSchema }, maxTokens: 100 }, 10, 130_000).result;
    expect(pinned.chain).toEqual([]);
    const message =
      'no model can take this prompt (130010 tokens, 130000 of them its seed and response_format): pro: context window 128000 < 130010 prompt (130000 of them its seed and response_format) + 100 output tokens. ' +
      'The prompt alone leaves no room for an answer in that context window: shorten it or its seed and response_format, or add a model with a larger context window to models.pro.fallbacks';
    expect(noModelMessage(pinned)).toBe(message);
    expect(noModelMessage(routePlanSchema.parse(JSON.parse(JSON.stringify(pinned))))).toBe(message);
    // Not counted (no window to check), the fields are estimated into the prompt as the messages are.
    const estimated = plan({ pinnedModel: 'glm', params }).result;
    expect(estimated.promptTokensCounted).toBe(false);
    expect(estimated.promptTokens).toBeGreaterThan(estimateMessageTokens(ask('hi')) + 1000);
  });

  it('has not loaded the tokenizer so far: nothing above needed a real count', () => {
    expect(tokenizerStatus()).toEqual({ encoding: 'o200k_base', loaded: false, loadMs: null });
  });

  it('works with the real tokenizer, loading it on first use', () => {
    const result = planRoute(
      { messages: ask('hello world '.repeat(3000)), pinnedModel: 'small', maxTokens: 512, maxTokensFrom: "the row's max_tokens", taskType: 'simple', routeReason: 'x' },
      config,
      countPromptTokens,
    );
    expect(result.promptTokensCounted).toBe(true);
    expect(result.promptTokens).toBeGreaterThan(5000);
    expect(result.promptTokens).toBeLessThan(7000);
    expect(result.chain).toEqual(['qwen', 'flash']);
    expect(result.skipped[0]?.model).toBe('small');
    expect(tokenizerStatus().loaded).toBe(true);
    expect(tokenizerStatus().loadMs).toBeGreaterThan(0);
  });
});

describe('token counting', () => {
  it('gives plausible counts for English', () => {
    expect(countTextTokens('The quick brown fox jumps over the lazy dog.')).toBe(10);
    const text = 'Analyze the competitive landscape of AI API providers in 2026 and recommend a strategy for a startup. ';
    const tokens = countTextTokens(text.repeat(50));
    expect(tokens).toBeGreaterThan((text.length * 50) / 6);
    expect(tokens).toBeLessThan((text.length * 50) / 3);
  });

  it('gives plausible counts for Chinese and Japanese (about one token per one or two characters)', () => {
    const chinese = '请分析人工智能服务提供商的竞争格局，并为希望进入市场的初创公司推荐一种战略。';
    const japanese = '東京は日本の首都で、世界で最も人口の多い都市圏の一つです。';
    for (const text of [chinese, japanese]) {
      const tokens = countTextTokens(text);
      expect(tokens).toBeGreaterThan(text.length * 0.3);
      expect(tokens).toBeLessThanOrEqual(text.length * 1.5);
    }
    // Far more tokens per character than English, which a chars/4 estimate missed.
    expect(countTextTokens(chinese)).toBeGreaterThan(Math.ceil(chinese.length / 4));
  });

  it('estimates without the tokenizer at no less than the count for Chinese and Japanese, and close to it for English', () => {
    const ask = (content: string) => [{ role: 'user' as const, content }];
    for (const text of ['请分析人工智能服务提供商的竞争格局，并为希望进入市场的初创公司推荐一种战略。', '東京は日本の首都で、世界で最も人口の多い都市圏の一つです。']) {
      expect(estimateMessageTokens(ask(text))).toBeGreaterThanOrEqual(countMessageTokens(ask(text)));
    }
    const english = 'Analyze the competitive landscape of AI API providers in 2026 and recommend a strategy for a startup. '.repeat(20);
    const ratio = estimateMessageTokens(ask(english)) / countMessageTokens(ask(english));
    expect(ratio).toBeGreaterThan(0.8);
    expect(ratio).toBeLessThan(1.5);
  });

  it('adds per-message and reply overheads, and treats special-token text as text', () => {
    const messages: ChatMessage[] = [
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'hello <|endoftext|>' },
    ];
    const expected = countTextTokens('Be brief.') + countTextTokens('hello <|endoftext|>') + 2 * MESSAGE_OVERHEAD_TOKENS + REPLY_PRIMING_TOKENS;
    expect(countMessageTokens(messages)).toBe(expected);
    expect(countMessageTokens([])).toBe(REPLY_PRIMING_TOKENS);
    expect(countTextTokens('')).toBe(0);
  });

  it('counts long text without whitespace in linear time, a token or so over per cut', () => {
    const dna = randomText('acgt', 200_000);
    const started = performance.now();
    // Quadratic before: 40-70 s each for the first two, blocking the event loop all that time.
    const counts = [countTextTokens('x'.repeat(300_000)), countTextTokens(dna), countTextTokens(' '.repeat(100_000)), countTextTokens('\n'.repeat(100_000))];
    expect(performance.now() - started).toBeLessThan(3000);
    expect(counts.every((count) => count > 0)).toBe(true);
    // A run is cut every 256 characters: each cut may add about a token to the exact count.
    const sample = dna.slice(0, 5000);
    const exact = wholeTextCount(sample);
    expect(countTextTokens(sample)).toBeGreaterThanOrEqual(exact);
    expect(countTextTokens(sample)).toBeLessThanOrEqual(exact + Math.ceil(sample.length / 256));
  });

  it('gives the exact count of text cut only where its pre-tokens split: at whitespace, not between punctuation and a line break', () => {
    const parts = ['the', 'DON\'T', "it's", 'café', 'e\u0301', '東京', '请分析', '🎉', '𝐀', '12345', '3.14', '.', '!?', '/', "'", '<|endoftext|>', 'x=1;', '\u00a0', '\u3000', '\t', ' ', ' ', '  ', '\n', '\n\n', '\r\n', ' \n', '.\n', ':\n', '\u2028', 'привет'];
    for (let trial = 0; trial < 300; trial++) {
      const text = Array.from({ length: 100 + (trial % 200) }, (_, k) => parts[(k * 7919 + trial * 104_729) % 9973 % parts.length]).join('');
      expect(countTextTokens(text), JSON.stringify(text)).toBe(wholeTextCount(text));
    }
  });

  it('never counts more than the UTF-8 byte bound', () => {
    for (const text of ['plain English text', '中文文本测试', 'emoji 🎉🎉 mixed 混合', 'x'.repeat(5000), '🎉'.repeat(3000)]) {
      expect(countMessageTokens(ask(text))).toBeLessThanOrEqual(maxMessageTokens(ask(text)));
    }
  });
});

describe("a row's request fields", () => {
  it('are serialized once for its route plan (bound, count, estimate) and its budget hold, not each time asked (review: a 69 KB schema took ~1.5 ms of event loop per row)', () => {
    let serialized = 0;
    const schema = { type: 'object', properties: Object.fromEntries(Array.from({ length: 500 }, (_, i) => [`field_${i}`, { type: 'string', description: 'x'.repeat(100) }])) };
    const format = { type: 'json_schema', json_schema: { name: 'big', schema } };
    // toJSON counts each serialization of the fields and changes nothing in the text.
    const params = { response_format: { toJSON: () => (serialized++, format) } };
    const texts: string[] = [];
    const counted = planRoute(
      { messages: ask('hi'), params, rowModel: 'small', maxTokens: 100, maxTokensFrom: "the row's max_tokens", taskType: 'simple', routeReason: 'r' },
      config,
      (_messages, fieldsText) => (texts.push(fieldsText), { messages: 10, fields: 20 }),
    );
    expect(counted.fields).toEqual({ names: ['response_format'], tokens: 20 });
    const estimated = planRoute({ messages: ask('hi'), params, maxTokens: 100, maxTokensFrom: "the row's max_tokens", taskType: 'simple', routeReason: 'r' }, config, () => {
      throw new Error('no count needed');
    });
    expect(estimated.fields?.names).toEqual(['response_format']);
    const bound = maxParamsTokens(params);
    expect(texts).toEqual([JSON.stringify({ response_format: format })]);
    expect(bound).toBe(Buffer.byteLength(texts[0]!, 'utf8'));
    expect(serialized).toBe(1);
    // Rows without fields have none to serialize.
    expect([maxParamsTokens(undefined), requestFieldsText(undefined)]).toEqual([0, '']);
  });

  it("are estimated once for all the row's plans, as an ensemble's members and synthesis each plan (review: the estimate scanned an 88 KB schema each time)", () => {
    const size = 50_000;
    const params = { response_format: { type: 'json_schema', json_schema: { name: 'big', schema: { type: 'string', description: 'x'.repeat(size) } } } };
    const input = { messages: ask('hi'), params, maxTokens: 100, maxTokensFrom: "the row's max_tokens", taskType: 'simple', routeReason: 'r' };
    const noCount = () => {
      throw new Error('no count needed');
    };
    // The estimate reads each UTF-16 unit of the fields' JSON with charCodeAt.
    const scan = vi.spyOn(String.prototype, 'charCodeAt');
    let plans: ReturnType<typeof planRoute>[];
    let reads: number;
    try {
      plans = [1, 2, 3].map(() => planRoute(input, config, noCount));
      reads = scan.mock.calls.length;
    } finally {
      scan.mockRestore();
    }
    expect(plans.map((plan) => plan.fields?.tokens)).toEqual(Array(3).fill(Math.ceil(JSON.stringify(params).length / 4)));
    expect(reads).toBeGreaterThan(size);
    expect(reads).toBeLessThan(size * 1.5);
  });
});
