import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.ts';
import { callModel } from '../../src/models/call-model.ts';
import { createProviderClients } from '../../src/models/provider-clients.ts';
import { planRouteCountingLater } from '../../src/routing/route-plan.ts';
import { countPromptTokens, countTextTokens, tokenizerStatus } from '../../src/routing/token-count.ts';
import { countPromptTokensOffThread, countTextsOffThread, tokenThreadStatus } from '../../src/routing/token-count-thread.ts';
import { startSimulator, type Simulator } from '../../src/sim/server.ts';

// The tests run in order: the last one loads the tokenizer in this thread too, to compare the counts.
describe('token counts with calls in flight (token-count-thread.ts)', () => {
  let sim: Simulator;
  beforeAll(async () => {
    sim = await startSimulator({ port: 0, latency_ms: 20, models: { bare: { omit_usage: true } } });
  });
  afterAll(() => sim.close());

  const config = () =>
    parseConfig(
      { providers: { p: { base_url: sim.url } }, models: { m: { provider: 'p', upstream: 'bare' }, small: { provider: 'p', context_window: 2000, fallbacks: ['m'] } }, default_model: 'm' },
      'test',
    );
  const messages = [{ role: 'user' as const, content: 'Tell me about the tokenizer' }];

  it('counts an answer that came without usage with the tokenizer loaded beside the event loop, which goes on meanwhile (QA: the load blocked it 0.6-2 s, and every call in flight)', async () => {
    let last = performance.now();
    let longestGap = 0;
    const ticker = setInterval(() => {
      const now = performance.now();
      longestGap = Math.max(longestGap, now - last);
      last = now;
    }, 5);
    try {
      const answer = await callModel(createProviderClients(config()).get('p')!, { model: 'm', upstream: 'bare', messages, temperature: 0, maxTokens: 100, stream: false });
      expect(answer.usageEstimated).toBe(true);
      expect(answer.usage.input_tokens).toBeGreaterThan(7);
      expect(answer.usage.output_tokens).toBeGreaterThan(0);
      // A few more ticks: a stall at the end of the call would otherwise end the test before the ticker saw it.
      await new Promise((resolve) => setTimeout(resolve, 30));
    } finally {
      clearInterval(ticker);
    }
    expect(tokenizerStatus().loaded).toBe(false);
    const { started, loadMs } = tokenThreadStatus();
    expect(started).toBe(true);
    expect(loadMs).toBeGreaterThan(0);
    // The loop went on while the thread loaded: no stall as long as the load (which took 0.3 s at least).
    expect(longestGap).toBeLessThan(loadMs!);
  });

  it('counts a prompt measured against a context window in the thread', async () => {
    const plan = await planRouteCountingLater(
      { messages: [{ role: 'user', content: 'lorem ipsum '.repeat(1000) }], pinnedModel: 'small', maxTokens: 100, maxTokensFrom: "the row's max_tokens", taskType: 'simple', routeReason: 'test' },
      config(),
      countPromptTokensOffThread,
    );
    expect(plan.promptTokensCounted).toBe(true);
    expect(plan.chain).toEqual(['m']);
    expect(plan.skipped[0]).toMatchObject({ model: 'small', contextWindow: 2000 });
    expect(tokenizerStatus().loaded).toBe(false);
  });

  it('counts as token-count.ts does in this thread, long runs and special-token text included', async () => {
    const texts = ['', 'The quick brown fox jumps over the lazy dog.', '请分析人工智能服务提供商的竞争格局。', 'ACGT'.repeat(5000), 'a<|endoftext|>b', `${'='.repeat(700)}\n${'word '.repeat(400)}`];
    const counts = await countTextsOffThread(texts);
    const chat = [{ role: 'system' as const, content: texts[1]! }, { role: 'user' as const, content: texts[3]! }];
    const chatCount = await countPromptTokensOffThread(chat, texts[2]!);
    expect(tokenizerStatus().loaded).toBe(false);
    expect(counts).toEqual(texts.map(countTextTokens));
    expect(chatCount).toEqual(countPromptTokens(chat, texts[2]!));
  });
});
