import { afterEach, describe, expect, it, vi } from 'vitest';
import type { BatchLease } from '../../src/queue/batch-lease.ts';
import type { BatchProgress } from '../../src/queue/batch-state.ts';
import type { Session } from '../../src/queue/session.ts';

// The collector itself is not under test here: it runs until the server stops it.
vi.mock('../../src/batch/collect-and-report.ts', () => ({
  collectAndReport: ({ signal }: { signal: AbortSignal }) => new Promise((resolve) => signal.addEventListener('abort', () => resolve(null), { once: true })),
}));

const { createBackgroundCollection } = await import('../../src/api/background-collection.ts');

/** A session whose batch has `progress()` and whose Redis holds `waiting()` as the batch's note (Redis' clock is the fake one). */
function sessionWith(progress: () => BatchProgress, waiting: () => Record<string, string>): Session {
  const redis = {
    hgetall: async () => waiting(),
    time: async () => {
      const now = Date.now();
      return [String(Math.floor(now / 1000)), String((now % 1000) * 1000)];
    },
  };
  return { redis, store: { progress: async () => progress(), keys: (batchId: string) => ({ waiting: `b:{${batchId}}:waiting` }) }, openPromptQueue: () => ({}) } as unknown as Session;
}

afterEach(() => {
  vi.useRealTimers();
});

describe("serve's progress lines", () => {
  it("say when they were written, as run's plain lines do (review: a server's log told nothing of when)", async () => {
    vi.useFakeTimers();
    vi.setSystemTime(Date.UTC(2026, 11, 5, 2, 30, 1));
    let progress: BatchProgress = { total: 2000, estimatedTotal: null, finished: 0, succeeded: 0, failed: 0, costUsd: 0, status: 'running' };
    const session = sessionWith(() => progress, () => ({}));
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

  it('say why the rows wait, as the workers keep it on the batch: once while its rows do not move, and beside the figures while they do (QA: 3.5 minutes of silence)', async () => {
    vi.useFakeTimers();
    vi.setSystemTime(Date.UTC(2026, 11, 5, 2, 30, 1));
    let progress: BatchProgress = { total: 20, estimatedTotal: null, finished: 0, succeeded: 0, failed: 0, costUsd: 0, status: 'running' };
    const said0 = Date.UTC(2026, 11, 5, 2, 30, 20);
    const reason = (seconds: number) => `rows wait for fast's rate limit: models.fast.rpm (600, ...) lets one call start every 0.1 s, and the next free slot is ${seconds} s away`;
    let note: Record<string, string> = {};
    const session = sessionWith(() => progress, () => note);
    const lease: BatchLease = { lost: new AbortController().signal, tookOverFrom: null, release: async () => undefined, releaseNow: () => undefined };
    const said: string[] = [];
    const collection = createBackgroundCollection(session, (line) => said.push(line), 30_000);
    collection.start('small', lease, { outDir: '/out/small', startedAt: new Date() });

    note = { reason: reason(92), since: String(said0), said: String(said0), until: String(said0 + 92_000), finished: '0' };
    await vi.advanceTimersByTimeAsync(30_000);
    // Said again by the workers with other figures: the same reason, not said again while nothing moves.
    note = { ...note, reason: reason(62), said: String(said0 + 30_000) };
    await vi.advanceTimersByTimeAsync(30_000);
    progress = { ...progress, finished: 5, succeeded: 5, costUsd: 0.0001 };
    note = { ...note, said: String(Date.now() + 25_000), finished: '5' };
    await vi.advanceTimersByTimeAsync(30_000);
    await collection.stop();

    expect(said).toEqual([
      `[small] 0 of 20 rows done, at 02:30:31 UTC; ${reason(92)} (a worker said so at 02:30:20 UTC)`,
      `[small] 5 of 20 rows done, $0.000100 so far, at 02:31:31 UTC; ${reason(62)} (a worker said so at 02:31:26 UTC; so since 02:30:20 UTC)`,
    ]);
  });
});
