import { describe, expect, it } from 'vitest';
import { rateLimitPaceText } from '../../src/batch/rate-limit-pace.ts';
import { parseConfig } from '../../src/config/load.ts';
import type { Report } from '../../src/output/report.ts';

const config = parseConfig(
  {
    providers: { p: { base_url: 'http://127.0.0.1:8787/v1' } },
    models: { flash: { provider: 'p', rpm: 500 }, pro: { provider: 'p', rpm: 6000 }, free: { provider: 'p' } },
    default_model: 'flash',
  },
  'switchyard.yaml',
);
const report = (elapsedMs: number, calls: Record<string, number>, rowsThisRun = 300) =>
  ({ totals: { elapsed_ms: elapsedMs, rows: 300, rows_this_run: rowsThisRun }, models: Object.fromEntries(Object.entries(calls).map(([name, n]) => [name, { calls: n }])) }) as unknown as Report;

describe('what a run says of the rate limits that set its pace', () => {
  it('names the models whose calls came near their rpm (QA: 8 rows/s with --concurrency 32 said nothing of rpm 500)', () => {
    expect(rateLimitPaceText(report(36_000, { flash: 290, pro: 10, free: 400 }), config)).toBe(
      'Rate limits: flash (483 calls a minute, models.flash.rpm 500) set the pace: rows waited for their slots, so --concurrency could not speed them up. Raise the rpm if your provider allows more.',
    );
  });

  it('says nothing of models well under their rpm, of short runs, or of an earlier run\'s calls', () => {
    expect(rateLimitPaceText(report(36_000, { flash: 100, pro: 200 }), config)).toBeNull();
    expect(rateLimitPaceText(report(5_000, { flash: 290 }), config)).toBeNull();
    expect(rateLimitPaceText(report(36_000, { flash: 290 }, 30), config)).toBeNull(); // a resume that ran 30 of the 300 rows
  });
});
