import { Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { buildRowEvent, chooseModel, createPromptProcessor, promptJobSchema } from '../jobs/prompt.ts';
import { ModelCallError } from '../src/models/model-error.ts';
import { publishRowEvent } from '../src/output/row-events.ts';
import type { BatchContexts } from '../src/queue/batch-context.ts';
import { batchKeys, PROMPT_QUEUE, type KeySpace } from '../src/queue/keys.ts';

export interface PromptWorkerOptions {
  /** ioredis connection for BullMQ's blocking reads (maxRetriesPerRequest: null). */
  connection: Redis;
  /** Connection for publishing results. */
  redis: Redis;
  space: KeySpace;
  batches: BatchContexts;
  logger: Logger;
  concurrency: number;
  lockMs: number;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * Hosts the prompt processor on a BullMQ Worker. A worker that dies mid-row loses nothing: after
 * `lockMs` BullMQ's stalled check hands the row to another worker.
 */
export function startPromptWorker(options: PromptWorkerOptions): { worker: Worker; close: () => Promise<void> } {
  const { logger } = options;
  const processJob = createPromptProcessor({ redis: options.redis, space: options.space, batches: options.batches, logger, sleep });
  const worker = new Worker(PROMPT_QUEUE, (job: Job) => processJob(job.data, { jobId: job.id, redelivered: job.stalledCounter > 0 || job.attemptsStarted > 1 }), {
    connection: options.connection,
    prefix: options.space.prefix,
    concurrency: options.concurrency,
    lockDuration: options.lockMs,
    stalledInterval: Math.max(1000, Math.floor(options.lockMs / 2)),
    maxStalledCount: 3,
  });

  // Model failures never throw (they become failed results); only infrastructure errors reach
  // here. Once BullMQ gives up on such a job, the row still gets a failed result, so the batch ends.
  worker.on('failed', (job, error) => {
    if (!job) return;
    const attemptsLeft = (job.opts.attempts ?? 1) > job.attemptsMade;
    logger.error({ job: job.id, err: error, attemptsLeft }, 'prompt job crashed');
    if (attemptsLeft) return;
    void publishCrashedRow(options, job, error).catch((publishError: unknown) => logger.error({ err: publishError, job: job.id }, 'could not record crashed row'));
  });
  worker.on('error', (error) => logger.error({ err: error }, 'worker error'));

  return {
    worker,
    close: () => worker.close(),
  };
}

async function publishCrashedRow(options: PromptWorkerOptions, job: Job, error: Error): Promise<void> {
  const parsed = promptJobSchema.safeParse(job.data);
  if (!parsed.success) return;
  const ctx = await options.batches.get(parsed.data.batchId);
  const model = chooseModel(parsed.data, ctx);
  const failure = new ModelCallError({ code: 'unexpected_error', model, message: `worker failed on this row: ${error.message}` });
  const { event, costNanos } = buildRowEvent(parsed.data, model, [], ctx, failure);
  await publishRowEvent(options.redis, batchKeys(options.space, parsed.data.batchId), event, costNanos);
}
