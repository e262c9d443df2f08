import type { SwitchyardConfig } from '../config/schema.ts';
import type { ModelCallError } from '../models/model-error.ts';
import { callCostNanos } from '../models/pricing.ts';
import type { ProviderClient } from '../models/provider-clients.ts';
import { requestFor } from './model-request.ts';
import type { RowProgress } from './row-progress.ts';
import type { RowInput, RowRunnerDeps } from './row-runner.ts';

// When a row goes on to the next model of its chain rather than fail or wait on this one, and the
// reason it records for it (results.jsonl's fallback_reason, and a failed chain's message).

/** Passes the row's current model over for the next of its chain, recording why, with a fresh count of attempts. */
export function fallBack(progress: RowProgress, reason: string): void {
  progress.fallbackReasons.push(reason);
  progress.chainIndex++;
  progress.attempt = 0;
  Object.assign(progress, { reservedModel: undefined, reservedTokens: undefined });
}

/**
 * Passes the model over without a call (its circuit open or being probed, its rate limit too far
 * away): as fallBack, and a chain that ends here ends on this refusal, which no provider answered,
 * so the row's error keeps the last call's code but no HTTP status (QA: an ensemble member refused
 * by an open circuit read `http_status: 500`, the status of the call that came before the refusal).
 */
export function passOverUnsent(progress: RowProgress, reason: string): void {
  if (progress.lastError) progress.lastError = { ...progress.lastError, status: null };
  fallBack(progress, reason);
}

/** The prompt is longer than the model takes: providers word it many ways. */
export const CONTEXT_TOO_LONG = /context[ _]length|context window|maximum context|too many tokens|prompt is too long|input is too long|reduce the length/i;

/**
 * A refusal that says nothing against another model, as the reason to go on to it, or null: the
 * provider refused the key or the account (401, 403, out of quota), which a model on another provider may
 * not; the prompt is too long for this model's context, which a later model's may hold. Other
 * 4xx (a malformed request) would fail anywhere: the row fails at once.
 */
export function refusalAnotherModelMayNotMeet(failure: ModelCallError, model: string, progress: RowProgress, config: SwitchyardConfig): string | null {
  const chain = progress.plan?.chain ?? [];
  if (failure.code === 'bad_request' && CONTEXT_TOO_LONG.test(failure.message) && progress.chainIndex + 1 < chain.length) return contextRefusal(failure, model, config);
  const accountRefused = failure.code === 'unauthorized' || failure.code === 'forbidden' || failure.code === 'quota_exceeded';
  // The provider's message names the key's variable: with it the fallback reason says what to fix, not only that the row went on.
  if (accountRefused && laterModelElsewhere(model, progress, config)) return `${failure.code} (${failure.status}) at its provider: ${failure.message}`;
  return null;
}

/**
 * Why a model's context refused the row, in the provider's words, which say how the tokens split: a
 * 20-token prompt with a max_tokens of 600 at a window of 600 read as "the prompt is too long for it"
 * (QA: every row of a batch went on to a fallback 10 times the price, each after a refused call).
 * Without a context_window in the config, Switchyard cannot skip the model by itself: said so.
 */
function contextRefusal(failure: ModelCallError, model: string, config: SwitchyardConfig): string {
  const window = config.models[model]?.context_window === undefined ? `; set models.${model}.context_window, and rows it cannot hold skip it without a call` : '';
  return `its context window refused the prompt and max_tokens (${failure.status ?? 400}: ${failure.message})${window}`;
}

/**
 * A request not sent because its provider had just rejected the key (found before booking a slot,
 * or while waiting for a call slot): when the chain goes on to a model on another provider, the
 * row falls back to it (true); otherwise the row fails with this error.
 */
export function passedRejectedKey(unsent: ModelCallError, model: string, progress: RowProgress, config: SwitchyardConfig): boolean {
  if ((unsent.code !== 'unauthorized' && unsent.code !== 'quota_exceeded') || !laterModelElsewhere(model, progress, config)) return false;
  progress.lastError = { code: unsent.code, message: unsent.message, status: null };
  const why = unsent.code === 'unauthorized' ? 'rejected the key just before (401)' : 'said just before that the account is out of quota';
  fallBack(progress, `${model}: not sent, its provider ${why}`);
  return true;
}

/**
 * A key missing here that no other worker has either: the row goes on to its chain's next provider,
 * as for a rejected key. Held by another worker, the row fails missing_api_key here, and its job
 * hands it back to the queue for that worker (jobs/prompt.ts), which calls the model it was meant for.
 */
export async function passedMissingKey(unsent: ModelCallError, model: string, provider: ProviderClient, progress: RowProgress, deps: RowRunnerDeps): Promise<boolean> {
  const keyName = provider.missingKeyEnv;
  if (unsent.code !== 'missing_api_key' || keyName === null || !laterModelElsewhere(model, progress, deps.config)) return false;
  if (await deps.keyHeldElsewhere?.(keyName).catch(() => false)) return false;
  progress.lastError = { code: unsent.code, message: unsent.message, status: null };
  fallBack(progress, `${model}: not sent, $${keyName} is not set here, and no worker on this Redis says it has it`);
  return true;
}

/**
 * A call the budget has no room for: when a later model of the row's chain would cost less at most
 * (a premium model's fallback to a cheap one), the row goes on to it (true), as a user capping
 * spend would want, rather than ending budget_exceeded with money left for the cheaper answer.
 */
export function passedForCheaper(row: RowInput, progress: RowProgress, config: SwitchyardConfig, promptBound: number, estimateNanos: number, refusal: string): boolean {
  const plan = progress.plan!;
  const cheaper = plan.chain.slice(progress.chainIndex + 1).some((later) => {
    const price = config.models[later]?.price;
    if (!price) return false; // an unpriced model is not known to be cheaper, and a budget cannot bound it
    const maxTokens = requestFor(row, later, plan.taskType, config).maxTokens;
    return (callCostNanos(price, { input_tokens: promptBound, output_tokens: maxTokens }) ?? Infinity) < estimateNanos;
  });
  if (!cheaper) return false;
  fallBack(progress, `${plan.chain[progress.chainIndex]}: the budget has no room for its call (${refusal}), so a cheaper fallback is tried`);
  return true;
}

/** Whether the row's chain goes on to a model on another provider than `model`'s. */
function laterModelElsewhere(model: string, progress: RowProgress, config: SwitchyardConfig): boolean {
  const provider = config.models[model]?.provider;
  return (progress.plan?.chain ?? []).slice(progress.chainIndex + 1).some((later) => config.models[later]?.provider !== provider);
}

/**
 * Whether a rate limit past limits.max_wait_ms sends the row on to its chain's next model. The last
 * model (an ensemble's synthesizer and a judge are chains of one) waits for its slot as under
 * `wait`: there is no model to go on to, and failing the row for a limit a wait would meet is not
 * what `fallback` asks for (QA: 366 of 400 rows failed no_model_available at rpm limits).
 */
export function fallsBackOnLimit(onLimit: 'wait' | 'fallback', progress: RowProgress): boolean {
  return onLimit === 'fallback' && progress.chainIndex < (progress.plan?.chain.length ?? 0) - 1;
}

/**
 * Whether a model after the current one in the row's chain may be called now (its circuit lets
 * calls through): with none, on_limit fallback would only pass the row over to circuits that are
 * open and fail it no_model_available, for a limit a wait on this model meets (review). Asked
 * without taking a half-open circuit's probe: taking it, even for a moment, turned away the row
 * whose model it is ("one call is testing it"), on to its fallback (review).
 */
export async function laterModelOpenToCalls(progress: RowProgress, deps: RowRunnerDeps): Promise<boolean> {
  for (const later of (progress.plan?.chain ?? []).slice(progress.chainIndex + 1)) {
    if (!deps.config.models[later]) continue;
    if (await deps.gate.opensToCalls(later)) return true;
  }
  return false;
}
