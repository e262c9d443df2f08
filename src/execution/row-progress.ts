import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import type { BudgetHold } from '../limits/budget.ts';
import type { CallRecord, RowResult } from '../output/records.ts';

/**
 * How far a row has got, saved in its job's data whenever the job is parked (waiting for a rate
 * limit slot or a backoff), and by an ensemble row once its members have answered, so the row
 * resumes where it stopped: same route, same attempt count, the calls already made (their cost
 * records go out with the row's result).
 */
export const routePlanSchema = z.object({
  taskType: z.string(),
  routeReason: z.string(),
  chain: z.array(z.string()),
  skipped: z.array(z.object({ model: z.string(), reason: z.string(), at: z.number().int().nonnegative().optional(), contextWindow: z.number().int().positive().optional() })),
  promptTokens: z.number().int().nonnegative(),
  promptTokensCounted: z.boolean().default(false),
  maxTokensFrom: z.string().optional(),
  fields: z.object({ names: z.array(z.string()), tokens: z.number().int().nonnegative() }).optional(),
  chainFrom: z.string().optional(),
});
export type RoutePlan = z.infer<typeof routePlanSchema>;

/** A budget hold (limits/budget.ts BudgetHold) kept in a row's progress for a call still to come. */
const budgetHoldSchema = z.object({ member: z.string(), estimateNanos: z.number().int().nonnegative(), scopes: z.array(z.object({ scope: z.enum(['batch', 'month']), key: z.string() })) });

const callRecordSchema = z.custom<CallRecord>((value) => typeof value === 'object' && value !== null && 'model' in value && 'attempt' in value);

const progressFields = {
  plan: routePlanSchema.optional(),
  /** Index into plan.chain of the model being tried. */
  chainIndex: z.number().int().nonnegative().default(0),
  /** Calls made to the current model so far. */
  attempt: z.number().int().nonnegative().default(0),
  calls: z.array(callRecordSchema).default([]),
  fallbackReasons: z.array(z.string()).default([]),
  /** The model whose rate-limit slot this job holds while parked. */
  reservedModel: z.string().optional(),
  /** That slot's start (Redis clock); the call's tokens are settled against it. */
  slotAt: z.number().default(0),
  /** The tokens the slot was booked for, so a stop that takes the row off the queue can give it back. */
  reservedTokens: z.number().optional(),
  /** The same start on the parking worker's clock (epoch ms), for the last stretch of the wait. */
  wakeAt: z.number().default(0),
  /**
   * Parked without a slot, its slot too far ahead to book (a provider that meters usage): its place
   * among such rows, to ask again with, and when it was first deferred (epoch ms), so that
   * limits.max_wait_ms bounds its whole wait, not each ask's.
   */
  turnTicket: z.object({ model: z.string(), ticket: z.number().int(), since: z.number().optional() }).optional(),
  lastError: z.object({ code: z.string(), message: z.string(), status: z.number().nullable() }).optional(),
  /**
   * How long the model's shared rate limits have made this call wait for its slot so far (ms, the
   * waits the limiter gave, over every park): its call record's limit_wait_ms. Limits are shared by
   * every batch on an endpoint, so a batch's own call rate does not show that it waited on them.
   * `until`: when the last wait given ends (epoch ms), so that one cut short counts only as far as it went.
   */
  limitWait: z.object({ model: z.string(), ms: z.number().nonnegative(), until: z.number().optional() }).optional(),
  /** Parked for a retry's backoff: not to call before this (epoch ms), should the row be woken early. */
  retryAt: z.number().optional(),
  /** Parked while budget held by calls in flight comes back (it has had its wait in the worker). */
  waitingForBudget: z.boolean().optional(),
  /**
   * Budget held for this stage's next call before it came to it: an ensemble member's or synthesis'
   * share of the row's reservation (ensemble-row.ts), which that call takes as its own hold.
   */
  budgetHold: budgetHoldSchema.optional(),
  /** This pass through the chain found a model's circuit open (passed over, or opened by the row's own failure): the soonest probe (epoch ms). */
  circuitProbeAt: z.number().optional(),
  /** When the row first waited for open circuits (epoch ms): breaker.max_wait_ms counts from here. */
  circuitWaitSince: z.number().optional(),
  /** This pass found a model's circuit testing it with one call (half-open): worth waiting for, whatever breaker.max_wait_ms. */
  awaitingProbe: z.boolean().optional(),
  /** The LLM classifier's label for the row, kept so that the row, stopped and resumed, is not classified (and paid for) again. */
  classified: z.object({ taskType: z.string(), reason: z.string() }).optional(),
};

/** A member of an ensemble row: its own progress through its model, and once done, what it answered. */
const ensembleMemberSchema = z.object({
  model: z.string(),
  progress: z.object(progressFields),
  outcome: z
    .object({
      status: z.enum(['succeeded', 'failed']),
      output: z.string().nullable(),
      /** The model that answered: the member's own, or one of its fallbacks. */
      final_model: z.string().nullable().default(null),
      error: z.object({ code: z.string(), message: z.string(), http_status: z.number().nullable().optional() }).optional(),
      fallback_reason: z.string().optional(),
    })
    .optional(),
});

const rowResultSchema = z.custom<RowResult>((value) => typeof value === 'object' && value !== null && 'row' in value && 'status' in value);

export const rowProgressSchema = z.object({
  ...progressFields,
  /** An ensemble row (src/ensemble/): its members' progress, then the synthesis call's. */
  ensemble: z
    .object({
      members: z.array(ensembleMemberSchema),
      synthesis: z.object(progressFields).optional(),
      /** The whole row was reserved for before its members started: the synthesis' share, until its progress is planned. */
      synthesisHold: budgetHoldSchema.optional(),
      /** Whether the row's members started (or the row was refused) after the whole row was asked of the budget. */
      budgetAsked: z.boolean().optional(),
      /** Parked while budget held by calls in flight comes back, before the members start. */
      waitingForBudget: z.boolean().optional(),
    })
    .optional(),
  /** A judged row (src/judge/) once answered: the answer's result, and the judge call's progress. */
  judging: z.object({ answer: rowResultSchema, progress: z.object(progressFields) }).optional(),
});
export type RowProgress = z.infer<typeof rowProgressSchema>;

/** What every stage's progress has (the answer's, a member's, the synthesis', the judge's): its calls and the waits it holds. */
export type StageProgress = Omit<RowProgress, 'ensemble' | 'judging'>;

/**
 * Saves a row's progress in its job while the row goes on, so that a worker killed later (kill -9,
 * out of memory) does not cost the work done so far again. Best effort: it never fails the row.
 */
export type ProgressCheckpoint = (progress: RowProgress) => Promise<void>;

export function freshProgress(): RowProgress {
  return { chainIndex: 0, attempt: 0, calls: [], fallbackReasons: [], slotAt: 0, wakeAt: 0 };
}

/**
 * Every call the row has made: its own, then an ensemble's members' and synthesis', then the
 * judge's (marked so), so each has its cost record whichever way the row ends, a crash included.
 */
export function everyCall(progress: RowProgress): CallRecord[] {
  const { ensemble, judging } = progress;
  if (!ensemble && !judging) return progress.calls;
  return [
    ...progress.calls,
    ...(ensemble?.members ?? []).flatMap((member) => member.progress.calls.map((call) => ({ ...call, purpose: 'ensemble_member' as const }))),
    ...(ensemble?.synthesis?.calls ?? []).map((call) => ({ ...call, purpose: 'synthesis' as const })),
    ...(judging?.progress.calls ?? []).map((call) => ({ ...call, purpose: 'judge' as const })),
  ];
}

/**
 * Gives each call of the row not yet saved an id (`saved_as`), in place, just before its progress is
 * saved in the job (a checkpoint, a park, a crash): every copy of the job's data then names the call
 * alike, so when a worker that lost its claim and the one that took the job over both publish it,
 * the id tells the second publish that it is on record. The row's number in it keeps ids of a large
 * batch apart (48 random bits alone would collide once in a few hundred at a million saved calls).
 */
export function markSavedCalls(progress: RowProgress, row: number): void {
  for (const stage of stagesOf(progress)) for (const call of stage.calls) call.saved_as ??= `${row}.${randomBytes(6).toString('base64url')}`;
}

/** The row's stages that make calls: its answer, an ensemble's members and synthesis, the judge. */
function stagesOf(progress: RowProgress): StageProgress[] {
  const stages = [progress, ...(progress.ensemble?.members.map((member) => member.progress) ?? []), progress.ensemble?.synthesis, progress.judging?.progress];
  return stages.filter((stage): stage is StageProgress => stage !== undefined);
}

/** The budget holds a parked row keeps for calls still to come (an ensemble's members' and synthesis'), for a stop to release. */
export function keptBudgetHolds(progress: RowProgress): BudgetHold[] {
  const holds = stagesOf(progress).flatMap((stage) => (stage.budgetHold ? [stage.budgetHold] : []));
  return progress.ensemble?.synthesisHold ? [...holds, progress.ensemble.synthesisHold] : holds;
}

/** The rate-limit slots a parked row holds, one per stage waiting for its slot (the answer, members, synthesis, judge). */
export function bookedSlots(progress: RowProgress): Array<{ model: string; slotAt: number; tokens: number }> {
  return stagesOf(progress).flatMap((stage) => (stage.reservedModel === undefined ? [] : [{ model: stage.reservedModel, slotAt: stage.slotAt, tokens: stage.reservedTokens ?? 0 }]));
}
