import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { z } from 'zod';
import { chatMessageSchema } from '../src/input/row.ts';
import { callWithRetry, type CallAttempt } from '../src/models/call-with-retry.ts';
import { ModelCallError } from '../src/models/model-error.ts';
import { callCostNanos, nanosToUsd } from '../src/models/pricing.ts';
import type { CallRecord, RowEvent, RowResult } from '../src/output/records.ts';
import { publishRowEvent } from '../src/output/row-events.ts';
import type { BatchContext, BatchContexts } from '../src/queue/batch-context.ts';
import { batchKeys, type KeySpace } from '../src/queue/keys.ts';

/** The prompt job: one input row, answered by one model (with retries) and handed to the collector. */
export const promptJobSchema = z.object({
  batchId: z.string(),
  row: z.number().int().positive(),
  id: z.string(),
  messages: z.array(chatMessageSchema).min(1),
  model: z.string().optional(),
  temperature: z.number().optional(),
  max_tokens: z.number().int().positive().optional(),
  metadata: z.record(z.string(), z.unknown()),
  custom_id: z.string().optional(),
});
export type PromptJob = z.infer<typeof promptJobSchema>;

export interface PromptJobDeps {
  redis: Redis;
  space: KeySpace;
  batches: BatchContexts;
  logger: Logger;
  sleep: (ms: number) => Promise<void>;
}

/** A row's own model wins, then the run's --model, then the config's default. */
export function chooseModel(job: PromptJob, ctx: BatchContext): string {
  return job.model ?? ctx.meta.model_override ?? ctx.config.default_model;
}

function toCallRecord(job: PromptJob, model: string, attempt: CallAttempt, ctx: BatchContext): { record: CallRecord; nanos: number | null } {
  const usage = attempt.answer?.usage ?? { input_tokens: 0, output_tokens: 0 };
  const nanos = callCostNanos(ctx.config.models[model]?.price, usage);
  const record: CallRecord = {
    batch_id: job.batchId,
    row: job.row,
    id: job.id,
    model,
    attempt: attempt.attempt,
    purpose: 'answer',
    status: attempt.answer ? 'succeeded' : 'failed',
    http_status: attempt.answer?.httpStatus ?? attempt.error?.status ?? null,
    input_tokens: usage.input_tokens,
    output_tokens: usage.output_tokens,
    cost_usd: nanos === null ? null : nanosToUsd(nanos),
    latency_ms: attempt.latencyMs,
    started_at: attempt.startedAt,
  };
  if (attempt.error) record.error_code = attempt.error.code;
  return { record, nanos };
}

/** Builds the row's event from its calls; cost is the exact sum of the calls' nano-dollars. */
export function buildRowEvent(job: PromptJob, model: string, attempts: CallAttempt[], ctx: BatchContext, error: ModelCallError | null): { event: RowEvent; costNanos: number } {
  const calls: CallRecord[] = [];
  let costNanos = 0;
  let unpriced = false;
  for (const attempt of attempts) {
    const { record, nanos } = toCallRecord(job, model, attempt, ctx);
    calls.push(record);
    if (nanos === null) unpriced = true;
    else costNanos += nanos;
  }
  const last = attempts.at(-1);
  const answer = last?.answer;
  const result: RowResult = {
    id: job.id,
    row: job.row,
    status: answer ? 'succeeded' : 'failed',
    model,
    output: answer?.output ?? null,
    usage: {
      input_tokens: calls.reduce((sum, call) => sum + call.input_tokens, 0),
      output_tokens: calls.reduce((sum, call) => sum + call.output_tokens, 0),
    },
    cost_usd: unpriced ? null : nanosToUsd(costNanos),
    latency_ms: attempts.reduce((sum, attempt) => sum + attempt.latencyMs, 0),
    attempts: attempts.length,
    metadata: job.metadata,
    completed_at: new Date().toISOString(),
  };
  if (job.custom_id !== undefined) result.custom_id = job.custom_id;
  if (answer) {
    result.finish_reason = answer.finishReason;
    result.request_id = answer.requestId;
  }
  if (error) result.error = { code: error.code, message: error.message, http_status: error.status };
  return { event: { result, calls }, costNanos };
}

/** How BullMQ is delivering this job: a re-delivery may follow a run whose result was already published. */
export interface Delivery {
  jobId: string | undefined;
  redelivered: boolean;
}

export function createPromptProcessor(deps: PromptJobDeps) {
  return async function processPromptJob(data: unknown, delivery: Delivery): Promise<void> {
    const job = promptJobSchema.parse(data);
    const keys = batchKeys(deps.space, job.batchId);
    // A worker can die after publishing a row but before BullMQ marks the job done; never pay twice.
    if (delivery.redelivered && (await deps.redis.getbit(keys.succeeded, job.row)) === 1) return;
    const ctx = await deps.batches.get(job.batchId);
    const log = deps.logger.child({ batch: job.batchId, row: job.row, job: delivery.jobId });
    const model = chooseModel(job, ctx);
    const modelConfig = ctx.config.models[model];
    const provider = modelConfig ? ctx.providers.get(modelConfig.provider) : undefined;
    let outcome: { attempts: CallAttempt[]; error: ModelCallError | null };
    if (!modelConfig || !provider) {
      const error = new ModelCallError({ code: 'model_not_found', model, message: `model "${model}" is not in this batch's config` });
      outcome = { attempts: [], error };
    } else {
      const request = {
        model,
        upstream: modelConfig.upstream ?? model,
        messages: job.messages,
        temperature: job.temperature ?? ctx.config.temperature,
        maxTokens: Math.min(job.max_tokens ?? ctx.config.max_tokens, modelConfig.max_output_tokens ?? Number.MAX_SAFE_INTEGER),
      };
      const retried = await callWithRetry(provider, request, ctx.config.retry, { sleep: deps.sleep });
      outcome = { attempts: retried.attempts, error: retried.ok ? null : retried.error };
    }
    if (outcome.error) log.warn({ code: outcome.error.code, attempts: outcome.attempts.length }, outcome.error.message);
    const { event, costNanos } = buildRowEvent(job, model, outcome.attempts, ctx, outcome.error);
    await publishRowEvent(deps.redis, keys, event, costNanos);
  };
}
