import type { CallRecord, RowResult } from '../output/records.ts';
import { freshProgress, type RowProgress, type StageProgress } from './row-progress.ts';

/**
 * Whether a parked row holds answers that a resume can use instead of paying for them again: a
 * judged row's answer waiting for its judge, an ensemble's member answers waiting for the rest
 * or for the synthesis, or the LLM classifier's label for a row still to be answered. A row with
 * only failed calls holds nothing worth keeping.
 */
export function holdsAnswers(progress: RowProgress): boolean {
  return progress.judging !== undefined || progress.classified !== undefined || (progress.ensemble?.members.some((member) => member.outcome?.status === 'succeeded') ?? false);
}

/**
 * What a finished row keeps for a resume (or re-run) of its batch, carried like a stopped row's
 * (carried-rows.ts), or null: the answer of a succeeded row its judge could not score, and the
 * members' answers of an ensemble row that failed after some of them answered (the budget refused
 * the synthesis or a member, a member failed after its retries), so that the resume pays only for
 * what the row lacks; and the LLM classifier's label of any other failed row (the budget stopped
 * it, its models failed), so that a resume does not pay to classify it again. Its calls all went
 * out with its result. The failed members run again
 * (carriedProgress), and so does the synthesis, planned afresh (ensemble-row.ts) as a carried judge
 * call is: its prompt holds the answers, which change once those members answer. Its earlier calls
 * stay with it (recorded), so the row's result still adds up every call it made.
 */
export function keptAfterFinish(result: RowResult, progress: RowProgress): RowProgress | null {
  if (result.status === 'succeeded') return result.judge?.error && progress.judging ? progress : null;
  // The label alone, with the classifier's call: the answer calls were this run's, and a resume's result counts its own.
  if (!progress.ensemble && !progress.judging && progress.classified) return { ...freshProgress(), calls: progress.calls.filter((call) => call.purpose === 'classify'), classified: progress.classified };
  const ensemble = progress.ensemble;
  if (!ensemble || progress.judging || !holdsAnswers(progress)) return null;
  const { members, synthesis } = ensemble;
  return { ...progress, ensemble: { members, ...(synthesis ? { synthesis: { ...freshProgress(), calls: synthesis.calls } } : {}) } };
}

/**
 * The progress a stopped run leaves for its resume (src/queue/carried-rows.ts). Every call is
 * marked recorded: its record went out when the row came off the queue. What the stopped run was
 * waiting for (a rate-limit slot, a backoff, budget, an open circuit) lapsed with it. What did not
 * answer starts again as a failed row would on resume: a failed member from its first model, and
 * the judge call from a new plan, so a resume given another judge uses it.
 */
export function carriedProgress(progress: RowProgress): RowProgress {
  // A row that holds only its label is routed again under the resume's config, its label kept.
  if (!progress.judging && !progress.ensemble && progress.classified) return { ...freshProgress(), calls: progress.calls.map(asRecorded), classified: progress.classified };
  const carried: RowProgress = { ...withoutWaits(progress) };
  if (progress.ensemble) {
    carried.ensemble = {
      members: progress.ensemble.members.map((member) =>
        member.outcome?.status === 'succeeded'
          ? { model: member.model, progress: withoutWaits(member.progress), outcome: member.outcome }
          : { model: member.model, progress: { ...withoutWaits(member.progress), chainIndex: 0, attempt: 0, fallbackReasons: [], lastError: undefined } },
      ),
      ...(progress.ensemble.synthesis ? { synthesis: withoutWaits(progress.ensemble.synthesis) } : {}),
    };
  }
  if (progress.judging) {
    carried.judging = { answer: progress.judging.answer, progress: { ...freshProgress(), calls: progress.judging.progress.calls.map(asRecorded) } };
  }
  return carried;
}

/** How a resume runs a row: the model it names (its own, its A/B arm or --model), that model's ensemble members if it is one, and whether a judge scores it. */
export interface CarriedTarget {
  model: string | undefined;
  ensembleMembers: readonly string[] | null;
  judged: boolean;
}

/**
 * Whether a progress carried over still fits the row as the resume runs it: its ensemble state
 * only an ensemble of the same members, its judged answer only a batch with a judge, and only
 * from the model the row now names. A resume may be given another --model or --ab; a row that no
 * longer fits starts afresh (the carried calls are on record already). A row that succeeded
 * (`answered`) keeps its answer whatever it would be sent to now: only its judge runs, if any.
 */
export function carriedProgressFits(progress: RowProgress, target: CarriedTarget, answered = false): boolean {
  if (answered && progress.judging) return target.judged;
  const members = progress.ensemble?.members.map((member) => member.model) ?? null;
  if (members?.join('\n') !== target.ensembleMembers?.join('\n')) return false;
  if (!progress.judging) return true;
  const answer = progress.judging.answer;
  const answeredAs = answer.ensemble?.name ?? answer.models_tried[0];
  return target.judged && (target.model === undefined || answeredAs === target.model);
}

function withoutWaits<P extends StageProgress>(progress: P): P {
  // A budget hold kept for a call (an ensemble's share) was released by the stop that carried the row.
  const { reservedModel: _slot, reservedTokens: _tokens, turnTicket: _turn, waitingForBudget: _budget, budgetHold: _hold, circuitProbeAt: _probe, circuitWaitSince: _since, retryAt: _retry, ...rest } = progress;
  return { ...rest, slotAt: 0, wakeAt: 0, calls: progress.calls.map(asRecorded) } as P;
}

const asRecorded = (call: CallRecord): CallRecord => ({ ...call, recorded: true });
