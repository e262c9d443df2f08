import { describe, expect, it } from 'vitest';
import { CollectionTally } from '../../src/output/collection-tally.ts';
import type { CallRecord, RowResult } from '../../src/output/records.ts';

const span = { batchId: 'b', startedAt: '2026-11-24T10:00:00.000Z', finishedAt: '2026-11-24T10:00:10.000Z' };

function row(n: number, status: 'succeeded' | 'failed'): { result: RowResult; calls: CallRecord[] } {
  const result = { id: `r${n}`, row: n, status, model: 'm', output: status === 'succeeded' ? 'ok' : null, usage: { input_tokens: 10, output_tokens: 5 }, cost_usd: 0.000002, latency_ms: 100, attempts: 1, metadata: {}, ...(status === 'failed' ? { error: { code: 'server_error', message: 'x', http_status: 500 } } : {}) } as RowResult;
  const call = { batch_id: 'b', row: n, id: `r${n}`, model: 'm', attempt: 1, status, http_status: status === 'succeeded' ? 200 : 500, input_tokens: 10, output_tokens: 5, cost_usd: 0.000002, latency_ms: 100, started_at: span.startedAt } as CallRecord;
  return { result, calls: [call, { ...call, attempt: 2 }] };
}

describe('CollectionTally', () => {
  it('tallies rows and every call as they come', () => {
    const tally = new CollectionTally();
    for (let n = 1; n <= 3; n++) {
      const { result, calls } = row(n, n === 2 ? 'failed' : 'succeeded');
      tally.add(n, result, calls);
    }
    const report = tally.complete?.build(span);
    expect(report?.totals).toMatchObject({ rows: 3, succeeded: 2, failed: 1, calls: 6, input_tokens: 60, output_tokens: 30 });
    expect(report?.totals.cost_usd).toBeCloseTo(0.000012, 12);
  });

  it('gives up on a row seen twice (its re-run replaces the first result), and when told to', () => {
    const twice = new CollectionTally();
    twice.add(5000, row(5000, 'failed').result, row(5000, 'failed').calls);
    twice.add(5000, row(5000, 'succeeded').result, row(5000, 'succeeded').calls);
    expect(twice.complete).toBeNull();
    const resumed = new CollectionTally();
    resumed.giveUp();
    resumed.add(1, row(1, 'succeeded').result, row(1, 'succeeded').calls);
    expect(resumed.complete).toBeNull();
  });
});
