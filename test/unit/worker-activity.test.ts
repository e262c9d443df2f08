import { describe, expect, it } from 'vitest';
import { createWorkerActivity } from '../../src/progress/worker-activity.ts';

describe('worker activity tally', () => {
  it('reports each period once, only when rows finished in it, and sums everything at the end', () => {
    let clock = 1_000_000;
    const activity = createWorkerActivity(() => clock);
    expect(activity.periodLine()).toBeNull();

    activity.rowFinished({ batchId: 'a', row: 'succeeded', costNanos: 2_000_000 });
    activity.rowFinished({ batchId: 'a', row: 'failed', costNanos: 0 });
    activity.rowFinished({ batchId: 'b', row: 'succeeded', costNanos: 1_000_000 });
    activity.rowFinished({ batchId: 'b', row: 'already-succeeded', costNanos: 0 });
    clock += 30_000;
    expect(activity.periodLine()).toBe('worker: 3 rows (1 failed) of 2 batches (a, b), 0.1 rows/s, $0.00300 in the last 30 s');
    expect(activity.periodLine()).toBeNull();

    clock += 30_000;
    activity.rowFinished({ batchId: 'b', row: 'succeeded', costNanos: 1_000_000 });
    clock += 30_000;
    expect(activity.periodLine()).toBe('worker: 1 row (0 failed) of 1 batch (b), 0.0 rows/s, $0.00100 in the last 60 s');
    clock += 60_000;
    expect(activity.summaryLine()).toBe('Worker stopped after 2 min 30 s: 4 rows (1 failed) of 2 batches (a, b), 0.0 rows/s, $0.00400.');
  });

  it('groups thousands', () => {
    let clock = 0;
    const activity = createWorkerActivity(() => clock);
    for (let row = 0; row < 14_321; row++) activity.rowFinished({ batchId: 'a', row: 'succeeded', costNanos: 0 });
    clock += 30_000;
    expect(activity.periodLine()).toBe('worker: 14,321 rows (0 failed) of 1 batch (a), 477.4 rows/s, $0 in the last 30 s');
  });

  it('names up to three batches, and counts more', () => {
    let clock = 0;
    const activity = createWorkerActivity(() => clock);
    for (const batchId of ['a', 'b', 'c', 'd']) activity.rowFinished({ batchId, row: 'succeeded', costNanos: 0 });
    clock += 30_000;
    expect(activity.periodLine()).toBe('worker: 4 rows (0 failed) of 4 batches, 0.1 rows/s, $0 in the last 30 s');
  });

  it('says so when it stopped without finishing a row', () => {
    let clock = 0;
    const activity = createWorkerActivity(() => clock);
    clock += 5_400;
    expect(activity.summaryLine()).toBe('Worker stopped after 5 s; it finished no rows.');
  });
});
