import type { SwitchyardConfig } from '../config/schema.ts';
import type { ChatMessage } from '../input/row.ts';
import { counted, formatClockTime, formatCount } from '../figure-text.ts';
import { callModel, chargedUsage, whyNotSendable, type ModelAnswer } from '../models/call-model.ts';
import { ModelCallError } from '../models/model-error.ts';
import { callCostNanos, nanosToUsd } from '../models/pricing.ts';
import type { ProviderClient } from '../models/provider-clients.ts';
import { retryDelayMs } from '../models/retry-policy.ts';
import { callErrorMessage, type CallRecord, type RowEvent } from '../output/records.ts';
import { maxMessageTokens, maxParamsTokens } from '../routing/token-count.ts';
import { CallsStopped, unlimitedCallSlot, type CallSlot } from './call-slots.ts';
import { ClaimLostError } from './claim-lost.ts';
import { keepTurn, takeTurn, waitLeftMs } from './deferred-turn.ts';
import type { BudgetDecision, BudgetTogetherDecision, RowGate } from './row-gate.ts';
import type { BudgetHold } from '../limits/budget.ts';
import { isCacheable, type AnswerCache, type CachedAnswer } from './answer-cache.ts';
import type { RoutePlan, RowProgress } from './row-progress.ts';
import { chainFailedMessage, finish, finishFromCache, noModelMessage } from './row-result.ts';
import { fallBack, fallsBackOnLimit, laterModelOpenToCalls, passedForCheaper, passedMissingKey, passedRejectedKey, passOverUnsent, refusalAnotherModelMayNotMeet } from './fallback-rules.ts';
import { requestFor } from './model-request.ts';
import { processCallMetrics } from '../metrics/process-calls.ts';

/** The row as the runner needs it (the prompt job's payload). */
export interface RowInput {
  batchId: string;
  row: number;
  id: string;
  messages: ChatMessage[];
  model?: string | undefined;
  temperature?: number | undefined;
  max_tokens?: number | undefined;
  metadata: Record<string, unknown>;
  custom_id?: string | undefined;
  params?: Record<string, unknown> | undefined;
  /** The model an A/B split (--ab) gave this row, which names none of its own. */
  abArm?: string | undefined;
  /** Its `model` was put to it by --compare, not named by its record. */
  compared?: true | undefined;
}

export interface RowRunnerDeps {
  config: SwitchyardConfig;
  providers: Map<string, ProviderClient>;
  gate: RowGate;
  /** The row's task type and model chain, with the calls a classifier model made for it; or how long the row waits for the classifier's rate-limit slot (it holds the slot in `progress`). */
  plan: (row: RowInput, progress: RowProgress, confirmClaim?: () => Promise<void>) => Promise<{ plan: RoutePlan; calls: CallRecord[] } | { waitMs: number }>;
  sleep: (ms: number) => Promise<void>;
  /** Waits for one of the process's model-call slots around each call (none: no limit). */
  callSlot?: CallSlot;
  /** The process is stopping (CallSlots.stopping): the row makes no new call, and waits for the resume. */
  stopping?: () => boolean;
  /** Answers given before to the same request (config `cache`); none: every row calls its model. */
  answerCache?: AnswerCache | undefined;
  /** Whether another worker process has this key variable set (worker-registry.ts keyHolders); none: no other. */
  keyHeldElsewhere?: (name: string) => Promise<boolean>;
  /** Throws ClaimLostError when the row's worker no longer holds its job: asked right before each call. */
  confirmClaim?: () => Promise<void>;
  now?: () => number;
}

/**
 * The cache holds rows' own answers alone: an ensemble's members and synthesis, and the judge, are
 * asked each time (a row's result says when its answer came from the cache; theirs could not).
 */
export function withoutCache(deps: RowRunnerDeps): RowRunnerDeps {
  return deps.answerCache ? { ...deps, answerCache: undefined } : deps;
}

export type RowStep =
  | { kind: 'finished'; event: RowEvent; costNanos: number }
  /** Wait `waitMs` without holding a worker slot, then call advanceRow again with `progress`. */
  | { kind: 'park'; waitMs: number; progress: RowProgress; note?: string };

/**
 * A parked row is woken this long before its slot and sleeps the rest in the worker: BullMQ puts a
 * delayed job that comes due behind the jobs already waiting with its priority number or a
 * smaller one (row-priority.ts), so a row woken exactly on time would start late, and late starts
 * bunch up (a burst a rolling-window provider can answer with 429s).
 */
const WAKE_LEAD_MS = 1000;

/** The shortest wait for a circuit: while one caller probes it, the others hear "not yet" with little time left. */
const CIRCUIT_MIN_WAIT_MS = 1000;

/** A row parked because its process stops comes back after this long, for a worker that goes on. */
const STOPPED_PARK_MS = 1000;

/** How often a row waiting for another row's probe of a model looks again: a call's time, about. */
const PROBE_POLL_MS = 250;

/**
 * A row that fits the budget once the calls in flight settle waits for them in the worker this long
 * at most, looking every BUDGET_RECHECK_MS; most calls settle within that. After that it waits
 * parked, BUDGET_PARK_MS at a time, holding no worker slot: holds left by a worker killed mid-call
 * last minutes (until their deadline, redis-row-gate.ts). The wait ends: every hold settles or
 * lapses, so the row either gets its room or finds the budget spent.
 */
const BUDGET_INLINE_WAIT_MS = 30_000;

const BUDGET_RECHECK_MS = 100;

export const BUDGET_PARK_MS = 5_000;

/** The call errors that count toward a model's circuit breaker (health): what shuts a circuit. */
export const CIRCUIT_FAILURES: ReadonlySet<string> = new Set(['server_error', 'timeout', 'connection_error', 'model_not_found', 'endpoint_not_found', 'empty_response', 'bad_response']);

/** Which failures should count toward opening a model's circuit. */
function health(error: ModelCallError): 'failure' | 'neutral' {
  return CIRCUIT_FAILURES.has(error.code) ? 'failure' : 'neutral';
}

/**
 * Moves a row forward: route it, then call its chain's models in order, each behind the breaker,
 * the shared rate limits and the budget, retrying what is worth retrying and falling back when a
 * model is dead, missing, limited for too long or out of attempts. Waits longer than
 * `limits.inline_wait_ms` return a `park` step instead of sleeping in the worker. `saveRow` keeps
 * the row's progress where the queue has it after each failed call, before the row retries or
 * falls back: a worker killed meanwhile leaves those calls (a timed-out one is billed) on record,
 * not only the calls in flight unrecorded.
 */
export async function advanceRow(row: RowInput, progress: RowProgress, deps: RowRunnerDeps, saveRow?: () => Promise<void>): Promise<RowStep> {
  const { config, gate } = deps;
  const now = deps.now ?? Date.now;
  if (!progress.plan) {
    const planned = await deps.plan(row, progress, deps.confirmClaim);
    if ('waitMs' in planned) return { kind: 'park', waitMs: Math.max(config.limits.inline_wait_ms, planned.waitMs - WAKE_LEAD_MS), progress };
    progress.plan = planned.plan;
    progress.calls.push(...planned.calls);
  }
  const plan = progress.plan;

  while (progress.chainIndex < plan.chain.length) {
    // Stopping, the row's next call would not start (CallSlots.stop): it parks, its calls so far kept,
    // before its model's breaker is asked. Its own failed call, in flight at the stop, may have
    // opened the circuit, and the row would be failed for it instead of waiting for the resume (QA:
    // a Ctrl-C with every stream stalled ended with the rows failed, exit 1).
    if (deps.stopping?.()) return { kind: 'park', waitMs: STOPPED_PARK_MS, progress };
    const model = plan.chain[progress.chainIndex]!;
    const modelConfig = config.models[model];
    const provider = modelConfig ? deps.providers.get(modelConfig.provider) : undefined;
    if (!modelConfig || !provider) {
      fallBack(progress, `${model}: not in this batch's config`);
      continue;
    }
    // Nothing is reserved or recorded for a request that would not be sent: no call, no cost record.
    const unsendable = whyNotSendable(provider, model);
    if (unsendable && passedRejectedKey(unsendable, model, progress, config)) continue;
    if (unsendable && (await passedMissingKey(unsendable, model, provider, progress, deps))) continue;
    if (unsendable) return finish(row, progress, model, null, unsendable);
    const request = requestFor(row, model, plan.taskType, config);
    const cacheEntry = deps.answerCache?.entryFor(provider.config.base_url, request);
    // Before the budget and the rate limit: an answer given before costs neither.
    const cached = cacheEntry ? await cacheEntry.lookUp() : null;
    if (cached) {
      await releaseHeldSlot(progress, gate);
      return finishFromCache(row, progress, model, cached, modelConfig.price);
    }
    const estimatedTokens = plan.promptTokens + request.maxTokens;
    const onLimit = modelConfig.on_limit ?? config.limits.on_limit;
    // The budget holds the most the call can cost: its prompt at a bound no tokenizer exceeds (its
    // UTF-8 bytes), not the rate limits' estimate, which IDs, JSON or base64 exceed 2-3 times (QA:
    // a $0.10 cap spent $0.24), and the request fields sent with it, a structured output's schema
    // (QA: a $0.02 cap spent $0.128). What the call did not use comes back when it settles.
    const promptBound = maxMessageTokens(row.messages) + maxParamsTokens(row.params);
    const estimateNanos = callCostNanos(modelConfig.price, { input_tokens: promptBound, output_tokens: request.maxTokens }) ?? 0;

    // A rate-limited model's slot can be minutes away: a row the budget must refuse is refused before it waits for one.
    const refused = modelConfig.rpm !== undefined || modelConfig.tpm !== undefined ? await gate.budgetRefusal(estimateNanos) : null;
    if (refused) {
      await releaseHeldSlot(progress, gate);
      if (passedForCheaper(row, progress, config, promptBound, estimateNanos, refused)) continue;
      return finish(row, progress, model, null, new ModelCallError({ code: 'budget_exceeded', model, message: refused }));
    }
    // Woken before its backoff ended (its batch's parked rows are woken once the budget is spent: prompt-worker.ts), a row waits out the rest.
    const backoffLeft = (progress.retryAt ?? 0) - now();
    if (backoffLeft > config.limits.inline_wait_ms) return { kind: 'park', waitMs: backoffLeft, progress };
    if (backoffLeft > 0) await deps.sleep(backoffLeft);
    progress.retryAt = undefined;

    const held: HeldSlot = {};
    const slot = await takeSlot(model, { tokens: estimatedTokens, promptTokens: plan.promptTokens }, onLimit, progress, deps, held);
    if (slot === 'passed over') continue;
    if (slot !== 'ready') return slot;
    const { probe } = held;
    // What the slot was booked for: the call settles from it (prompt + the expected answer, where the provider meters usage).
    const bookedTokens = held.tokens ?? estimatedTokens;

    const budget = await holdBudget(estimateNanos, progress, deps);
    if (budget.kind !== 'held') {
      // The slot is now and goes unused: it comes back whole, so that rows waiting for the budget
      // do not book and waste one every time they wake (review: each wake pushed the model's next
      // call a request interval later for every batch on it).
      if (probe) await gate.releaseProbe(model, probe);
      await gate.releaseSlot(model, progress.slotAt, bookedTokens);
    }
    if (budget.kind === 'park') return budget;
    if (budget.kind === 'refused') {
      if (passedForCheaper(row, progress, config, promptBound, estimateNanos, budget.message)) continue;
      return finish(row, progress, model, null, new ModelCallError({ code: 'budget_exceeded', model, message: budget.message }));
    }

    let started = now();
    let answer: ModelAnswer | null = null;
    let error: ModelCallError | null = null;
    const meanwhile: { cached: CachedAnswer | null } = { cached: null };
    try {
      const call = async () => {
        // A worker that paused past its claim while the row waited (for this slot, a backoff) must not pay for a row another worker has.
        await deps.confirmClaim?.();
        started = now();
        return callModel(provider, request);
      };
      // Rows with the same request wait for a call slot behind the first one's call: once it is answered, they take its answer.
      // The answer is kept before the slot is let go, so that the next of them finds it. Looked up again whether or not the row
      // waited: one that looked while the first was in flight may come to a free slot just after it (a second read, cache on only).
      const callUnlessCached = cacheEntry
        ? async () => {
            meanwhile.cached = await cacheEntry.lookUp();
            if (meanwhile.cached) return null;
            const answered = await call();
            if (isCacheable(answered)) await cacheEntry.keep(cachedFrom(row, answered));
            return answered;
          }
        : call;
      answer = await (deps.callSlot ?? unlimitedCallSlot)(callUnlessCached);
    } catch (thrown) {
      if (thrown instanceof CallsStopped || thrown instanceof ClaimLostError) {
        // Nothing went out: the slot and the budget hold are handed back. Stopping, the row waits, its calls so far kept, for the resume (or another worker).
        await gate.settle({ model, slotAt: progress.slotAt, estimatedTokens: bookedTokens, actualTokens: 0, budgetHold: budget.hold, actualNanos: 0, health: 'neutral', coolDownMs: null, probe, unsent: true });
        if (thrown instanceof ClaimLostError) throw thrown;
        return { kind: 'park', waitMs: STOPPED_PARK_MS, progress };
      }
      error = thrown instanceof ModelCallError ? thrown : new ModelCallError({ code: 'unexpected_error', model, message: String(thrown) });
    }
    if (meanwhile.cached) {
      // Nothing went out: the slot and the budget hold are handed back.
      await gate.settle({ model, slotAt: progress.slotAt, estimatedTokens: bookedTokens, actualTokens: 0, budgetHold: budget.hold, actualNanos: 0, health: 'neutral', coolDownMs: null, probe, unsent: true });
      return finishFromCache(row, progress, model, meanwhile.cached, modelConfig.price);
    }
    if (error && !error.sent) {
      // The key was rejected (by another row's call) while this one waited for its call slot:
      // nothing went out, so no cost record and no attempt; its slot and budget hold are handed back.
      await gate.settle({ model, slotAt: progress.slotAt, estimatedTokens: bookedTokens, actualTokens: 0, budgetHold: budget.hold, actualNanos: 0, health: 'neutral', coolDownMs: null, probe, unsent: true });
      if (passedRejectedKey(error, model, progress, config)) continue;
      return finish(row, progress, model, null, error);
    }
    progress.attempt++;
    // A call that timed out is charged its estimated prompt, here and in the budget (call-model.ts).
    const charged = chargedUsage(answer, error);
    const usage = charged.usage;
    const actualNanos = callCostNanos(modelConfig.price, usage);
    const record = answerCallRecord(row, progress, model, { answer, error, charged, actualNanos, started, ended: now(), limitWaitMs: held.limitWaitMs });
    progress.calls.push(record);
    processCallMetrics.record(record);
    // A 429's retry-after, or a 200 saying the limit is used up: all workers hold off that long.
    const coolDownMs = error?.code === 'rate_limited' ? (error.retryAfterMs ?? null) : (answer?.limitExhaustedForMs ?? null);
    const circuit = await gate.settle({
      model,
      slotAt: progress.slotAt,
      estimatedTokens: bookedTokens,
      actualTokens: usage.input_tokens + usage.output_tokens,
      promptTokens: plan.promptTokens,
      budgetHold: budget.hold,
      actualNanos: actualNanos ?? 0,
      health: answer ? 'success' : health(error!),
      ...(error ? { failureMessage: error.message } : {}),
      coolDownMs,
      probe,
    });
    if (answer) return finish(row, progress, model, answer, null);
    // Its failure opened the model's circuit (or found it open): with breaker.max_wait_ms the row may wait for the probe.
    if (circuit === 'open') progress.circuitProbeAt = Math.min(progress.circuitProbeAt ?? Number.POSITIVE_INFINITY, now() + config.breaker.cooldown_ms);
    await saveRow?.();
    const next = await retryOrFallBack(row, model, error!, onLimit, progress, deps);
    if (next) return next;
  }

  const circuitWait = waitForProbe(progress, now()) ?? waitForCircuits(progress, config.breaker.max_wait_ms, now());
  if (circuitWait) return circuitWait;
  // The failed row is the last model's it called; one that called none, its first choice's.
  const failedOn = progress.calls.findLast((call) => call.purpose === 'answer')?.model ?? plan.chain[0] ?? plan.skipped[0]?.model ?? '';
  const last = progress.lastError;
  const error = last
    ? new ModelCallError({ code: last.code as ModelCallError['code'], model: failedOn, status: last.status, message: chainFailedMessage(plan, progress, last.message) })
    : new ModelCallError({
        code: 'no_model_available',
        model: '',
        message: noModelMessage(plan, progress),
      });
  return finish(row, progress, failedOn, null, error);
}

/** The probe of a half-open circuit a row was let through as (RowGate.breaker), and the tokens its slot was booked for, for its call's settlement. */
interface HeldSlot {
  probe?: string;
  tokens?: number;
  /** How long the rate limits made the call wait for this slot (ms), for its call record. */
  limitWaitMs?: number;
}

/**
 * Adds a wait the limiter gave for the model's slot to the call's (a wait for another model's was that call's, not
 * this one's). A wait it gave before and the row did not see out (woken early, and told again) counts as far as it
 * went: counted whole, it was counted twice with the wait told after it.
 */
function addLimitWait(progress: RowProgress, model: string, waitMs: number, nowMs: number): void {
  const earlier = progress.limitWait?.model === model ? progress.limitWait : undefined;
  const wait = Math.max(0, waitMs);
  if (wait === 0 && earlier?.until === undefined) return;
  const notWaited = earlier?.until === undefined ? 0 : Math.max(0, earlier.until - nowMs);
  progress.limitWait = { model, ms: Math.max(0, (earlier?.ms ?? 0) - notWaited) + wait, until: nowMs + wait };
}

/**
 * The model's breaker and its shared rate limits: 'ready' once the call may start (after a short
 * wait in the worker, if any), 'passed over' when the row fell back past the model (open circuit,
 * or limited past limits.max_wait_ms), or a park step until a slot booked further away. A parked
 * row comes back holding its slot, unless a 429 meanwhile cooled the model down. A slot too far
 * ahead for a provider that meters usage is not booked (model-limiter.ts): the row parks holding
 * nothing, and books when it comes back nearer its turn.
 */
async function takeSlot(model: string, call: { tokens: number; promptTokens: number }, onLimit: 'wait' | 'fallback', progress: RowProgress, deps: RowRunnerDeps, held: HeldSlot): Promise<'ready' | 'passed over' | RowStep> {
  const { config, gate } = deps;
  const now = deps.now ?? Date.now;
  if (progress.reservedModel === model && (await gate.coolingDownMs(model)) > 0) Object.assign(progress, { reservedModel: undefined, reservedTokens: undefined });
  // A parked row wakes before its slot; one that wakes well after it (its workers stopped, or too
  // busy) books again: the slots passed meanwhile would otherwise all be used at once, a burst over
  // the rate limit. The old one is past, so there is nothing to give back.
  if (progress.reservedModel === model && progress.wakeAt - now() < -WAKE_LEAD_MS) Object.assign(progress, { reservedModel: undefined, reservedTokens: undefined });
  // Asked of a row back for its booked slot too: the circuit may have opened while it waited, and
  // a row let through then would call a provider that is down at the pace of its rate limit.
  const breaker = await gate.breaker(model);
  if (!breaker.allowed) {
    if (progress.reservedModel === model) await releaseHeldSlot(progress, gate);
    const why = breaker.lastError ? `last error: ${breaker.lastError}` : '';
    if (breaker.probing) {
      passOverUnsent(progress, `${model}: one call is testing it after repeated failures${why ? ` (${why})` : ''}`);
      progress.awaitingProbe = true;
      progress.circuitProbeAt = Math.min(progress.circuitProbeAt ?? Number.POSITIVE_INFINITY, now() + Math.min(breaker.retryInMs, PROBE_POLL_MS));
    } else {
      // The time as well: results.jsonl is read later, when "in 29 s" no longer says when.
      passOverUnsent(progress, `${model}: circuit open after repeated failures (${why ? `${why}; ` : ''}next probe in ${seconds(breaker.retryInMs)}, at ${formatClockTime(now() + breaker.retryInMs)})`);
      progress.circuitProbeAt = Math.min(progress.circuitProbeAt ?? Number.POSITIVE_INFINITY, now() + breaker.retryInMs);
    }
    return 'passed over';
  }
  // Let through as the probe, a row that does not call now gives it up: the next caller probes, not one cooldown later.
  const giveUpProbe = async () => {
    if (breaker.probe) await gate.releaseProbe(model, breaker.probe);
  };
  if (progress.reservedModel === model) {
    const untilSlot = progress.wakeAt - now();
    if (untilSlot > WAKE_LEAD_MS + config.limits.inline_wait_ms) {
      await giveUpProbe();
      return { kind: 'park', waitMs: untilSlot - WAKE_LEAD_MS, progress };
    }
    held.tokens = progress.reservedTokens;
    if (untilSlot > 0) await deps.sleep(untilSlot);
  } else {
    const fallsBack = fallsBackOnLimit(onLimit, progress);
    const turn = takeTurn(progress, model, config.limits.max_wait_ms, now());
    const asked = { promptTokens: call.promptTokens, turnTicket: turn.ticket };
    let capacity = await gate.reserveCapacity(model, call.tokens, fallsBack ? waitLeftMs(turn, config.limits.max_wait_ms, now()) : Number.POSITIVE_INFINITY, asked);
    // Every later model's circuit is open: going on would fail the row for a limit a wait here meets.
    if (!capacity.reserved && !capacity.deferred && fallsBack && !(await laterModelOpenToCalls(progress, deps))) capacity = await gate.reserveCapacity(model, call.tokens, Number.POSITIVE_INFINITY, asked);
    if (!capacity.reserved && capacity.deferred) {
      // Its turn is too far ahead to book yet: the row waits holding nothing and asks again nearer
      // it, keeping its place in its batch's line (the batches on the model take turns), and, where
      // the provider meters usage, once the calls before it have settled what they used.
      await giveUpProbe();
      keepTurn(progress, model, capacity.turnTicket, turn);
      addLimitWait(progress, model, capacity.waitMs, now());
      const note = slotWaitNote(model, call.tokens, capacity.waitMs, capacity.limitedBy, config, capacity.tokens);
      return { kind: 'park', waitMs: Math.max(config.limits.inline_wait_ms, capacity.waitMs), progress, ...(note && { note }) };
    }
    if (!capacity.reserved) {
      await giveUpProbe();
      passOverUnsent(progress, `${model}: rate limited (${capacity.limitedBy}) for ${seconds(capacity.waitMs)}, over limits.max_wait_ms`);
      return 'passed over';
    }
    progress.slotAt = capacity.slotAt;
    held.tokens = capacity.tokens ?? call.tokens;
    addLimitWait(progress, model, capacity.waitMs, now());
    if (capacity.waitMs > config.limits.inline_wait_ms) {
      await giveUpProbe();
      progress.reservedModel = model;
      progress.reservedTokens = held.tokens;
      progress.wakeAt = now() + capacity.waitMs;
      const note = slotWaitNote(model, call.tokens, capacity.waitMs, capacity.limitedBy, config, capacity.tokens);
      return { kind: 'park', waitMs: Math.max(config.limits.inline_wait_ms, capacity.waitMs - WAKE_LEAD_MS), progress, ...(note && { note }) };
    }
    if (capacity.waitMs > 0) await deps.sleep(capacity.waitMs);
  }
  if (breaker.probe) held.probe = breaker.probe;
  if (progress.limitWait?.model === model) held.limitWaitMs = Math.round(progress.limitWait.ms);
  Object.assign(progress, { reservedModel: undefined, reservedTokens: undefined, limitWait: undefined });
  return 'ready';
}

/** A wait for a rate-limit slot this long is said (once per batch): the progress line calls 15 s without a row a stall. */
const SLOT_WAIT_NOTED_MS = 15_000;

/**
 * Why rows wait long for their slots, in words (QA: a run paced by tpm at 0.6 rows/s, and one queued
 * behind another batch's slots on the same endpoint for 75 s, said only "no row finished"). Null for
 * short waits, and for a 429's cooldown, which its own note tells of.
 */
export function slotWaitNote(model: string, tokens: number, waitMs: number, limitedBy: 'requests' | 'tokens' | 'cooldown' | null | undefined, config: SwitchyardConfig, bookedTokens?: number): string | null {
  if (waitMs < SLOT_WAIT_NOTED_MS) return null;
  const limits = config.models[model];
  const shared = 'shared by every worker on its endpoint, the batches on it taking turns';
  if (limitedBy === 'requests' && limits?.rpm !== undefined) {
    return `rows wait for ${model}'s rate limit: models.${model}.rpm (${formatCount(limits.rpm)}, ${shared}) ${rpmPace(limits.rpm * config.limits.headroom)}, and this row's turn is ${seconds(waitMs)} away`;
  }
  if (limitedBy === 'tokens' && limits?.tpm !== undefined && limits.tpm_counts !== 'requested' && bookedTokens !== undefined) {
    const perMinute = Math.max(1, Math.floor((limits.tpm * config.limits.headroom) / Math.max(1, bookedTokens)));
    return `rows wait for ${model}'s rate limit: models.${model}.tpm (${formatCount(limits.tpm)}, ${shared}) counts what calls use (tpm_counts: usage), and calls are booked at their prompt and the answers' length so far (${formatCount(bookedTokens)} tokens for this row), so about ${formatCount(perMinute)} such calls start a minute, and this row's turn is ${seconds(waitMs)} away or more`;
  }
  if (limitedBy === 'tokens' && limits?.tpm !== undefined) {
    const perMinute = Math.max(1, Math.floor((limits.tpm * config.limits.headroom) / Math.max(1, tokens)));
    return `rows wait for ${model}'s rate limit: each call books its prompt and max_tokens (${formatCount(tokens)} tokens for this row) against models.${model}.tpm (${formatCount(limits.tpm)}, ${shared}), so about ${formatCount(perMinute)} such calls start a minute, and this row's turn is ${seconds(waitMs)} away; a max_tokens nearer the answers' length lets more calls start, and so does models.${model}.tpm_counts: usage where the provider counts the tokens calls use rather than max_tokens (OpenAI counts max_tokens)`;
  }
  return null;
}

/**
 * The pace an rpm sets, in words. Faster than a call a second it is said as calls a second: an
 * interval in seconds to one decimal read "every 0.0 s" at 6,000 rpm (QA), which says no pace at
 * all. Under ten a second with its tenth, which a whole number rounds away ("about 1 calls" at 70 rpm).
 */
function rpmPace(callsPerMinute: number): string {
  const intervalMs = 60_000 / callsPerMinute;
  const perSecond = callsPerMinute / 60;
  // Up to 1.05 a second the tenth reads "1": the interval ("every 1.0 s") says it in the singular.
  if (perSecond < 1.05) return `lets one call start every ${seconds(intervalMs)}`;
  return `lets about ${formatCount(perSecond, perSecond < 10 ? 1 : 0)} calls start a second`;
}

/** A row that will not make the call it booked a slot for gives the slot back (nothing when it holds none). */
export async function releaseHeldSlot(progress: RowProgress, gate: RowGate): Promise<void> {
  const { reservedModel, reservedTokens } = progress;
  Object.assign(progress, { reservedModel: undefined, reservedTokens: undefined });
  if (reservedModel !== undefined) await gate.releaseSlot(reservedModel, progress.slotAt, reservedTokens ?? 0);
}

type BudgetOutcome = { kind: 'held'; hold: BudgetHold | null } | { kind: 'refused'; message: string } | Extract<RowStep, { kind: 'park' }>;

/**
 * The call's estimate held against the budgets. Calls in flight hold their estimates, priced at
 * max_tokens; most cost a fraction of that. A row that fits once they settle waits for them
 * instead of ending budget_exceeded with money left: in the worker first, then parked.
 */
async function holdBudget(estimateNanos: number, progress: RowProgress, deps: RowRunnerDeps): Promise<BudgetOutcome> {
  const kept = await keptHold(estimateNanos, progress, deps.gate);
  if (kept) return { kind: 'held', hold: kept };
  const budget = await budgetAfterCallsInFlight(() => deps.gate.reserveBudget(estimateNanos), progress.waitingForBudget === true, deps);
  if (!budget.ok && budget.heldByCallsInFlight) {
    progress.waitingForBudget = true;
    return { kind: 'park', waitMs: BUDGET_PARK_MS, progress, ...(budget.waitNote !== undefined && { note: budget.waitNote }) };
  }
  progress.waitingForBudget = undefined;
  return budget.ok ? { kind: 'held', hold: budget.hold } : { kind: 'refused', message: budget.message };
}

/**
 * A reservation asked again while it would fit once the calls in flight settle, for up to
 * BUDGET_INLINE_WAIT_MS in the worker (none for a row parked for it before: it has had its turn).
 * Still so after that, the caller parks the row BUDGET_PARK_MS.
 */
export async function budgetAfterCallsInFlight<D extends BudgetDecision | BudgetTogetherDecision>(reserve: () => Promise<D>, parkedBefore: boolean, deps: Pick<RowRunnerDeps, 'sleep'>): Promise<D> {
  let budget = await reserve();
  const inlineWaitMs = parkedBefore ? 0 : BUDGET_INLINE_WAIT_MS;
  for (let waited = 0; !budget.ok && budget.heldByCallsInFlight && waited < inlineWaitMs; waited += BUDGET_RECHECK_MS) {
    await deps.sleep(BUDGET_RECHECK_MS);
    budget = await reserve();
  }
  return budget;
}

/**
 * The hold reserved for this call before it came to it (an ensemble row's, for each member and its
 * synthesis: ensemble-row.ts), if it has not lapsed meanwhile (a row parked past the holds'
 * deadline); grown first when the call may cost more (a synthesis of long answers, a dearer
 * fallback), if the budget leaves room. Taken once: the call settles it, and a later call of the
 * stage reserves its own. Null: the call reserves alone, as any call does.
 */
async function keptHold(estimateNanos: number, progress: RowProgress, gate: RowGate): Promise<BudgetHold | null> {
  const hold = progress.budgetHold;
  if (!hold) return null;
  progress.budgetHold = undefined;
  return gate.renewBudget(hold, estimateNanos);
}

/** The cost record of one answer call. */
function answerCallRecord(
  row: RowInput,
  progress: RowProgress,
  model: string,
  call: { answer: ModelAnswer | null; error: ModelCallError | null; charged: ReturnType<typeof chargedUsage>; actualNanos: number | null; started: number; ended: number; limitWaitMs: number | undefined },
): CallRecord {
  const { answer, error, charged } = call;
  return {
    batch_id: row.batchId,
    row: row.row,
    id: row.id,
    model,
    // Counted from the row's calls, not `progress.attempt`: that restarts after a wait for open
    // circuits (a fresh set of retries), and the calls after it are still repeat calls to the model.
    // An earlier run's calls carried over (recorded) are not counted: a resume starts at 1, as a plain row's does.
    attempt: progress.calls.filter((earlier) => earlier.model === model && !earlier.recorded).length + 1,
    purpose: 'answer',
    task_type: progress.plan?.taskType ?? '',
    chain_position: progress.chainIndex,
    ...(row.abArm !== undefined && { ab_arm: row.abArm }),
    status: answer ? 'succeeded' : 'failed',
    http_status: answer?.httpStatus ?? error?.status ?? null,
    input_tokens: charged.usage.input_tokens,
    output_tokens: charged.usage.output_tokens,
    cost_usd: call.actualNanos === null ? null : nanosToUsd(call.actualNanos),
    latency_ms: call.ended - call.started - charged.countingMs,
    started_at: new Date(call.started).toISOString(),
    ...(error ? { error_code: error.code, error_message: callErrorMessage(error.message) } : {}),
    ...(charged.estimated ? { usage_estimated: true as const } : {}),
    ...(answer?.ttftMs != null ? { ttft_ms: answer.ttftMs } : {}),
    ...(call.limitWaitMs ? { limit_wait_ms: call.limitWaitMs } : {}),
  };
}

/**
 * After a failed call: the row's failed result (an error not worth retrying), a park step (a
 * backoff longer than limits.inline_wait_ms), or null to go on with the loop, on the same model
 * after a short backoff or on the next one (a 404, attempts used up, a rate limit past max_wait_ms).
 */
async function retryOrFallBack(row: RowInput, model: string, failure: ModelCallError, onLimit: 'wait' | 'fallback', progress: RowProgress, deps: RowRunnerDeps): Promise<RowStep | null> {
  const { config } = deps;
  progress.lastError = { code: failure.code, message: failure.message, status: failure.status };
  if (failure.code === 'model_not_found' || failure.code === 'endpoint_not_found') {
    fallBack(progress, `${model}: ${failure.code === 'model_not_found' ? 'not found at its provider' : "its provider's URL not found"} (404)`);
    return null;
  }
  // What answered is no model (a proxy's page, another API) or answered nothing: asking again
  // would not help, another model may. (These count toward the circuit too: see health().)
  if (failure.code === 'bad_response' || failure.code === 'empty_response') {
    fallBack(progress, `${model}: ${failure.code === 'bad_response' ? 'answered with no chat completion' : 'answered with no choices'}`);
    return null;
  }
  const refusal = refusalAnotherModelMayNotMeet(failure, model, progress, config);
  if (refusal) {
    fallBack(progress, `${model}: ${refusal}`);
    return null;
  }
  if (!failure.retryable) return finish(row, progress, model, null, failure);
  if (progress.attempt >= config.retry.max_attempts) {
    fallBack(progress, `${model}: ${failure.code} after ${counted(progress.attempt, 'attempt')}`);
    return null;
  }
  const delay = retryDelayMs(progress.attempt, config.retry, failure.retryAfterMs);
  if (failure.code === 'rate_limited' && fallsBackOnLimit(onLimit, progress) && delay > config.limits.max_wait_ms && (await laterModelOpenToCalls(progress, deps))) {
    fallBack(progress, `${model}: rate limited for ${seconds(delay)}, over limits.max_wait_ms`);
    return null;
  }
  if (delay > config.limits.inline_wait_ms) {
    // A long wait says what it is for once, or a batch looks stuck ("no row finished for 45 s").
    const asked = failure.retryAfterMs !== null ? 'as it asks' : 'backing off (it said not how long)';
    const note = failure.code === 'rate_limited' ? `${model} answered 429 (rate limited): rows wait ${asked}, ${seconds(delay)} this time, before calling it again` : undefined;
    progress.retryAt = (deps.now ?? Date.now)() + delay;
    return { kind: 'park', waitMs: delay, progress, ...(note && { note }) };
  }
  await deps.sleep(delay);
  return null;
}

/**
 * A chain that ended without calling any model because one was being tested by another row's call
 * (a half-open circuit): the row waits for that call's outcome and runs its chain again. Whatever
 * breaker.max_wait_ms says: the model has had its cooldown, and the outcome is one call away. The
 * wait ends: the probe closes the circuit, re-opens it (then breaker.max_wait_ms decides), or its
 * lock expires and this row may be the next probe.
 */
function waitForProbe(progress: RowProgress, now: number): RowStep | null {
  if (!progress.awaitingProbe || progress.lastError !== undefined || progress.circuitProbeAt === undefined) return null;
  const waitMs = Math.max(0, progress.circuitProbeAt - now) * (1 + Math.random() * 0.2);
  const waitingOn = modelsPassedOver(progress);
  Object.assign(progress, { chainIndex: 0, attempt: 0, fallbackReasons: [], circuitProbeAt: undefined, awaitingProbe: undefined, reservedModel: undefined, reservedTokens: undefined });
  return { kind: 'park', waitMs: Math.round(waitMs), progress, note: `rows wait while one call tests ${waitingOn.join(', ')} after repeated failures (its circuit breaker's probe)` };
}

/**
 * A chain that ended on open circuits, with breaker.max_wait_ms left: the row waits for the soonest
 * probe (a little later, so the rows parked together do not all wake at once), then runs its chain
 * again from the first model.
 */
function waitForCircuits(progress: RowProgress, maxWaitMs: number, now: number): RowStep | null {
  const probeAt = progress.circuitProbeAt;
  if (maxWaitMs <= 0 || probeAt === undefined) return null;
  const since = progress.circuitWaitSince ?? now;
  const waitMs = Math.max(CIRCUIT_MIN_WAIT_MS, probeAt - now) * (1 + Math.random() * 0.1);
  if (now + waitMs - since > maxWaitMs) {
    if (progress.circuitWaitSince !== undefined) progress.fallbackReasons.push(`waited ${seconds(now - since)} in all for open circuits (breaker.max_wait_ms: ${seconds(maxWaitMs)})`);
    return null;
  }
  const waitingOn = modelsPassedOver(progress);
  Object.assign(progress, { chainIndex: 0, attempt: 0, fallbackReasons: [], lastError: undefined, circuitProbeAt: undefined, awaitingProbe: undefined, circuitWaitSince: since, reservedModel: undefined, reservedTokens: undefined });
  const note = `rows wait for the circuits of ${waitingOn.join(', ')} to close (a probe call every breaker.cooldown_ms), for up to ${seconds(maxWaitMs)} each (breaker.max_wait_ms)`;
  return { kind: 'park', waitMs: Math.round(waitMs), progress, note };
}

/** The models of the pass through the chain that just ended: each fallback reason starts with its model's name. */
function modelsPassedOver(progress: RowProgress): string[] {
  return [...new Set(progress.fallbackReasons.map((reason) => reason.slice(0, reason.indexOf(':'))))];
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(ms < 10_000 ? 1 : 0)} s`;
}

function cachedFrom(row: RowInput, answer: ModelAnswer): CachedAnswer {
  return { output: answer.output, finish_reason: answer.finishReason, usage: answer.usage, request_id: answer.requestId, batch_id: row.batchId, row: row.row, cached_at: new Date().toISOString() };
}
