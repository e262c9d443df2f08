import { describe, expect, it } from 'vitest';
import { planChat, type ChatEnv } from '../../src/sim/chat.ts';
import { simOptionsFromCli } from '../../src/sim/cli-options.ts';
import { parseSimOptions, tpmCounting, type SimOptionsInput } from '../../src/sim/options.ts';
import { RateLimiter } from '../../src/sim/rate-limit.ts';
import { StatsCollector } from '../../src/sim/stats.ts';

/** The simulator's tpm counting, 'requested' (prompt + max_tokens) vs 'usage' (prompt + the actual answer). */

const T0 = 1_800_000_000_000;
const body = { model: 'm', messages: [{ role: 'user', content: 'What is the capital of France?' }], max_tokens: 1000 };

function env(input: SimOptionsInput): ChatEnv {
  return { options: parseSimOptions(input), limiter: new RateLimiter(), stats: new StatsCollector(), random: () => 0.5, now: T0 };
}

function answerTokens(plan: ReturnType<typeof planChat>): number {
  if (plan.kind !== 'answer') throw new Error(`expected an answer, got ${plan.answer.status}`);
  return plan.promptTokens + plan.answer.completionTokens;
}

describe('simulator tpm_counts', () => {
  it("defaults to 'requested' and lets a model override the top-level setting", () => {
    expect(tpmCounting(parseSimOptions({}), 'm')).toBe('requested');
    const options = parseSimOptions({ tpm_counts: 'usage', models: { strict: { tpm_counts: 'requested' } } });
    expect(tpmCounting(options, 'm')).toBe('usage');
    expect(tpmCounting(options, 'strict')).toBe('requested');
    expect(() => parseSimOptions({ tpm_counts: 'tokens' })).toThrow(/tpm_counts/);
    expect(simOptionsFromCli({ tpmCounts: 'usage' }).tpm_counts).toBe('usage');
    expect(() => simOptionsFromCli({ tpmCounts: 'all' })).toThrow(/--tpm-counts/);
  });

  it("'requested' charges prompt + max_tokens: a 1000-token request fills a tpm of 1100", () => {
    const requested = env({ tpm: 1100 });
    const first = planChat(requested, body);
    expect(answerTokens(first)).toBeLessThan(200);
    if (first.kind === 'answer') expect(Number(first.headers['x-ratelimit-remaining-tokens'])).toBe(1100 - 1000 - first.promptTokens);
    const second = planChat(requested, body);
    expect(second.kind).toBe('error');
    if (second.kind === 'error') expect(second.answer.status).toBe(429);
    expect(requested.stats.snapshot().models.m?.peak_tpm).toBe(2 * (1000 + (first.kind === 'answer' ? first.promptTokens : 0)));
  });

  it("'usage' charges prompt + the answer's actual tokens, so the same requests fit", () => {
    const usage = env({ tpm: 1100, tpm_counts: 'usage' });
    const first = planChat(usage, body);
    const used = answerTokens(first);
    if (first.kind === 'answer') expect(Number(first.headers['x-ratelimit-remaining-tokens'])).toBe(1100 - used);
    const fits = Math.floor(1100 / used);
    for (let i = 1; i < fits; i++) expect(planChat(usage, body).kind).toBe('answer');
    const over = planChat(usage, body);
    expect(over.kind).toBe('error');
    if (over.kind === 'error') expect(over.answer.body.error.type).toBe('tokens');
    expect(usage.stats.snapshot().models.m?.peak_tpm).toBe((fits + 1) * used);
  });
});
