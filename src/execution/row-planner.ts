import type { SwitchyardConfig } from '../config/schema.ts';
import type { BudgetHold } from '../limits/budget.ts';
import { callModel, chargedUsage } from '../models/call-model.ts';
import { ModelCallError } from '../models/model-error.ts';
import { callCostNanos, nanosToUsd } from '../models/pricing.ts';
import type { ProviderClient } from '../models/provider-clients.ts';
import { callErrorMessage, type CallRecord } from '../output/records.ts';
import { processCallMetrics } from '../metrics/process-calls.ts';
import { DEFAULT_TASK_TYPE_DESCRIPTIONS } from '../routing/default-task-types.ts';
import { classifierMessages, classifyWithLlm } from '../routing/llm-classifier.ts';
import { armTarget } from '../routing/ab-split.ts';
import { maxTokensOfRow, planRouteCountingLater } from '../routing/route-plan.ts';
import { classificationInput, classifyByRules, compileTaskRules, llmClassifierInput } from '../routing/rule-classifier.ts';
import { maxMessageTokens } from '../routing/token-count.ts';
import { countPromptTokensOffThread } from '../routing/token-count-thread.ts';
import { CallsStopped, unlimitedCallSlot, type CallSlot } from './call-slots.ts';
import { keepTurn, takeTurn, waitLeftMs } from './deferred-turn.ts';
import { ClaimLostError } from './claim-lost.ts';
import type { RowGate } from './row-gate.ts';
import type { RoutePlan, RowProgress } from './row-progress.ts';
import { releaseHeldSlot, type RowInput } from './row-runner.ts';

/** How late past its booked slot a parked classifier call may start before it books again. */
const LATE_SLOT_MS = 1000;

/**
 * Decides a row's task type (rules, or a cheap model with the rules as fallback) and its model
 * chain. A row's own model or the batch's pinned model skips the classifier call. The classifier
 * call goes through the same gate as answers (breaker, shared limits, budget) and waits for its
 * rate-limit slot as an answer call does: parked when the slot is further than
 * limits.inline_wait_ms, holding the slot in the row's progress (`reservedModel` before the row
 * has a plan). The rules decide when the classifier cannot run: its circuit open, the budget, or
 * a wait past limits.max_wait_ms when its model's `on_limit` is `fallback`.
 */
export function createRowPlanner(config: SwitchyardConfig, providers: Map<string, ProviderClient>, pinnedModel: string | undefined, gate: RowGate, callSlot: CallSlot = unlimitedCallSlot) {
  const rules = compileTaskRules(config.routing);
  const llm = config.routing?.classifier === 'llm' ? config.routing.llm_classifier : undefined;
  const descriptions = config.routing?.task_types ? undefined : DEFAULT_TASK_TYPE_DESCRIPTIONS;
  /**
   * What the classifier request's prompt is held as: its UTF-8 bytes, a bound no provider's
   * tokenizer exceeds (a token covers a byte at least). A guess from the text's length fell about
   * 15% short of the instructions, and with a max_tokens this small the answer leaves no slack to
   * make up for it: each call settled above what the budget held for it, and a batch could spend
   * past its budget. The hold lasts one cheap call; the call settles at what it cost.
   */
  const promptTokens = (text: string): number => maxMessageTokens(classifierMessages({ text, taskTypes: rules.labels, descriptions }));

  /**
   * Passes the classifier call through breaker, limiter and budget: its slot, a wait for a slot
   * booked too far ahead to sleep through (the row parks holding it), or why it cannot run.
   */
  async function admitClassifierCall(model: string, maxTokens: number, text: string, progress: RowProgress): Promise<{ slotAt: number; budgetHold: BudgetHold | null; estimatedTokens: number; promptTokens: number; probe: string | undefined } | { skipped: string } | { waitMs: number }> {
    const prompt = promptTokens(text);
    let estimatedTokens = prompt + maxTokens;
    const estimateNanos = callCostNanos(config.models[model]?.price, { input_tokens: prompt, output_tokens: maxTokens }) ?? 0;
    // As for an answer (row-runner.ts): no waiting for a rate-limited classifier's slot when the budget must refuse the call.
    const limited = config.models[model]?.rpm !== undefined || config.models[model]?.tpm !== undefined;
    if (limited && (await gate.budgetRefusal(estimateNanos))) {
      await releaseHeldSlot(progress, gate);
      return { skipped: 'budget' };
    }
    let untilSlot: number;
    let probe: string | undefined;
    // Woken well after its slot (workers stopped or busy): booked again, or the slots passed meanwhile would all be used at once (row-runner.ts does the same).
    if (progress.reservedModel === model && progress.wakeAt - Date.now() < -LATE_SLOT_MS) Object.assign(progress, { reservedModel: undefined, reservedTokens: undefined });
    if (progress.reservedModel === model) {
      // Back from parking: the slot booked before is this row's, for the tokens it was booked for.
      untilSlot = progress.wakeAt - Date.now();
      estimatedTokens = progress.reservedTokens ?? estimatedTokens;
    } else {
      const breaker = await gate.breaker(model);
      if (!breaker.allowed) return { skipped: `circuit open on ${model}${breaker.lastError ? ` (last error: ${breaker.lastError})` : ''}` };
      const onLimit = config.models[model]?.on_limit ?? config.limits.on_limit;
      // As for an answer (row-runner.ts): max_wait_ms bounds a deferred row's whole wait, from its first ask.
      const turn = takeTurn(progress, model, config.limits.max_wait_ms, Date.now());
      const maxWaitMs = onLimit === 'fallback' ? waitLeftMs(turn, config.limits.max_wait_ms, Date.now()) : Number.POSITIVE_INFINITY;
      const capacity = await gate.reserveCapacity(model, estimatedTokens, maxWaitMs, { promptTokens: prompt, turnTicket: turn.ticket });
      // Let through as the circuit's probe, a call that does not go now gives it up (row-runner.ts does the same).
      if (breaker.probe && (!capacity.reserved || capacity.waitMs > config.limits.inline_wait_ms)) await gate.releaseProbe(model, breaker.probe);
      else probe = breaker.probe;
      // Too far ahead to book yet (a provider that meters usage): the row parks holding nothing and asks again.
      if (!capacity.reserved && capacity.deferred) {
        keepTurn(progress, model, capacity.turnTicket, turn);
        return { waitMs: capacity.waitMs };
      }
      if (!capacity.reserved) return { skipped: `${model} rate limited for ${Math.ceil(capacity.waitMs / 1000)} s, over limits.max_wait_ms` };
      estimatedTokens = capacity.tokens ?? estimatedTokens;
      Object.assign(progress, { reservedModel: model, reservedTokens: estimatedTokens, slotAt: capacity.slotAt, wakeAt: Date.now() + capacity.waitMs });
      untilSlot = capacity.waitMs;
    }
    if (untilSlot > config.limits.inline_wait_ms) return { waitMs: untilSlot };
    Object.assign(progress, { reservedModel: undefined, reservedTokens: undefined });
    const budget = await gate.reserveBudget(estimateNanos);
    if (!budget.ok) {
      await gate.settle({ model, slotAt: progress.slotAt, estimatedTokens, actualTokens: 0, budgetHold: null, actualNanos: 0, health: 'neutral', coolDownMs: null, probe });
      return { skipped: 'budget' };
    }
    if (untilSlot > 0) await new Promise((resolve) => setTimeout(resolve, untilSlot));
    return { slotAt: progress.slotAt, budgetHold: budget.hold, estimatedTokens, promptTokens: prompt, probe };
  }

  /**
   * The row's plan and the classifier's call record, or how long the row waits for the classifier's slot.
   * `confirmClaim` throws ClaimLostError when the row's worker no longer holds its job: asked right before the classifier's call, as before an answer's.
   */
  return async function planRow(row: RowInput, progress: RowProgress, confirmClaim?: () => Promise<void>): Promise<{ plan: RoutePlan; calls: CallRecord[] } | { waitMs: number }> {
    const { text, chars } = classificationInput(row.messages);
    const byRules = classifyByRules(text, rules, chars);
    let taskType = byRules.taskType;
    let reason = byRules.reason;
    const calls: CallRecord[] = [];
    const classifierModel = llm ? config.models[llm.model] : undefined;
    const classifierProvider = classifierModel ? providers.get(classifierModel.provider) : undefined;
    // A row whose model is named (its own, its A/B arm, the batch's) needs no task type from the classifier.
    const classified = llm !== undefined && !row.model && (row.abArm === undefined ? !pinnedModel : armTarget(row.abArm) === undefined);
    const labelled = classified ? progress.classified : undefined;
    if (labelled) {
      taskType = labelled.taskType;
      reason = labelled.reason;
    }
    // The classifier reads the messages whole (its own excerpt: start and end), not the rules' share.
    const llmText = classified && llm && classifierModel && classifierProvider && !labelled ? llmClassifierInput(row.messages) : null;
    const admitted = llmText !== null && llm ? await admitClassifierCall(llm.model, llm.max_tokens, llmText, progress) : null;
    if (admitted && 'waitMs' in admitted) return admitted;
    if (admitted && 'skipped' in admitted) reason = `llm classifier skipped (${admitted.skipped}); ${byRules.reason}`;
    if (admitted && 'slotAt' in admitted && llm && classifierModel && classifierProvider) {
      const verdict = await classifyWithLlm(
        {
          call: (request) =>
            callSlot(async () => {
              // A worker that paused past its claim while the row waited for this slot must not pay for a row another worker has.
              await confirmClaim?.();
              return callModel(classifierProvider, request);
            }),
        },
        { text: llmText ?? text, taskTypes: rules.labels, model: llm.model, upstream: classifierModel.upstream ?? llm.model, reasoning: classifierModel.reasoning, maxTokens: llm.max_tokens, descriptions },
      );
      if (verdict.taskType) {
        taskType = verdict.taskType;
        reason = verdict.reason;
        progress.classified = { taskType, reason };
      } else {
        reason = `${verdict.reason}; ${byRules.reason}`;
        // An answer that named no type was paid for all the same: asking again on a resume would cost the same for the same answer.
        if (verdict.answer) progress.classified = { taskType, reason };
      }
      // A classifier call that timed out is charged its estimated prompt, like any call (call-model.ts).
      const charged = chargedUsage(verdict.answer, verdict.error);
      const usage = charged.usage;
      const nanos = callCostNanos(classifierModel.price, usage);
      // A request that never went out (no key, a key just rejected, the process stopping, the claim lost) is no call: no cost record, and its slot comes back whole.
      const sent = !(verdict.error instanceof ModelCallError && !verdict.error.sent) && !(verdict.error instanceof CallsStopped) && !(verdict.error instanceof ClaimLostError);
      await gate.settle({
        model: llm.model,
        slotAt: admitted.slotAt,
        estimatedTokens: admitted.estimatedTokens,
        actualTokens: usage.input_tokens + usage.output_tokens,
        promptTokens: admitted.promptTokens,
        budgetHold: admitted.budgetHold,
        actualNanos: nanos ?? 0,
        health: verdict.answer ? 'success' : 'neutral',
        coolDownMs: null,
        probe: admitted.probe,
        ...(!sent && { unsent: true as const }),
      });
      // The row is another worker's now: nothing went out, and that worker records what the row made before.
      if (verdict.error instanceof ClaimLostError) throw verdict.error;
      if (sent) {
        const record: CallRecord = {
          batch_id: row.batchId,
          row: row.row,
          id: row.id,
          model: llm.model,
          attempt: 1,
          purpose: 'classify',
          task_type: null,
          chain_position: null,
          ...(row.abArm !== undefined && { ab_arm: row.abArm }),
          status: verdict.answer ? 'succeeded' : 'failed',
          http_status: verdict.httpStatus,
          input_tokens: usage.input_tokens,
          output_tokens: usage.output_tokens,
          cost_usd: nanos === null ? null : nanosToUsd(nanos),
          latency_ms: verdict.latencyMs,
          started_at: verdict.startedAt,
          // The failure's own code (timeout, rate_limited...), as an answer call's record gives it.
          ...(verdict.error ? { error_code: verdict.error instanceof ModelCallError ? verdict.error.code : 'classifier_failed', error_message: callErrorMessage(verdict.error.message) } : {}),
          ...(charged.estimated ? { usage_estimated: true as const } : {}),
        };
        calls.push(record);
        processCallMetrics.record(record);
      }
    }
    const plan = await planRouteCountingLater(
      { messages: row.messages, params: row.params, rowModel: row.model, compared: row.compared, abArm: row.abArm, pinnedModel, ...maxTokensOfRow(row, config), taskType, routeReason: reason },
      config,
      countPromptTokensOffThread,
    );
    return { plan, calls };
  };
}
