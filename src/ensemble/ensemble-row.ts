import { DEFAULT_MIN_ANSWERS } from '../config/schema.ts';
import { advanceRow, budgetAfterCallsInFlight, BUDGET_PARK_MS, releaseHeldSlot, withoutCache, type RowInput, type RowRunnerDeps, type RowStep } from '../execution/row-runner.ts';
import { requestFor } from '../execution/model-request.ts';
import { callCostNanos } from '../models/pricing.ts';
import { maxMessageTokens, maxParamsTokens } from '../routing/token-count.ts';
import { callTotals } from '../execution/row-result.ts';
import { pinnedCallProgress } from '../execution/pinned-call.ts';
import { everyCall, keptBudgetHolds, type ProgressCheckpoint, type RowProgress } from '../execution/row-progress.ts';
import type { RowFailure, RowResult } from '../output/records.ts';
import { maxTokensOfRow, noModelMessage } from '../routing/route-plan.ts';
import type { NamedEnsemble } from '../routing/row-target.ts';
import { synthesisMessages } from './synthesis-prompt.ts';
import type { RowGate } from '../execution/row-gate.ts';

type EnsembleState = NonNullable<RowProgress['ensemble']>;

export interface EnsembleRowOptions {
  /** Saves the row's progress: each member's answer as it comes while others still work, every failed call, and the members' answers before the synthesis call. */
  checkpoint?: ProgressCheckpoint | undefined;
  /** The row's task type by the routing rules: an ensemble row is not routed, but its result and its calls' cost records carry it, as a pinned row's do. */
  taskType?: string | undefined;
}

/**
 * Moves an ensemble row forward: every member answers (at the same time, each call behind its
 * model's breaker, rate limits, budget and retries, as any row's), then the synthesizer writes one
 * answer from theirs. A member that must wait parks the row; the members already done keep their
 * answers in its progress, so a woken row only runs what is left. Once the members have answered,
 * `checkpoint` saves them before the synthesis call: a worker killed during that call (the slowest
 * of the row's, on the strongest model) leaves a row that only needs its synthesis again, with the
 * members' calls on record. Too few answers end the row ensemble_failed without a synthesis call.
 */
export async function advanceEnsembleRow(row: RowInput, progress: RowProgress, deps: RowRunnerDeps, ensemble: NamedEnsemble, options: EnsembleRowOptions = {}): Promise<RowStep> {
  const { name, config } = ensemble;
  const { checkpoint, taskType = '' } = options;
  const { maxTokens, maxTokensFrom } = maxTokensOfRow(row, deps.config);
  // The ensemble's temperature goes to its members and synthesizer as the row's own would (a row's own still wins).
  const temperature = row.temperature ?? config.temperature;
  const state: EnsembleState = (progress.ensemble ??= {
    members: await Promise.all(
      config.members.map(async (model) => ({
        model,
        progress: await pinnedCallProgress(deps.config, { model, messages: row.messages, params: row.params, maxTokens, maxTokensFrom, taskType, reason: `ensemble "${name}" member`, notTo: config.members }),
      })),
    ),
  });

  const needed = config.min_answers ?? DEFAULT_MIN_ANSWERS;
  const unfit = state.members.filter((member) => !member.outcome && member.progress.plan?.chain.length === 0);
  for (const member of unfit) member.outcome = { status: 'failed', output: null, final_model: null, error: { code: 'no_model_available', message: noModelMessage(member.progress.plan!) } };
  const possible = state.members.filter((member) => member.outcome?.status !== 'failed').length;
  if (possible < needed) {
    // Members that failed (one failed while another waited) or that no model can hold the prompt for leave too
    // few to reach min_answers: the row fails before the others are paid for.
    const failure = tooFewAnswers(state, name, needed, `${possible} of ${config.members.length} members can still answer`);
    for (const member of state.members) {
      if (member.outcome) continue;
      member.outcome = { status: 'failed', output: null, final_model: null, error: { code: 'ensemble_failed', message: `given up: too few other members can answer (${needed} needed)` } };
      await releaseHeldSlot(member.progress, deps.gate); // a rate-limit slot it waited for goes back
    }
    return finishReleasing(deps.gate, row, progress, ensemble, null, failure, taskType);
  }

  const saveRow = checkpoint && (() => checkpoint(progress));
  const pending = state.members.filter((member) => !member.outcome);
  const started = state.members.some((member) => member.outcome?.status === 'succeeded' || member.progress.calls.length > 0);
  if (!started && !state.budgetAsked) {
    // Not one member paid for yet: the row starts only if the budget holds all of it, members and synthesis.
    const whole = await reserveWholeRow(row, state, pending, deps, ensemble, { maxTokens, temperature, taskType });
    if (whole.kind === 'park') return { ...whole, progress };
    if (whole.kind === 'refused') {
      for (const member of pending) member.outcome = { status: 'failed', output: null, final_model: null, error: { code: 'budget_exceeded', message: 'not run: the budget could not hold the whole row' } };
      const failure: RowFailure = { code: 'budget_exceeded', message: `ensemble "${name}", its ${pending.length} members and synthesis: ${whole.message}`, http_status: null };
      return finishReleasing(deps.gate, row, progress, ensemble, null, failure, taskType);
    }
  }
  if (pending.length > 0) {
    let running = pending.length;
    const settled = await Promise.allSettled(
      pending.map(async (member) => {
        const step = await advanceRow({ ...row, model: member.model, temperature }, member.progress, withoutCache(deps), saveRow);
        running--;
        if (step.kind === 'finished') {
          const { status, output, error, final_model, fallback_reason } = step.event.result;
          member.outcome = { status, output, final_model, ...(error ? { error } : {}), ...(fallback_reason ? { fallback_reason } : {}) };
          // Kept as it comes while other members still work (one may retry for a minute): a worker killed then leaves this paid answer on record, not to be bought again.
          if (running > 0) await saveRow?.();
        }
        return step;
      }),
    );
    // A member that crashed (Redis, a bug) crashes the row once the others have stopped, so that none writes the row's progress after the crash's.
    const crashed = settled.find((one) => one.status === 'rejected');
    if (crashed) throw crashed.reason;
    const steps = settled.map((one) => (one as PromiseFulfilledResult<RowStep>).value);
    // Woken for the member due first; one due later parks the row again for the rest of its wait.
    const firstDue = steps.reduce<RowStep | null>((first, step) => (step.kind === 'park' && (first?.kind !== 'park' || step.waitMs < first.waitMs) ? step : first), null);
    if (firstDue?.kind === 'park' && !(await gaveUpLimitedMembers(state, pending, steps, needed, deps))) return { ...firstDue, progress };
  }

  const answers = state.members.flatMap((member) => (member.outcome?.status === 'succeeded' ? [{ model: member.model, output: member.outcome.output ?? '' }] : []));
  if (answers.length < needed) return finishReleasing(deps.gate, row, progress, ensemble, null, tooFewAnswers(state, name, needed, `${answers.length} of ${config.members.length} members answered`), taskType);

  if (pending.length > 0) await checkpoint?.(progress);
  const messages = synthesisMessages(row.messages, answers, config.synthesis_prompt);
  const synthesisMaxTokens = config.synthesis_max_tokens ?? maxTokens;
  if (!state.synthesis?.plan) {
    // Calls kept: a synthesis of a failed row carried over (carried-progress.ts keptAfterFinish) was paid for; it is planned again on the answers it has now.
    state.synthesis = { ...(await pinnedCallProgress(deps.config, { model: config.synthesizer, messages, params: row.params, maxTokens: synthesisMaxTokens, maxTokensFrom: `ensembles.${name}.synthesis_max_tokens`, taskType, reason: `ensemble "${name}" synthesis`, notTo: [] })), calls: state.synthesis?.calls ?? [] };
  }
  // The synthesis' share of the row's reservation becomes its call's hold.
  if (state.synthesisHold) {
    state.synthesis.budgetHold ??= state.synthesisHold;
    state.synthesisHold = undefined;
  }
  const step = await advanceRow({ ...row, messages, model: config.synthesizer, temperature, max_tokens: synthesisMaxTokens }, state.synthesis, withoutCache(deps), saveRow);
  if (step.kind === 'park') return { ...step, progress };
  return finishReleasing(deps.gate, row, progress, ensemble, step.event.result, null, taskType);
}

/**
 * How many bytes of a synthesis prompt a member's answer is taken to fill per token of its max_tokens,
 * in the reservation made before the members answer: English text runs about 4 bytes a token. The
 * synthesis' own call holds what its prompt, answers in, may cost (its UTF-8 bytes, as any call's):
 * its share grows to that then if the budget has room (row-runner.ts keptHold), and only a row whose
 * answers run longer than this can still be refused its synthesis.
 */
const ANSWER_BYTES_PER_TOKEN = 4;

type WholeRow = { kind: 'held' } | { kind: 'refused'; message: string } | { kind: 'park'; waitMs: number; note?: string };

/**
 * Holds, in one reservation, what the row may cost before any member is paid for: each member's
 * call at its first model's most (its prompt's UTF-8 bytes and max_tokens, as row-runner.ts holds a
 * call), and the synthesis' at the synthesizer's, its prompt taken to hold every answer at its
 * max_tokens. Each share is kept in its stage's progress for that stage's first call, which takes it
 * as its hold; what is not used is released when the row ends (finishReleasing), and a stop
 * releases those of a row it takes off the queue. Refused once, or when no budget is tracked, the
 * row is never asked again: a resumed row with answers runs what it lacks, each call on its own.
 */
async function reserveWholeRow(row: RowInput, state: EnsembleState, pending: EnsembleState['members'], deps: RowRunnerDeps, ensemble: NamedEnsemble, asked: { maxTokens: number; temperature: number | undefined; taskType: string }): Promise<WholeRow> {
  const { config: ensembleConfig } = ensemble;
  const { config } = deps;
  const promptBound = maxMessageTokens(row.messages) + maxParamsTokens(row.params);
  const callMost = (model: string | undefined, input: RowInput, inputTokens: number): { nanos: number; maxTokens: number } => {
    const modelConfig = model === undefined ? undefined : config.models[model];
    if (!modelConfig || model === undefined) return { nanos: 0, maxTokens: 0 };
    const request = requestFor(input, model, asked.taskType, config);
    return { nanos: callCostNanos(modelConfig.price, { input_tokens: inputTokens, output_tokens: request.maxTokens }) ?? 0, maxTokens: request.maxTokens };
  };
  const members = pending.map((member) => callMost(member.progress.plan?.chain[0], { ...row, model: member.model, temperature: asked.temperature }, promptBound));
  const synthesisPrompt = synthesisMessages(row.messages, pending.map((member) => ({ model: member.model, output: '' })), ensembleConfig.synthesis_prompt);
  const answersBound = members.reduce((sum, member) => sum + member.maxTokens * ANSWER_BYTES_PER_TOKEN, 0);
  const synthesisInput: RowInput = { ...row, messages: synthesisPrompt, model: ensembleConfig.synthesizer, temperature: asked.temperature, max_tokens: ensembleConfig.synthesis_max_tokens ?? asked.maxTokens };
  const synthesis = callMost(ensembleConfig.synthesizer, synthesisInput, maxMessageTokens(synthesisPrompt) + maxParamsTokens(row.params) + answersBound);
  const decision = await budgetAfterCallsInFlight(() => deps.gate.reserveBudgetTogether([...members.map((member) => member.nanos), synthesis.nanos]), state.waitingForBudget === true, deps);
  if (!decision.ok && decision.heldByCallsInFlight) {
    state.waitingForBudget = true;
    return { kind: 'park', waitMs: BUDGET_PARK_MS, ...(decision.waitNote !== undefined && { note: decision.waitNote }) };
  }
  state.waitingForBudget = undefined;
  state.budgetAsked = true;
  if (!decision.ok) return { kind: 'refused', message: decision.message };
  if (decision.holds.length > 0) {
    pending.forEach((member, i) => (member.progress.budgetHold = decision.holds[i]));
    state.synthesisHold = decision.holds[pending.length];
  }
  return { kind: 'held' };
}

/** The row's result, once the holds it kept for calls it did not make are released. */
async function finishReleasing(gate: RowGate, row: RowInput, progress: RowProgress, ensemble: NamedEnsemble, synthesis: RowResult | null, failure: RowFailure | null, taskType: string): Promise<RowStep> {
  await releaseKeptHolds(progress, gate);
  return finishEnsemble(row, progress, ensemble, synthesis, failure, taskType);
}

/** Releases the budget an ensemble row holds for calls still to come, and forgets it. */
export async function releaseKeptHolds(progress: RowProgress, gate: RowGate): Promise<void> {
  const holds = keptBudgetHolds(progress);
  if (holds.length === 0) return;
  await Promise.all(holds.map((hold) => gate.releaseBudget(hold)));
  const state = progress.ensemble;
  if (!state) return;
  state.synthesisHold = undefined;
  for (const member of state.members) member.progress.budgetHold = undefined;
  if (state.synthesis) state.synthesis.budgetHold = undefined;
}

/**
 * Under on_limit fallback, members that wait for a rate limit past limits.max_wait_ms (a slot, or a
 * 429's retry-after) are given up once the other members have answered min_answers: the row goes on
 * to its synthesis rather than wait, its answers paid for, as it did before the chain's last model
 * waited (review: a member with no fallbacks is a chain of one). True when every member still
 * parked was given up (their booked slots go back); else the row parks as before, as it does in a
 * process that is stopping.
 */
async function gaveUpLimitedMembers(state: EnsembleState, pending: EnsembleState['members'], steps: readonly RowStep[], needed: number, deps: RowRunnerDeps): Promise<boolean> {
  const answered = state.members.filter((member) => member.outcome?.status === 'succeeded').length;
  if (answered < needed) return false;
  // A stopping process parks members for the stop (STOPPED_PARK_MS, 1 s), not for a limit: under a max_wait_ms
  // below that, one whose last error was a 429 was read as limited and failed (review). The resume judges its limit afresh.
  if (deps.stopping?.()) return false;
  const { limits } = deps.config;
  const now = (deps.now ?? Date.now)();
  // How long until the member's call, not its park: a slot's park ends WAKE_LEAD_MS before the slot (row-runner.ts takeSlot).
  const parked = pending.flatMap((member, i) => {
    const step = steps[i]!;
    if (step.kind !== 'park') return [];
    const { reservedModel, wakeAt } = member.progress;
    return [{ member, waitMs: reservedModel !== undefined ? Math.max(step.waitMs, wakeAt - now) : step.waitMs }];
  });
  const limitedPast = ({ member, waitMs }: (typeof parked)[number]): boolean => {
    const { progress } = member;
    const model = progress.plan?.chain[progress.chainIndex];
    const onLimit = (model !== undefined ? deps.config.models[model]?.on_limit : undefined) ?? limits.on_limit;
    // A member deferred past the book-ahead (its turnTicket) waits for its slot as one holding it does.
    const limited = !progress.waitingForBudget && (progress.reservedModel !== undefined || progress.turnTicket !== undefined || progress.lastError?.code === 'rate_limited');
    return onLimit === 'fallback' && limited && waitMs > limits.max_wait_ms;
  };
  if (!parked.every(limitedPast)) return false;
  for (const { member, waitMs } of parked) {
    const model = member.progress.plan?.chain[member.progress.chainIndex] ?? member.model;
    await releaseHeldSlot(member.progress, deps.gate);
    const limitedFor = `${model}: rate limited, its next call ${Math.ceil(waitMs / 1000)} s away, over limits.max_wait_ms`;
    const message = `${limitedFor}; given up, as ${answered} other members answered (min_answers ${needed})`;
    // The row's fallback_reason says it too, after whatever the member met before (QA: it read null,
    // though the row was synthesized from one answer fewer). No ';' inside: the reasons are split on it.
    const givenUp = `${limitedFor}, given up as ${answered} other members answered (min_answers ${needed})`;
    const fallbackReason = [...member.progress.fallbackReasons, givenUp].join('; ');
    member.outcome = { status: 'failed', output: null, final_model: null, error: { code: 'no_model_available', message }, fallback_reason: fallbackReason };
  }
  return true;
}

/** Why the row has too few answers for its synthesis: each member's failure; budget_exceeded when the budget refused one, so the summary says how to finish it (a higher budget). */
function tooFewAnswers(state: EnsembleState, name: string, needed: number, what: string): RowFailure {
  const failed = state.members.filter((member) => member.outcome?.status === 'failed');
  // "m failed: ..." names its model already ("m: m failed: ..." read as a stutter, QA).
  const reasons = failed.map(({ model, outcome }) => {
    const message = outcome?.error?.message ?? 'no answer';
    return message.startsWith(`${model} failed: `) ? message : `${model}: ${message}`;
  });
  const byBudget = failed.some((member) => member.outcome?.error?.code === 'budget_exceeded');
  return { code: byBudget ? 'budget_exceeded' : 'ensemble_failed', message: `ensemble "${name}": ${what}, ${needed} needed; ${reasons.join('; ')}`, http_status: null };
}

/** The row's result: the synthesis (or the failure), every member's answer, and every call's cost. */
function finishEnsemble(row: RowInput, progress: RowProgress, ensemble: NamedEnsemble, synthesis: RowResult | null, failure: RowFailure | null, taskType: string): RowStep {
  const state = progress.ensemble!;
  const calls = everyCall(progress);
  const totals = callTotals(calls);
  // The members run side by side: the row took as long as the slowest of them, then the synthesis.
  const membersMs = Math.max(0, ...state.members.map((member) => callTotals(member.progress.calls).latencyMs));
  const synthesisMs = callTotals(state.synthesis?.calls ?? []).latencyMs;
  const answered = state.members.filter((member) => member.outcome?.status === 'succeeded').length;
  // The synthesis prompt holds the members' answers, so its size (and any error about it) is not the row's own prompt's.
  const error = synthesis?.error ? { ...synthesis.error, message: `ensemble "${ensemble.name}", synthesis of ${answered} answers: ${synthesis.error.message}` } : failure;
  const succeeded = synthesis?.status === 'succeeded';
  // A row that never reached its synthesis is the ensemble's failure, not the synthesizer's.
  const synthesizedBy = synthesis?.model ?? ensemble.name;
  const synthesisCalled = (state.synthesis?.calls.length ?? 0) > 0;
  // A synthesis that made no call (the budget refused it, no model could hold it) synthesized nothing.
  const synthesisText = !synthesis ? '' : succeeded || synthesisCalled ? `, synthesized by ${synthesizedBy}` : `, its synthesis (${synthesizedBy}) not sent`;
  const fallbackReasons = [
    ...state.members.flatMap((member) => (member.outcome?.fallback_reason ? [`member ${member.model}: ${member.outcome.fallback_reason}`] : [])),
    ...(synthesis?.fallback_reason ? [`synthesis: ${synthesis.fallback_reason}`] : []),
  ];
  const result: RowResult = {
    id: row.id,
    row: row.row,
    status: succeeded ? 'succeeded' : 'failed',
    model: synthesizedBy,
    output: synthesis?.output ?? null,
    usage: totals.usage,
    cost_usd: totals.costUsd,
    latency_ms: membersMs + synthesisMs,
    attempts: totals.answerCalls,
    metadata: row.metadata,
    task_type: taskType || null,
    route_reason: `${row.abArm !== undefined ? 'A/B arm: ' : row.compared ? 'compared: ' : ''}ensemble "${ensemble.name}": ${answered} of ${state.members.length} members answered${synthesisText}`,
    ...(row.abArm !== undefined && { ab_arm: row.abArm }),
    models_tried: [...new Set(calls.map((call) => call.model))],
    final_model: succeeded ? synthesizedBy : null,
    fallback_reason: fallbackReasons.length > 0 ? fallbackReasons.join('; ') : null,
    ensemble: {
      name: ensemble.name,
      // The model that wrote the synthesis, a fallback of the configured synthesizer's included (QA: it named the configured one
      // beside a final_model that was its fallback); the configured one when none was written.
      synthesizer: succeeded ? synthesizedBy : ensemble.config.synthesizer,
      members: state.members.map((member) => ({
        model: member.model,
        status: member.outcome?.status ?? 'failed',
        output: member.outcome?.output ?? null,
        final_model: member.outcome?.final_model ?? null,
        ...(member.outcome?.error ? { error: member.outcome.error } : {}),
      })),
    },
    completed_at: new Date().toISOString(),
  };
  if (row.custom_id !== undefined) result.custom_id = row.custom_id;
  if (synthesis?.finish_reason !== undefined) result.finish_reason = synthesis.finish_reason;
  if (synthesis?.request_id !== undefined) result.request_id = synthesis.request_id;
  if (synthesis?.refusal !== undefined) result.refusal = synthesis.refusal;
  if (!succeeded && error) result.error = error;
  return { kind: 'finished', event: { result, calls }, costNanos: totals.costNanos };
}
