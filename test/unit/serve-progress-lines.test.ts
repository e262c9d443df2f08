import { afterEach, describe, expect, it, vi } from 'vitest';
import type { BatchLease } from '../../src/queue/batch-lease.ts';
import type { BatchProgress } from '../../src/queue/batch-state.ts';
import type { Session } from '../../src/queue/session.ts';

// The collector itself is not under test here: it runs until the server stops it.
vi.mock('../../src/batch/collect-and-report.ts', () => ({
  collectAndReport: ({ signal }: { signal: AbortSignal }) => new Promise((resolve) => signal.addEventListener('abort', () => resolve(null), { once: true })),
}));

const { createBackgroundCollection } = await import('../../src/api/background-collection.ts');

afterEach(() => {
  vi.useRealTimers();
});

describe("serve's progress lines", () => {
  it("say when they were written, as run's plain lines do (review: a server's log told nothing of when)", async () => {
    vi.useFakeTimers();
    vi.setSystemTime(Date.UTC(2026, 11, 5, 2, 30, 1));
    let progress: BatchProgress = { total: 2000, estimatedTotal: null, finished: 0, succeeded: 0, failed: 0, costUsd: 0, status: 'running' };
    const session = { store: { progress: async () => progress }, openPromptQueue: () => ({}) } as unknown as Session;
    const lease: BatchLease = { lost: new AbortController().signal, tookOverFrom: null, release: async () => undefined, releaseNow: () => undefined };
    const said: string[] = [];
    const collection = createBackgroundCollection(session, (line) => said.push(line), 30_000);
    collection.start('b1', lease, { outDir: '/out/b1', startedAt: new Date() });

    progress = { ...progress, finished: 1102, succeeded: 1100, failed: 2, costUsd: 0.0169 };
    await vi.advanceTimersByTimeAsync(30_000);
    progress = { ...progress, finished: 2000 - 860, succeeded: 1138, costUsd: 0.02 };
    await vi.advanceTimersByTimeAsync(30_000);
    await collection.stop();

    expect(said).toEqual([
      '[b1] 1,102 of 2,000 rows done (2 failed), $0.0169 so far, at 02:30:31 UTC',
      '[b1] 1,140 of 2,000 rows done (2 failed), $0.0200 so far, 1.3 rows/s, at 02:31:01 UTC',
    ]);
  });
});
