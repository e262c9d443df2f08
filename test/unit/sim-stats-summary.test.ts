import { describe, expect, it } from 'vitest';
import { simStatsSummary } from '../../src/sim/stats-summary.ts';

describe("the simulator's stop summary", () => {
  it('says it served nothing when it served nothing', () => {
    expect(simStatsSummary({ requests: 0, by_status: {}, peak_in_flight: 0, models: {} })).toEqual(['Simulator stopped; it served no requests.']);
  });

  it('lists statuses in order and models by name, with thousands separated', () => {
    const model = (requests: number, by_status: Record<string, number>) => ({ requests, by_status, prompt_tokens: 12_345, completion_tokens: 67_890, peak_rpm: 1_180, peak_tpm: 0, first_request_at: 0, last_request_at: 1 });
    const lines = simStatsSummary({
      requests: 2_012,
      by_status: { '429': 10, '200': 2_000, '404': 2 },
      peak_in_flight: 50,
      models: { slow: model(12, { '200': 2, '429': 10 }), fast: model(2_000, { '200': 2_000 }) },
    });
    expect(lines).toEqual([
      'Simulator stopped after 2,012 requests (2,000 x 200, 2 x 404, 10 x 429); at most 50 chat requests in flight at once.',
      '  fast: 2,000 requests (2,000 x 200), 12,345 prompt + 67,890 completion tokens served, peak 1,180 requests/min',
      '  slow: 12 requests (2 x 200, 10 x 429), 12,345 prompt + 67,890 completion tokens served, peak 1,180 requests/min',
    ]);
  });

  it('says "1 request/min", and no "at most 0 chat requests in flight" when every request was refused before it counted (two 401s) (QA)', () => {
    const model = { requests: 1, by_status: { '200': 1 }, prompt_tokens: 5, completion_tokens: 7, peak_rpm: 1, peak_tpm: 0, first_request_at: 0, last_request_at: 1 };
    expect(simStatsSummary({ requests: 1, by_status: { '200': 1 }, peak_in_flight: 1, models: { m: model } })).toEqual([
      'Simulator stopped after 1 request (1 x 200); at most 1 chat request in flight at once.',
      '  m: 1 request (1 x 200), 5 prompt + 7 completion tokens served, peak 1 request/min',
    ]);
    expect(simStatsSummary({ requests: 2, by_status: { '401': 2 }, peak_in_flight: 0, models: {} })).toEqual(['Simulator stopped after 2 requests (2 x 401).']);
  });
});
