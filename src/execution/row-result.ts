import type { ModelConfig } from '../config/schema.ts';
import type { ModelAnswer } from '../models/call-model.ts';
import { asSentence, ModelCallError } from '../models/model-error.ts';
import { callCostNanos, nanosToUsd, usdToNanos } from '../models/pricing.ts';
import type { CallRecord, RowResult } from '../output/records.ts';
import { noModelMessage as noModelMessageForPlan } from '../routing/route-plan.ts';
import type { CachedAnswer } from './answer-cache.ts';
import { everyCall, type RoutePlan, type RowProgress } from './row-progress.ts';
import type { RowInput, RowStep } from './row-runner.ts';

// A finished row's result, made from its progress: what its calls add up to, why it left its first model, how it ended.

/** The failed result of a row whose job crashed more often than BullMQ retries it. */
export function crashedRowStep(row: RowInput, progress: RowProgress, error: Error): RowStep {
  const failure = new ModelCallError({ code: 'unexpected_error', model: '', message: `worker failed on this row: ${error.message}` });
  return finish(row, progress, progress.plan?.chain[progress.chainIndex] ?? row.model ?? '', null, failure);
}

/** What a row's calls add up to: its cost (null when a model had no price), tokens, time and answer calls. */
export function callTotals(calls: readonly CallRecord[]): { costNanos: number; costUsd: number | null; usage: RowResult['usage']; latencyMs: number; answerCalls: number } {
  let costNanos = 0;
  let unpriced = false;
  let inputTokens = 0;
  let outputTokens = 0;
  let latency = 0;
  let answerCalls = 0;
  for (const call of calls) {
    if (call.cost_usd === null) unpriced = true;
    else costNanos += usdToNanos(call.cost_usd);
    inputTokens += call.input_tokens;
    outputTokens += call.output_tokens;
    latency += call.latency_ms;
    if (call.purpose !== 'classify') answerCalls++;
  }
  return { costNanos, costUsd: unpriced ? null : nanosToUsd(costNanos), usage: { input_tokens: inputTokens, output_tokens: outputTokens }, latencyMs: latency, answerCalls };
}

/**
 * What became of each model the row passed, in the route's order: a model skipped (its context
 * window too small) where it stood, between the models called (QA: `b: skipped` was said before
 * `bad: server_error`, though bad came first and was called). `fallbackReasons[i]` is the chain's
 * i-th model's (fallBack adds one per model passed); a note after the last (a wait for open
 * circuits) comes last. A model skipped after the one that answered is left out: the row never got
 * that far. A skip saved without its place comes first, as before it was kept.
 */
function reasonsInOrder(plan: Pick<RoutePlan, 'skipped'>, progress: Pick<RowProgress, 'fallbackReasons' | 'chainIndex'>, answered: boolean): string[] {
  const skipped = answered ? plan.skipped.filter((skip) => (skip.at ?? 0) <= progress.chainIndex) : plan.skipped;
  const reasons: string[] = [];
  const skippedAt = (index: number) => skipped.filter((skip) => (skip.at ?? 0) === index).map((skip) => `${skip.model}: skipped, ${skip.reason}`);
  progress.fallbackReasons.forEach((reason, index) => reasons.push(...skippedAt(index), reason));
  reasons.push(...skipped.filter((skip) => (skip.at ?? 0) >= progress.fallbackReasons.length).map((skip) => `${skip.model}: skipped, ${skip.reason}`));
  return reasons;
}

/** Why the row did not end on its route's first model, or null when it did. */
function fallbackReason(plan: Pick<RoutePlan, 'skipped'>, progress: RowProgress, answered: boolean): string | null {
  const reasons = reasonsInOrder(plan, progress, answered);
  return reasons.length > 0 ? reasons.join('; ') : null;
}

/** The row answered from the cache: no call was made for the answer, so no tokens, latency or cost of it are the row's. */
export function finishFromCache(row: RowInput, progress: RowProgress, model: string, cached: CachedAnswer, price: ModelConfig['price']): RowStep {
  const answer: ModelAnswer = { output: cached.output, usage: { input_tokens: 0, output_tokens: 0 }, usageEstimated: false, countingMs: 0, finishReason: cached.finish_reason, requestId: cached.request_id, httpStatus: 200, ttftMs: null };
  return finish(row, progress, model, answer, null, { ...cached, price });
}

/** The row's finished step: its result (succeeded with `answer`, else failed with `error`, or answered from the cache) and every call it made. */
export function finish(row: RowInput, progress: RowProgress, model: string, answer: ModelAnswer | null, error: ModelCallError | null, cached?: CachedAnswer & { price: ModelConfig['price'] }): RowStep {
  const plan = progress.plan ?? { taskType: '', routeReason: 'not routed', chain: [], skipped: [], promptTokens: 0 };
  const calls = everyCall(progress);
  const totals = callTotals(calls);
  const costNanos = totals.costNanos;
  const tried = [...new Set(progress.calls.filter((c) => c.purpose === 'answer').map((c) => c.model))];
  const result: RowResult = {
    id: row.id,
    row: row.row,
    status: answer ? 'succeeded' : 'failed',
    model,
    output: answer?.output ?? null,
    usage: totals.usage,
    cost_usd: totals.costUsd,
    latency_ms: totals.latencyMs,
    attempts: totals.answerCalls,
    metadata: row.metadata,
    task_type: plan.taskType || null,
    route_reason: plan.routeReason,
    ...(row.abArm !== undefined && { ab_arm: row.abArm }),
    models_tried: tried,
    final_model: answer ? model : null,
    fallback_reason: fallbackReason(plan, progress, answer !== null),
    completed_at: new Date().toISOString(),
  };
  if (row.custom_id !== undefined) result.custom_id = row.custom_id;
  if (answer) {
    result.finish_reason = answer.finishReason;
    // Whether the model's max_output_tokens cut it is told from the answer call's tokens alone (report.ts).
    if (answer.finishReason === 'length' && !cached) result.answer_output_tokens = answer.usage.output_tokens;
    result.request_id = answer.requestId;
    if (answer.refusal) result.refusal = answer.refusal;
  }
  if (cached) {
    // What the call would have cost now: the answer's tokens when it was given, at today's price.
    const savedNanos = callCostNanos(cached.price, cached.usage);
    result.cached = { batch_id: cached.batch_id, row: cached.row, cached_at: cached.cached_at, usage: cached.usage, saved_usd: savedNanos === null ? null : nanosToUsd(savedNanos) };
  }
  if (error) {
    result.error = { code: error.code, message: error.message, http_status: error.status };
    if (error.requestId) result.request_id = error.requestId;
  }
  return { kind: 'finished', event: { result, calls }, costNanos };
}

/**
 * Why the whole chain failed: first what the last call itself said, which is what to fix
 * ("connect ECONNREFUSED ...") and what a shortened summary line keeps, then each model's reason
 * in the order the row met them, skips included (where they repeat that error, as "as above",
 * since every model on one dead provider says it). Said in the user's terms: a model and its
 * `fallbacks`, or a route; a row pinned to one model with none was no chain (QA: "every model in
 * the chain failed" for a lone model).
 */
export function chainFailedMessage(plan: RoutePlan, progress: RowProgress, lastMessage: string): string {
  const inOrder = reasonsInOrder(plan, progress, false);
  const only = plan.chain.length === 1 && plan.skipped.length === 0 ? plan.chain[0]! : null;
  if (only !== null && inOrder[0]?.startsWith(`${only}: `)) {
    const [own, ...after] = inOrder;
    const reasons = [own!.slice(only.length + 2), ...after].join('; ');
    // A circuit's reason quotes the error that shut it, the last call's: said twice, it pushed what came after it out of the summary's line (QA).
    if (lastMessage && reasons.includes(lastMessage)) return `${only} failed: ${reasons}`;
    return `${only} failed: ${reasons}; the last call's error: ${asSentence(lastMessage)}`;
  }
  const reasons = inOrder.map((reason) => (lastMessage ? reason.split(lastMessage).join('as above') : reason)).join('; ');
  return `${chainFailedWords(plan)}; the last call's error: ${asSentence(lastMessage)} By model: ${reasons}`;
}

/** "bad and its fallbacks failed", "every model of routing.routes.complex failed": what the user configured. */
function chainFailedWords(plan: RoutePlan): string {
  const fallbacksOf = /^models\.(.+)\.fallbacks$/.exec(plan.chainFrom ?? '')?.[1];
  if (fallbacksOf !== undefined) return `${fallbacksOf} and its fallbacks (${plan.chainFrom}) failed`;
  return plan.chainFrom ? `every model of ${plan.chainFrom} failed` : 'every model in the chain failed';
}

/**
 * Why no model answered without a call being made: the route's skipped models (route-plan.ts words
 * them), then the models passed over (an open circuit, a rate limit past max_wait_ms), in the
 * route's order.
 */
export function noModelMessage(plan: RoutePlan, progress: RowProgress): string {
  // A model of the chain passed over is why, not the prompt's size: those skipped are said in their place beside it.
  if (progress.fallbackReasons.length === 0) return noModelMessageForPlan(plan);
  return `no model was available: ${reasonsInOrder(plan, progress, false).join('; ')}`;
}
