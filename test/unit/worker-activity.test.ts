import { describe, expect, it } from 'vitest';
import { createWorkerActivity, MAX_COUNTED_BATCHES } from '../../src/progress/worker-activity.ts';

describe('worker activity tally', () => {
  it('reports each period once, only when rows finished in it, with the time of day (review: a worker\'s log told nothing of when), and sums everything at the end', () => {
    let clock = 1_000_000;
    const activity = createWorkerActivity(() => clock);
    expect(activity.periodLine()).toBeNull();

    activity.rowFinished({ batchId: 'a', row: 'succeeded', costNanos: 2_000_000 });
    activity.rowFinished({ batchId: 'a', row: 'failed', costNanos: 0 });
    activity.rowFinished({ batchId: 'b', row: 'succeeded', costNanos: 1_000_000 });
    activity.rowFinished({ batchId: 'b', row: 'already-succeeded', costNanos: 0 });
    clock += 30_000;
    expect(activity.periodLine()).toBe('worker: 3 rows (1 failed) of 2 batches (a, b), 0.1 rows/s, $0.00300 in the last 30 s, at 00:17:10 UTC');
    expect(activity.periodLine()).toBeNull();

    clock += 30_000;
    activity.rowFinished({ batchId: 'b', row: 'succeeded', costNanos: 1_000_000 });
    clock += 30_000;
    expect(activity.periodLine()).toBe('worker: 1 row (0 failed) of 1 batch (b), 0.0 rows/s, $0.00100 in the last 60 s, at 00:18:10 UTC');
    clock += 60_000;
    expect(activity.summaryLine()).toBe('Worker stopped after 2 min 30 s: 4 rows (1 failed) of 2 batches (a, b), 0.0 rows/s, $0.00400.');
  });

  it('groups thousands', () => {
    let clock = 0;
    const activity = createWorkerActivity(() => clock);
    for (let row = 0; row < 14_321; row++) activity.rowFinished({ batchId: 'a', row: 'succeeded', costNanos: 0 });
    clock += 30_000;
    expect(activity.periodLine()).toBe('worker: 14,321 rows (0 failed) of 1 batch (a), 477.4 rows/s, $0 in the last 30 s, at 00:00:30 UTC');
  });

  it('names up to three batches, and counts more', () => {
    let clock = 0;
    const activity = createWorkerActivity(() => clock);
    for (const batchId of ['a', 'b', 'c', 'd']) activity.rowFinished({ batchId, row: 'succeeded', costNanos: 0 });
    clock += 30_000;
    expect(activity.periodLine()).toBe('worker: 4 rows (0 failed) of 4 batches, 0.1 rows/s, $0 in the last 30 s, at 00:00:30 UTC');
  });

  it('keeps no more than MAX_COUNTED_BATCHES batch ids for the whole run (a worker runs for months)', () => {
    let clock = 0;
    const activity = createWorkerActivity(() => clock);
    for (let batch = 0; batch < MAX_COUNTED_BATCHES + 500; batch++) {
      activity.rowFinished({ batchId: `b${batch}`, row: 'succeeded', costNanos: 0 });
      if (batch % 100 === 99) activity.periodLine();
    }
    clock += 30_000;
    expect(activity.summaryLine()).toBe(`Worker stopped after 30 s: 10,500 rows (0 failed) of 10,000+ batches, 350.0 rows/s, $0.`);
  });

  it('says so when it stopped without finishing a row', () => {
    let clock = 0;
    const activity = createWorkerActivity(() => clock);
    clock += 5_400;
    expect(activity.summaryLine()).toBe('Worker stopped after 5 s; it finished no rows.');
  });
});
