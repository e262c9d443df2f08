import { describe, expect, it, vi } from 'vitest';
import type { BatchLease } from '../../src/queue/batch-lease.ts';
import type { Report } from '../../src/output/report-json.ts';
import type { Session } from '../../src/queue/session.ts';

// A cancel's early outputs: 3 of 10 rows done, the rest not run (or, as the last rows finished, none left).
const early = {
  started_at: '2026-12-05T02:30:01.000Z',
  finished_at: '2026-12-05T02:30:02.000Z',
  errors: {},
  totals: { rows: 3, rows_this_run: 3, succeeded: 3, failed: 0, invalid_rows: 0, unfinished_rows: 7, calls: 3, cost_usd: 0, elapsed_ms: 1000 },
} as unknown as Report;
let report = early;

// The collector runs until the cancel drains it, then has written the outputs of the rows done.
vi.mock('../../src/batch/collect-and-report.ts', () => ({
  collectAndReport: ({ signal, drain }: { signal: AbortSignal; drain: AbortSignal }) =>
    new Promise((resolve) => {
      signal.addEventListener('abort', () => resolve(null), { once: true });
      drain.addEventListener('abort', () => resolve(report), { once: true });
    }),
}));
vi.mock('../../src/queue/unqueue-batch.ts', () => ({ unqueueBatch: async () => ({ removed: 0, kept: 0, carried: 0 }) }));

const { createBackgroundCollection } = await import('../../src/api/background-collection.ts');
const { createBatchCancel } = await import('../../src/api/batch-cancel.ts');

/** Cancels batch b1 as the collector holding its lease drains; the Redis writes and the lease's release, in order. */
async function cancelSteps(): Promise<string[]> {
  const steps: string[] = [];
  const meta = { batch_id: 'b1', status: 'running', out_dir: '/out/b1', created_at: '2026-12-05T02:30:00.000Z' };
  const multi = () => {
    const queued: string[] = [];
    const tx = {
      hset: (key: string, fields: Record<string, string>) => (queued.push(`hset ${key} status=${fields.status}`), tx),
      srem: (key: string, member: string) => (queued.push(`srem ${key} ${member}`), tx),
      exec: async () => void steps.push(`exec [${queued.join(', ')}]`),
    };
    return tx;
  };
  const session = {
    space: { prefix: 'p' },
    redis: { multi, sadd: async (key: string, member: string) => void steps.push(`sadd ${key} ${member}`) },
    store: {
      keys: (id: string) => ({ meta: `meta:${id}` }),
      load: async () => meta,
      loadWithProgress: async () => ({ meta, progress: { status: meta.status } }),
      // The old cancel wrote its status on its own, after the collector had ended.
      update: async (_id: string, fields: { status?: string }) => void steps.push(`update status=${fields.status}`),
    },
    openPromptQueue: () => ({ getRanges: async () => [], close: async () => undefined }),
  } as unknown as Session;
  const lease: BatchLease = { lost: new AbortController().signal, tookOverFrom: null, release: async () => void steps.push('lease released'), releaseNow: () => undefined };
  const collection = createBackgroundCollection(session, () => undefined);
  collection.start('b1', lease, { outDir: '/out/b1', startedAt: new Date() });
  const cancels = createBatchCancel({ session, collection, stopReading: async () => undefined, say: () => undefined, openKey: 'p:api:open', cancellingKey: 'p:api:cancelling' });

  await cancels.request('b1');
  await vi.waitFor(() => expect(cancels.isCancelling('b1')).toBe(false));
  await collection.stop();

  return steps;
}

describe("a cancel's closing writes", () => {
  it('are one step, made before the collector lets go of the batch (QA: seen cancelled while still open; a post of it at once lost its open mark)', async () => {
    report = early;
    expect(await cancelSteps()).toEqual(['sadd p:api:cancelling b1', 'exec [hset meta:b1 status=cancelled, srem p:api:open b1, srem p:api:cancelling b1]', 'lease released']);
  });

  it('when the last rows finished as it came, clear the cancel with the open mark, before the collector lets go', async () => {
    report = { ...early, totals: { ...early.totals, rows: 10, rows_this_run: 10, succeeded: 10, unfinished_rows: 0 } };
    expect(await cancelSteps()).toEqual(['sadd p:api:cancelling b1', 'exec [srem p:api:open b1, srem p:api:cancelling b1]', 'lease released']);
  });
});
