import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { DamagedBatchError, isFinishedStatus, type BatchMeta, type BatchProgress, type BatchStore } from '../queue/batch-state.ts';
import { batchWaitingNow } from '../queue/batch-waiting.ts';
import { ApiError } from './api-error.ts';
import { batchPath, batchView, OUTPUT_FILES, type BatchView, type OutputFileName } from './batch-view.ts';

/** What the API reads of its batches: one as JSON, the recent ones, a finished one's output files. */
export interface BatchLookup {
  view(batchId: string): Promise<BatchView>;
  list(limit: number, after?: string): Promise<BatchList>;
  outputFile(batchId: string, name: OutputFileName): Promise<{ path: string; contentType: string }>;
}

/** A page of the batches, newest first, in the shape of OpenAI's lists; `total` counts every batch in Redis. */
export interface BatchList {
  data: BatchView[];
  first_id: string | null;
  last_id: string | null;
  /** Older batches follow: ask again with `after` = last_id. */
  has_more: boolean;
  total: number;
}

/** A batch's meta and progress, or null when there is none; a damaged one is the client's 409. */
export async function loadBatchState(store: BatchStore, batchId: string): Promise<{ meta: BatchMeta; progress: BatchProgress } | null> {
  try {
    return await store.loadWithProgress(batchId);
  } catch (error) {
    if (error instanceof DamagedBatchError) throw new ApiError(409, 'batch_damaged', error.forApi());
    throw error;
  }
}

export function batchNotFound(batchId: string): ApiError {
  return new ApiError(404, 'batch_not_found', `no batch "${batchId}": GET /v1/batches lists the recent ones`);
}

/** How long a count of the connected workers serves every view asked for (a client polling many batches asks Redis once). */
const WORKERS_FRESH_MS = 2000;

/**
 * `isCancelling`: whether a cancel asked of this server is under way for the batch (its view says
 * so); `connectedWorkers`: the worker processes on the queue now (null: Redis will not say).
 */
export function createBatchLookup(store: BatchStore, isCancelling: (batchId: string) => boolean, connectedWorkers: () => Promise<number | null>): BatchLookup {
  let workersSeen: { count: Promise<number | null>; at: number } | null = null;
  function workersNow(): Promise<number | null> {
    if (!workersSeen || Date.now() - workersSeen.at > WORKERS_FRESH_MS) workersSeen = { count: connectedWorkers(), at: Date.now() };
    return workersSeen.count;
  }

  async function view(batchId: string): Promise<BatchView> {
    const state = await loadBatchState(store, batchId);
    if (!state) throw batchNotFound(batchId);
    const finished = isFinishedStatus(state.progress.status);
    if (finished) return batchView(state.meta, state.progress, await filesIn(state.meta.out_dir), isCancelling(batchId));
    const [workers, waiting] = await Promise.all([workersNow(), batchWaitingNow(store.redis, store.keys(batchId), state.progress.finished)]);
    return batchView(state.meta, state.progress, new Set(), isCancelling(batchId), workers, waiting);
  }

  return {
    view,

    async list(limit, after) {
      const [page, total] = await Promise.all([store.batchIdsAfter(after ?? null, limit), store.batchCount()]);
      if (!page) throw new ApiError(404, 'batch_not_found', `no batch "${after}" to list after: give the last_id of the page before (it may have been forgotten since; GET /v1/batches starts again from the newest)`);
      // One deleted meanwhile, or damaged, is left out (the page's ids still say where it ends); Redis trouble fails the whole list.
      const views = await Promise.all(page.ids.map((id) => view(id).catch((error: unknown) => (error instanceof ApiError ? null : Promise.reject(error)))));
      return { data: views.filter((one): one is BatchView => one !== null), first_id: page.ids[0] ?? null, last_id: page.ids.at(-1) ?? null, has_more: page.more, total };
    },

    async outputFile(batchId, name) {
      const state = await loadBatchState(store, batchId);
      if (!state) throw batchNotFound(batchId);
      const { meta, progress } = state;
      if (!isFinishedStatus(progress.status)) {
        // A file that could not be read to its end waits for the fixed one: say that, not that it is being read.
        if (meta.input_error) throw new ApiError(409, 'batch_waiting_for_file', `batch ${batchId} waits for its fixed file: ${meta.input_error}`);
        const total = progress.total === null ? 'its file is still being read' : `${progress.finished} of ${progress.total} rows finished`;
        // A `run --detach` batch's outputs come from `switchyard collect`: with none running they never would (QA).
        if (meta.detached === true && (await store.redis.exists(store.keys(batchId).lease)) === 0) {
          throw new ApiError(409, 'batch_not_finished', `batch ${batchId} is ${progress.status}: ${total}, and no process collects it (it was started with run --detach): \`switchyard collect ${batchId}\` writes its outputs once its rows are done.`);
        }
        throw new ApiError(409, 'batch_not_finished', `batch ${batchId} is ${progress.status}: ${total}. Its outputs are written when it finishes (every row done, or a cancel's rows in hand finished); GET ${batchPath(batchId)} shows its progress.`);
      }
      return { path: join(meta.out_dir, name), contentType: OUTPUT_FILES[name] };
    },
  };
}

/** The output files present in a batch's folder. */
async function filesIn(outDir: string): Promise<Set<OutputFileName>> {
  const names = Object.keys(OUTPUT_FILES) as OutputFileName[];
  const present = await Promise.all(names.map(async (name) => ((await stat(join(outDir, name)).catch(() => null))?.isFile() ? name : null)));
  return new Set(present.filter((name): name is OutputFileName => name !== null));
}
