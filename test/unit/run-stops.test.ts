import { describe, expect, it } from 'vitest';
import { setTimeout as delay } from 'node:timers/promises';
import { watchForStops } from '../../src/batch/run-stops.ts';
import type { Session } from '../../src/queue/session.ts';

// The stop of a host's run (no process signal, no worker, nothing to unqueue): only the outages
// watch of the session is told about it.
const session = { outages: { stopping: () => undefined } } as unknown as Session;

describe('a run stopping', () => {
  it('has the outputs written only once the file has stopped being read (the read saves the invalid lines it counted as it stops)', async () => {
    const hostStop = new AbortController();
    const stops = watchForStops({ session, batchId: 'b', say: () => undefined, worker: null, collects: false, lease: null, hostStop: hostStop.signal });
    try {
      hostStop.abort();
      await delay(20);
      expect(stops.stopReading.aborted).toBe(true);
      expect(stops.drainCollector.aborted).toBe(false);
      stops.readingEnded();
      await delay(0);
      expect(stops.drainCollector.aborted).toBe(true);
      expect(stops.stoppedBy()).toBe('SIGTERM');
    } finally {
      stops.stopListening();
    }
  });

  it("leaves no timer behind once its last pass over the queue is done (QA: the pace of its passes held a Ctrl-C'd run's exit 200 ms after the stop was done)", async () => {
    // Redis does not answer here: each pass fails at once, as one with nothing queued would be quick.
    const queue = { getRanges: async () => Promise.reject(new Error('no Redis in this test')), close: async () => undefined };
    const collecting = { ...session, openPromptQueue: () => queue, store: {} } as unknown as Session;
    const timers = () => process.getActiveResourcesInfo().filter((resource) => resource === 'Timeout').length;
    const before = timers();
    const hostStop = new AbortController();
    const stops = watchForStops({ session: collecting, batchId: 'b', say: () => undefined, worker: null, collects: true, lease: null, hostStop: hostStop.signal });
    try {
      hostStop.abort();
      await delay(20);
      stops.readingEnded();
      while (!stops.drainCollector.aborted) await delay(1);
      await delay(0);
      // At most as many: a timer of the file's earlier test may end meanwhile (CI: 1 before, 0 after).
      expect(timers()).toBeLessThanOrEqual(before);
    } finally {
      stops.stopListening();
    }
  });
});
