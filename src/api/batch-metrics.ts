import { monthKey } from '../limits/budget.ts';
import { nanosToUsd } from '../models/pricing.ts';
import { DamagedBatchError, isFinishedStatus, type BatchMeta, type BatchProgress, type BatchStatus, type BatchStore } from '../queue/batch-state.ts';
import type { MetricFamily, Sample } from '../metrics/exposition.ts';

/**
 * The batch-level figures of `GET /metrics`, read from Redis at each scrape: what `switchyard status`
 * and `GET /v1/batches` read (each batch's meta hash and its two BITCOUNTs), so every server on the
 * same Redis shows the same figures, and the row path writes nothing more. A scrape reads a bounded
 * number of keys, whatever the batches' sizes: the statuses of the newest RECENT_BATCHES and of the
 * open API batches (up to MAX_OPEN_LISTED), and the state of the unfinished ones among them plus the
 * RECENT_FINISHED newest finished ones.
 */
export const RECENT_BATCHES = 100;
export const MAX_OPEN_LISTED = 500;
export const RECENT_FINISHED = 10;

const STATUSES: readonly BatchStatus[] = ['enqueuing', 'running', 'finalizing', 'completed', 'completed_with_failures', 'budget_exceeded', 'cancelled'];

export interface BatchMetricsSource {
  store: BatchStore;
  /** The set of API batches whose outputs are not written yet (keys.ts apiOpenBatchesKey). */
  openKey: string;
  /** Worker processes connected to the queue (null: Redis does not list its clients). */
  connectedWorkers: () => Promise<number | null>;
  /** The server's config's budget.monthly_usd, if it sets one. */
  monthlyBudgetUsd: number | undefined;
  now?: () => Date;
}

export async function readBatchMetrics({ store, openKey, connectedWorkers, monthlyBudgetUsd, now = () => new Date() }: BatchMetricsSource): Promise<MetricFamily[]> {
  const { redis } = store;
  const [recent, open, inRedis, monthSpent, workers] = await Promise.all([
    store.recentBatchIds(RECENT_BATCHES),
    // SSCAN's COUNT is a hint, so the cap is applied again below; a server does not keep thousands open.
    redis.sscan(openKey, '0', 'COUNT', MAX_OPEN_LISTED).then(([, ids]) => ids.slice(0, MAX_OPEN_LISTED)),
    store.batchCount(),
    redis.hget(monthKey(store.space.prefix, now()), 'spent'),
    connectedWorkers(),
  ]);
  // Newest first, then the open ones older than the window.
  const ids = [...new Set([...recent, ...open])];
  const statusReads = redis.pipeline();
  for (const id of ids) statusReads.hget(store.keys(id).meta, 'status');
  const statuses = ((await statusReads.exec()) ?? []).map(([error, status]) => (error === null && typeof status === 'string' ? status : null));

  const byStatus = new Map<string, number>(STATUSES.map((status) => [status, 0]));
  const listed: string[] = [];
  let finishedListed = 0;
  ids.forEach((id, i) => {
    const status = statuses[i];
    // A batch forgotten between the two reads, or one whose record holds no status (damaged): not counted.
    if (status === null || status === undefined || !byStatus.has(status)) return;
    byStatus.set(status, byStatus.get(status)! + 1);
    const finished = isFinishedStatus(status as BatchStatus);
    if (!finished || finishedListed++ < RECENT_FINISHED) listed.push(id);
  });
  // A damaged record is left out, as GET /v1/batches leaves it out of a page.
  // Redis trouble fails the whole read (the page then says switchyard_redis_up 0), not one batch quietly.
  const states = (await Promise.all(listed.map((id) => store.loadWithProgress(id).catch((error: unknown) => (error instanceof DamagedBatchError ? null : Promise.reject(error)))))).filter((state) => state !== null);

  const families: MetricFamily[] = [
    { name: 'switchyard_batches', type: 'gauge', help: `Batches by status, among the ${RECENT_BATCHES} newest in Redis and every batch posted to a server whose outputs are not written yet.`, samples: [...byStatus].map(([status, count]) => ({ labels: { status }, value: count })) },
    { name: 'switchyard_batches_in_redis', type: 'gauge', help: 'Batches Redis holds (of any status; `switchyard forget` removes finished ones).', samples: [{ value: inRedis }] },
    ...batchFamilies(states),
    { name: 'switchyard_month_spent_usd', type: 'gauge', help: "What this UTC month's model calls cost so far, every batch on this Redis and prefix, in USD (what budget.monthly_usd is held against).", samples: [{ value: nanosToUsd(Number(monthSpent ?? 0)) }] },
    { name: 'switchyard_month_budget_usd', type: 'gauge', help: "This server's budget.monthly_usd, in USD (absent when its config sets none).", samples: monthlyBudgetUsd === undefined ? [] : [{ value: monthlyBudgetUsd }] },
    { name: 'switchyard_workers_connected', type: 'gauge', help: 'Worker processes connected to the prompts queue (serve and run with their own workers among them), from Redis\' CLIENT LIST; absent where Redis refuses it.', samples: workers === null ? [] : [{ value: workers }] },
  ];
  return families;
}

/** Per-batch gauges, labelled with batch_id: the unfinished batches and the newest finished ones. */
function batchFamilies(states: readonly { meta: BatchMeta; progress: BatchProgress }[]): MetricFamily[] {
  const perBatch = (pick: (meta: BatchMeta, progress: BatchProgress) => number | null): Sample[] =>
    states.flatMap(({ meta, progress }) => {
      const value = pick(meta, progress);
      return value === null ? [] : [{ labels: { batch_id: meta.batch_id }, value }];
    });
  // While the file is read (again), the total is not known: an earlier run's is not this one's (batch-view.ts).
  const total = (progress: BatchProgress) => (progress.status === 'enqueuing' ? null : progress.total);
  const listedHelp = `the unfinished batches and the ${RECENT_FINISHED} newest finished ones`;
  return [
    { name: 'switchyard_batch_info', type: 'gauge', help: `1 for each batch listed (${listedHelp}), with its status.`, samples: states.map(({ meta, progress }) => ({ labels: { batch_id: meta.batch_id, status: progress.status }, value: 1 })) },
    { name: 'switchyard_batch_rows', type: 'gauge', help: "A batch's valid rows; absent while its file is still being read.", samples: perBatch((_, progress) => total(progress)) },
    { name: 'switchyard_batch_rows_finished', type: 'gauge', help: "A batch's rows finished, succeeded or failed.", samples: perBatch((_, progress) => progress.finished) },
    { name: 'switchyard_batch_rows_succeeded', type: 'gauge', help: "A batch's rows that succeeded.", samples: perBatch((_, progress) => progress.succeeded) },
    { name: 'switchyard_batch_rows_failed', type: 'gauge', help: "A batch's rows that failed.", samples: perBatch((_, progress) => progress.failed) },
    { name: 'switchyard_batch_rows_queued', type: 'gauge', help: "A batch's rows not finished yet (waiting in the queue, parked, or in a worker's hands); absent while its file is still being read.", samples: perBatch((_, progress) => { const rows = total(progress); return rows === null ? null : Math.max(0, rows - progress.finished); }) },
    { name: 'switchyard_batch_rows_invalid', type: 'gauge', help: "A batch's rows its file held that cannot run (errors.jsonl).", samples: perBatch((meta) => meta.invalid_rows) },
    { name: 'switchyard_batch_cost_usd', type: 'gauge', help: "What a batch's calls cost so far, in USD (every run of it).", samples: perBatch((_, progress) => progress.costUsd) },
    { name: 'switchyard_batch_budget_usd', type: 'gauge', help: "A batch's budget in USD (budget=, --budget or budget.batch_usd); absent when it has none.", samples: perBatch((meta) => meta.budget_usd ?? null) },
    { name: 'switchyard_batch_started_timestamp_seconds', type: 'gauge', help: "When a batch's last run started (Unix time, seconds).", samples: perBatch((meta) => { const at = Date.parse(meta.started_at ?? meta.created_at); return Number.isFinite(at) ? at / 1000 : null; }) },
  ];
}
