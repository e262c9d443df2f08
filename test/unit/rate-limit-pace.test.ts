import { describe, expect, it } from 'vitest';
import { pastRateLimitText, rateLimitPaceText } from '../../src/batch/rate-limit-pace.ts';
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
    expect(rateLimitPaceText(report(36_000, { flash: 290, pro: 10, free: 400 }), config)).toBe(
      'Rate limits: flash (483 calls a minute, models.flash.rpm 500) set the pace: rows waited for their slots, so --concurrency could not speed them up. Raise the rpm if your provider allows more.',
    );
  });

  it('says nothing of models well under their rpm, of short runs, or of an earlier run\'s calls', () => {
    expect(rateLimitPaceText(report(36_000, { flash: 100, pro: 200 }), config)).toBeNull();
    expect(rateLimitPaceText(report(5_000, { flash: 290 }), config)).toBeNull();
    // A resume that only judged the rows (QA): the answers' 290 calls were the first run's.
    expect(rateLimitPaceText(report(36_000, { pro: 20 }, { flash: 290 }), config)).toBeNull();
    expect(rateLimitPaceText(report(36_000, { flash: 290 }, { flash: 1000 }), config)).toContain('flash (483 calls a minute');
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
    expect(pastRateLimitText(past({}), config)).toBeNull();
  });
});
