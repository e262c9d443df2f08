import { describe, expect, it } from 'vitest';
import { pastRateLimitText, rateLimitPaceLines } from '../../src/batch/rate-limit-pace.ts';
import { parseConfig } from '../../src/config/load.ts';
import type { Report } from '../../src/output/report-json.ts';

const config = parseConfig(
  {
    providers: { p: { base_url: 'http://127.0.0.1:8787/v1' } },
    models: { flash: { provider: 'p', rpm: 500 }, pro: { provider: 'p', rpm: 6000 }, free: { provider: 'p' } },
    default_model: 'flash',
  },
  'switchyard.yaml',
);
/** `calls`: each model's calls this run; `earlier`: those earlier runs of the batch made. */
const report = (elapsedMs: number, calls: Record<string, number>, earlier: Record<string, number> = {}) =>
  ({
    totals: { elapsed_ms: elapsedMs, rows: 300, rows_this_run: 300 },
    models: Object.fromEntries(Object.entries({ ...earlier, ...calls }).map(([name]) => [name, { calls: (calls[name] ?? 0) + (earlier[name] ?? 0), calls_this_run: calls[name] ?? 0 }])),
  }) as unknown as Report;

describe('what a run says of the rate limits that set its pace', () => {
  it('names the models whose calls came near their rpm (QA: 8 rows/s with --concurrency 32 said nothing of rpm 500)', () => {
    expect(rateLimitPaceLines(report(36_000, { flash: 290, pro: 10, free: 400 }), config)).toEqual([
      'Rate limits: flash (483 calls a minute, models.flash.rpm 500) set the pace: rows waited for their slots, so --concurrency could not speed them up. Raise the rpm if your provider allows more.',
    ]);
  });

  it('says nothing of models well under their rpm, of short runs, or of an earlier run\'s calls', () => {
    expect(rateLimitPaceLines(report(36_000, { flash: 100, pro: 200 }), config)).toEqual([]);
    expect(rateLimitPaceLines(report(5_000, { flash: 290 }), config)).toEqual([]);
    // A resume that only judged the rows (QA): the answers' 290 calls were the first run's.
    expect(rateLimitPaceLines(report(36_000, { pro: 20 }, { flash: 290 }), config)).toEqual([]);
    expect(rateLimitPaceLines(report(36_000, { flash: 290 }, { flash: 1000 }), config)[0]).toContain('flash (483 calls a minute');
  });

  it("says when this run's calls waited on a model's limits that another batch's calls used (QA: shared through Redis, the other batch set the pace, and the summary said nothing)", () => {
    const waited = (elapsedMs: number, calls: Record<string, number>, waits: Record<string, { calls: number; wait_ms: number }>) => {
      const base = report(elapsedMs, calls);
      for (const [name, wait] of Object.entries(waits)) Object.assign(base.models[name]!, { limit_waits_this_run: wait });
      return base;
    };
    // 100 calls in 60 s is a fifth of flash's rpm 500: its own rate shows nothing, its waits do.
    expect(rateLimitPaceLines(waited(60_000, { flash: 100, pro: 50 }, { flash: { calls: 96, wait_ms: 1_500_000 }, pro: { calls: 3, wait_ms: 900 } }), config)).toEqual([
      "Rate limits: flash (96 of 100 calls waited, 15.6 s on average, under models.flash.rpm 500, this batch's own at 100 a minute): every batch and worker on the same endpoint shares these limits (through Redis), and other calls took slots too; --concurrency cannot speed these rows up. Raise the limit if the provider allows more, or run the batches one after another.",
    ]);
    // A short run's rate is not told, its waits are; a model that set the pace itself is said once, as such.
    expect(rateLimitPaceLines(waited(5_000, { flash: 20 }, { flash: { calls: 20, wait_ms: 40_000 } }), config)).toEqual([expect.stringMatching(/^Rate limits: flash \(20 of 20 calls waited, 2\.0 s on average, under models\.flash\.rpm 500\): every batch and worker on the same endpoint shares these limits/)]);
    expect(rateLimitPaceLines(waited(36_000, { flash: 290 }, { flash: { calls: 290, wait_ms: 600_000 } }), config)).toEqual([expect.stringContaining('flash (483 calls a minute, models.flash.rpm 500) set the pace')]);
  });

  it("does not say other calls took the slots when this batch's own may have used them: a tpm, a 429's cooldown, a run too short to tell its rate", () => {
    const tpmConfig = parseConfig(
      { providers: { p: { base_url: 'http://127.0.0.1:8787/v1' } }, models: { big: { provider: 'p', tpm: 40_000 }, flaky: { provider: 'p' }, flash: { provider: 'p', rpm: 500 } }, default_model: 'big' },
      'switchyard.yaml',
    );
    const waited = (elapsedMs: number, calls: Record<string, number>, waits: Record<string, { calls: number; wait_ms: number }>) => {
      const base = report(elapsedMs, calls);
      for (const [name, wait] of Object.entries(waits)) Object.assign(base.models[name]!, { limit_waits_this_run: wait });
      return base;
    };
    // 30 calls a minute of 1,300 tokens each use up tpm 40,000 alone: nothing says another batch was there.
    for (const lines of [
      rateLimitPaceLines(waited(60_000, { big: 30 }, { big: { calls: 29, wait_ms: 60_000 } }), tpmConfig),
      rateLimitPaceLines(waited(60_000, { flaky: 30 }, { flaky: { calls: 30, wait_ms: 45_000 } }), tpmConfig),
      rateLimitPaceLines(waited(5_000, { flash: 20 }, { flash: { calls: 20, wait_ms: 40_000 } }), tpmConfig),
    ]) {
      expect(lines).toHaveLength(1);
      expect(lines[0]).not.toContain('other calls took slots too');
      expect(lines[0]).toContain("every batch and worker on the same endpoint shares these limits (through Redis), this batch's calls among them; --concurrency cannot speed these rows up.");
    }
  });

  it('says what the rows a rate limit sent on to their fallbacks cost, and what keeps them on the model', () => {
    const past = (rows: Record<string, number>, cost?: object) => ({ ...report(36_000, { flash: 10 }), extra_calls: { rows_past_rate_limit: rows, ...(cost && { past_rate_limit_cost: cost }) } }) as unknown as Report;
    const cost = { flash: { rows: 293, cost_usd: 0.5, unpriced_rows: 0, cost_at_its_price_usd: 0.0147 } };
    expect(pastRateLimitText(past({ flash: 293 }, cost), config)).toBe(
      "Rate limits: 293 rows went on past flash for its rate limit (on_limit: fallback; the next slot over limits.max_wait_ms away); their answers cost $0.500, 34x the $0.0147 of the same tokens at flash's price. " +
        'To keep such rows on flash: models.flash.on_limit: wait, a higher limits.max_wait_ms (now 10.0 s) or models.flash.rpm (if the provider allows more), ' +
        'or a next model priced near it (models.flash.fallbacks, or its route in routing.routes).',
    );
    // A report written before the cost was counted, or a model with no price: the rows alone, or the cost alone.
    expect(pastRateLimitText(past({ flash: 293 }), config)).toMatch(/^Rate limits: 293 rows went on past flash for its rate limit \(on_limit: fallback; the next slot over limits\.max_wait_ms away\)\. To keep such rows on flash: /);
    expect(pastRateLimitText(past({ flash: 1 }, { flash: { ...cost.flash, rows: 1, cost_at_its_price_usd: null } }), config)).toContain('; its answer cost $0.500 (flash has no price to compare with). To keep');
    // Past a premium model to a cheap one: a ratio under a tenth keeps a figure, never "0x" (0.0147 / 0.5 is 0.03),
    // and no advice to keep the rows on the dearer model.
    expect(pastRateLimitText(past({ flash: 293 }, { flash: { rows: 293, cost_usd: 0.0147, unpriced_rows: 0, cost_at_its_price_usd: 0.5 } }), config)).toMatch(
      /; their answers cost \$0\.0147, 0\.03x the \$0\.500 of the same tokens at flash's price\.$/,
    );
    expect(pastRateLimitText(past({}), config)).toBeNull();
  });
});
