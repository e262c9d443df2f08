import type { Queue } from 'bullmq';
import type { Logger } from 'pino';
import type { RunHost } from '../batch/run-batch.ts';
import { connectedWorkerCount } from '../queue/connected-workers.ts';
import { apiCancellingBatchesKey, apiOpenBatchesKey } from '../queue/keys.ts';
import type { BackgroundCollection } from './background-collection.ts';
import { createBatchCancel } from './batch-cancel.ts';
import { createBatchLookup, type BatchList } from './batch-lookup.ts';
import { createBatchStarter } from './batch-start.ts';
import { createBatchSubmission, type Submission, type SubmitOutcome } from './batch-submission.ts';
import type { BatchView, OutputFileName } from './batch-view.ts';
import { requeueRolledBack, resumeOpenBatches } from './open-batches.ts';
import { redisUnavailable, redisUnhealthy } from './redis-health.ts';
import { createMetricsPage } from './metrics-page.ts';

export interface BatchService {
  submit(submission: Submission): Promise<SubmitOutcome>;
  get(batchId: string): Promise<BatchView>;
  list(limit: number, after?: string): Promise<BatchList>;
  /** A finished batch's output file: its path and media type. */
  outputFile(batchId: string, name: OutputFileName): Promise<{ path: string; contentType: string }>;
  /**
   * Stops a batch this server runs: its queued rows come off the queue, the rows in hand finish,
   * then its outputs are written for the rows finished, and it ends `cancelled`. Returns at once
   * (the view says `cancelling`); a batch posted again runs the rest.
   */
  cancel(batchId: string): Promise<BatchView>;
  /** Collects the batches submitted here whose outputs a stopped server left unwritten. */
  resumeOpenBatches(): Promise<void>;
  /** Resolves once no file is being read (the server stopping waits for the runs it started). */
  whenReadingsEnd(): Promise<void>;
  /** Why requests cannot be served now (Redis is away), or null: said at once rather than after the client's retries. */
  unavailable(): string | null;
  /** Why the server is not healthy: Redis away, or not answering a PING within `timeoutMs` (a frozen server keeps its connections); null when healthy. */
  unhealthy(timeoutMs: number): Promise<string | null>;
  /** The Prometheus exposition of GET /metrics: this process's calls, and the batches' figures from Redis. */
  metrics(): Promise<string>;
}

export interface BatchServiceOptions {
  host: RunHost;
  /** Each batch's input file and outputs go to `<outRoot>/<batch id>/`. */
  outRoot: string;
  collection: BackgroundCollection;
  logger: Logger;
  say: (line: string) => void;
}

/** The server's batches: each part holds its own state (ids being submitted, cancels under way, files being read). */
export function createBatchService({ host, outRoot, collection, logger, say }: BatchServiceOptions): BatchService {
  const { session } = host;
  const openKey = apiOpenBatchesKey(session.space);

  const starter = createBatchStarter({ host, collection, logger, say, openKey });
  const cancellingKey = apiCancellingBatchesKey(session.space);
  const cancels = createBatchCancel({ session, collection, stopReading: starter.stopReading, say, openKey, cancellingKey });
  let queue: Queue | null = null;
  const connectedWorkers = () => connectedWorkerCount((queue ??= session.openPromptQueue()));
  const lookup = createBatchLookup(session.store, cancels.isCancelling, connectedWorkers);
  const openBatches = { host, collection, starter, say, openKey, cancellingKey, cancel: cancels.request };
  collection.onRolledBack((batchId) => void requeueRolledBack(openBatches, batchId));
  const metricsPage = createMetricsPage({
    store: session.store,
    openKey,
    connectedWorkers,
    monthlyBudgetUsd: host.config.config.budget.monthly_usd,
    unavailable: () => redisUnavailable(session),
    readFailed: (error) => logger.warn({ err: error }, 'GET /metrics could not read the batches from Redis'),
  });

  return {
    submit: createBatchSubmission({ session, outRoot, collection, starter, say, view: lookup.view, stopping: () => host.stop.aborted }),
    get: lookup.view,
    list: lookup.list,
    outputFile: lookup.outputFile,
    async cancel(batchId) {
      await cancels.request(batchId);
      return lookup.view(batchId);
    },
    resumeOpenBatches: () => resumeOpenBatches(openBatches),
    whenReadingsEnd: starter.whenReadingsEnd,
    unavailable: () => redisUnavailable(session),
    unhealthy: (timeoutMs) => redisUnhealthy(session, timeoutMs),
    metrics: metricsPage,
  };
}
