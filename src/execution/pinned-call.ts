import type { SwitchyardConfig } from '../config/schema.ts';
import type { ChatMessage } from '../input/row.ts';
import { planRouteCountingLater, type CountTokensLater, type RoutePlan } from '../routing/route-plan.ts';
import { countPromptTokensOffThread } from '../routing/token-count-thread.ts';
import { freshProgress, type RowProgress } from './row-progress.ts';

/** A call a row makes beside its answer (an ensemble member, a synthesis, a judge), to a named model. */
export interface PinnedCall {
  model: string;
  messages: readonly ChatMessage[];
  /** The request fields sent beside the messages (the row's, for a member or a synthesis; none for a judge). */
  params?: Readonly<Record<string, unknown>> | undefined;
  maxTokens: number;
  /** What sets maxTokens, for the advice of a message that no model has room (RouteInput.maxTokensFrom). */
  maxTokensFrom: string;
  /** The row's task type, so the call's cost counts under it. */
  taskType?: string;
  reason: string;
  /** Models this call must not fall back to (an ensemble's other members, whose answers it has). */
  notTo?: readonly string[];
}

/**
 * The progress of such a call, not routed by task type: its model, then that model's own
 * fallbacks, each kept only if its context window holds the prompt (a synthesis or judge prompt
 * carries answers, so it is the one most likely not to fit). Counted off the event loop unless
 * `countTokens` says otherwise (--dry-run, which has no calls in flight, counts in its thread).
 */
export async function pinnedCallProgress(config: SwitchyardConfig, call: PinnedCall, countTokens: CountTokensLater = countPromptTokensOffThread): Promise<RowProgress> {
  const routed = await planRouteCountingLater({ messages: call.messages, params: call.params, pinnedModel: call.model, maxTokens: call.maxTokens, maxTokensFrom: call.maxTokensFrom, taskType: call.taskType ?? '', routeReason: call.reason }, config, countTokens);
  const plan: RoutePlan = { ...routed, chain: [], skipped: [...routed.skipped] };
  for (const model of routed.chain) {
    // Where the chain would have reached it: a member that answers on its own model has no fallback to explain.
    if (model !== call.model && call.notTo?.includes(model)) plan.skipped.push({ model, reason: 'another member of the ensemble', at: plan.chain.length });
    else plan.chain.push(model);
  }
  return { ...freshProgress(), plan };
}
