import { describe, expect, it } from 'vitest';
import { carriedProgress, carriedProgressFits, holdsAnswers, keptAfterFinish } from '../../src/execution/carried-progress.ts';
import { everyCall, freshProgress, type RowProgress } from '../../src/execution/row-progress.ts';
import type { CallRecord, RowResult } from '../../src/output/records.ts';

const call = (model: string, status: CallRecord['status'] = 'succeeded'): CallRecord => ({
  batch_id: 'b', row: 1, id: 'r1', model, attempt: 1, purpose: 'answer', task_type: 'simple', chain_position: 0, status,
  http_status: status === 'succeeded' ? 200 : 500, input_tokens: 10, output_tokens: 5, cost_usd: 0.000001, latency_ms: 20, started_at: '2026-12-03T03:00:00.000Z',
});
const plan = (model: string) => ({ taskType: 'simple', routeReason: 'pinned', chain: [model], skipped: [], promptTokens: 10, promptTokensCounted: true });
/** A stage parked for its rate-limit slot, after a failed attempt. */
const waiting = (model: string, calls: CallRecord[]) => ({ ...freshProgress(), plan: plan(model), attempt: 1, calls, reservedModel: model, slotAt: 5_000, wakeAt: 6_000, waitingForBudget: true, circuitProbeAt: 7_000, circuitWaitSince: 1_000 });
const answer = { row: 1, status: 'succeeded', model: 'flash', output: 'four' } as RowResult;

describe('answers carried from a stopped run to its resume', () => {
  it('keeps a judged row\'s answer, marks every call recorded, and plans the judge call afresh', () => {
    const judged: RowProgress = { ...freshProgress(), plan: plan('flash'), calls: [call('flash')], judging: { answer, progress: waiting('judge', [call('judge', 'failed')]) } };
    expect(holdsAnswers(judged)).toBe(true);
    const carried = carriedProgress(judged);
    expect(carried.judging).toEqual({ answer, progress: { ...freshProgress(), calls: [{ ...call('judge', 'failed'), recorded: true }] } });
    expect(everyCall(carried).map((c) => [c.model, c.recorded])).toEqual([['flash', true], ['judge', true]]);
    expect(judged.calls[0]).not.toHaveProperty('recorded'); // the stopped run's progress is left as it was
  });

  it('keeps the members that answered, runs a failed member again from its first model, and drops every wait', () => {
    const member = (model: string, outcome?: 'succeeded' | 'failed') => ({
      model,
      progress: waiting(model, [call(model, outcome === 'failed' ? 'failed' : 'succeeded')]),
      ...(outcome ? { outcome: { status: outcome, output: outcome === 'succeeded' ? `${model} says` : null, final_model: outcome === 'succeeded' ? model : null } } : {}),
    });
    const ensemble: RowProgress = { ...freshProgress(), ensemble: { members: [member('alpha', 'succeeded'), member('down', 'failed')], synthesis: waiting('judge', []) } };
    expect(holdsAnswers(ensemble)).toBe(true);
    const carried = carriedProgress(ensemble);
    const [alpha, down] = carried.ensemble!.members;
    expect(alpha).toMatchObject({ outcome: { status: 'succeeded', output: 'alpha says' }, progress: { attempt: 1, slotAt: 0, wakeAt: 0 } });
    expect(down!.outcome).toBeUndefined();
    expect(down!.progress).toMatchObject({ plan: plan('down'), chainIndex: 0, attempt: 0, fallbackReasons: [], slotAt: 0, wakeAt: 0 });
    for (const stage of [alpha!.progress, down!.progress, carried.ensemble!.synthesis!]) {
      for (const field of ['reservedModel', 'waitingForBudget', 'circuitProbeAt', 'circuitWaitSince']) expect(stage).not.toHaveProperty(field);
    }
    expect(everyCall(carried).every((c) => c.recorded === true)).toBe(true);
  });

  it('holds nothing worth carrying for a row whose calls all failed, or an ensemble none of whose members answered', () => {
    expect(holdsAnswers({ ...freshProgress(), calls: [call('flash', 'failed')] })).toBe(false);
    expect(holdsAnswers({ ...freshProgress(), ensemble: { members: [{ model: 'down', progress: waiting('down', [call('down', 'failed')]) }] } })).toBe(false);
  });

  it('fits a resume that runs the row the same way, not one given another model, ensemble or no judge', () => {
    const judged: RowProgress = { ...freshProgress(), judging: { answer: { ...answer, models_tried: ['flash'] }, progress: freshProgress() } };
    const council: RowProgress = { ...freshProgress(), ensemble: { members: [{ model: 'alpha', progress: freshProgress() }, { model: 'beta', progress: freshProgress() }] } };
    const routed = { model: undefined, ensembleMembers: null, judged: true };
    expect(carriedProgressFits(judged, routed)).toBe(true);
    expect(carriedProgressFits(judged, { ...routed, model: 'flash' })).toBe(true);
    expect(carriedProgressFits(judged, { ...routed, model: 'pro' })).toBe(false); // a resume with --model pro
    expect(carriedProgressFits(judged, { ...routed, judged: false })).toBe(false);
    expect(carriedProgressFits(judged, { model: 'council', ensembleMembers: ['alpha', 'beta'], judged: true })).toBe(false);
    expect(carriedProgressFits(council, { model: 'council', ensembleMembers: ['alpha', 'beta'], judged: false })).toBe(true);
    expect(carriedProgressFits(council, { model: 'council', ensembleMembers: ['alpha', 'gamma'], judged: false })).toBe(false);
    expect(carriedProgressFits(council, { model: 'alpha', ensembleMembers: null, judged: false })).toBe(false);
    // A judged ensemble row: the answer is the ensemble's.
    const judgedCouncil: RowProgress = { ...council, judging: { answer: { ...answer, models_tried: ['alpha', 'beta', 'synth'], ensemble: { name: 'council' } as RowResult['ensemble'] }, progress: freshProgress() } };
    expect(carriedProgressFits(judgedCouncil, { model: 'council', ensembleMembers: ['alpha', 'beta'], judged: true })).toBe(true);
    // A row that succeeded keeps its answer whatever it would go to now (another --model, another arm): only its judge runs.
    expect(carriedProgressFits(judged, { ...routed, model: 'pro' }, true)).toBe(true);
    expect(carriedProgressFits(judgedCouncil, { model: 'flash', ensembleMembers: null, judged: true }, true)).toBe(true);
    expect(carriedProgressFits(judged, { ...routed, model: 'pro', judged: false }, true)).toBe(false);
  });
});

describe('answers a finished row keeps for a resume', () => {
  const member = (model: string, outcome: 'succeeded' | 'failed') => ({
    model,
    progress: { ...freshProgress(), plan: plan(model), attempt: 2, chainIndex: outcome === 'failed' ? 1 : 0, calls: [call(model, outcome)] },
    outcome: { status: outcome, output: outcome === 'succeeded' ? `${model} says` : null, final_model: outcome === 'succeeded' ? model : null },
  });
  const failed = { row: 1, status: 'failed', model: 'council', output: null, error: { code: 'budget_exceeded', message: 'over' } } as RowResult;

  it("keeps a failed ensemble row's answered members, and runs its failed members and its synthesis afresh, the synthesis calls kept as recorded", () => {
    const ensemble: RowProgress = { ...freshProgress(), ensemble: { members: [member('alpha', 'succeeded'), member('down', 'failed')], synthesis: { ...freshProgress(), plan: plan('judge'), attempt: 2, calls: [call('judge', 'failed'), call('judge', 'failed')] } } };
    const kept = keptAfterFinish(failed, ensemble)!;
    expect(kept.ensemble!.synthesis).toEqual({ ...freshProgress(), calls: [call('judge', 'failed'), call('judge', 'failed')] });
    const carried = carriedProgress(kept);
    expect(carried.ensemble!.members.map((m) => m.outcome?.status ?? null)).toEqual(['succeeded', null]);
    expect(carried.ensemble!.members[1]!.progress).toMatchObject({ chainIndex: 0, attempt: 0 });
    // Every call the row made stays with it, once, recorded: its result's cost adds them all up.
    expect(everyCall(carried).map((c) => [c.model, c.purpose, c.recorded])).toEqual([['alpha', 'ensemble_member', true], ['down', 'ensemble_member', true], ['judge', 'synthesis', true], ['judge', 'synthesis', true]]);
    expect(ensemble.ensemble!.synthesis!.plan).toEqual(plan('judge')); // the failed run's progress is left as it was
  });

  it("keeps a failed row's LLM classifier label, with the classifier's call alone, so that a resume does not pay to classify it again", () => {
    const classify = { ...call('mini'), purpose: 'classify' as const };
    const labelled: RowProgress = { ...freshProgress(), plan: plan('flash'), attempt: 3, calls: [classify, call('flash', 'failed'), call('flash', 'failed')], classified: { taskType: 'coding', reason: 'llm: coding' } };
    const kept = keptAfterFinish(failed, labelled)!;
    expect(kept).toEqual({ ...freshProgress(), calls: [classify], classified: { taskType: 'coding', reason: 'llm: coding' } });
    expect(carriedProgress(kept).calls.map((c) => [c.model, c.purpose, c.recorded])).toEqual([['mini', 'classify', true]]);
  });

  it('keeps nothing of a failed row none of whose members answered, of a row that is no ensemble, or of a succeeded row its judge scored', () => {
    expect(keptAfterFinish(failed, { ...freshProgress(), ensemble: { members: [member('down', 'failed')] } })).toBeNull();
    expect(keptAfterFinish(failed, { ...freshProgress(), calls: [call('flash')] })).toBeNull();
    const judged: RowProgress = { ...freshProgress(), judging: { answer, progress: freshProgress() } };
    expect(keptAfterFinish({ ...answer, judge: { model: 'judge', final_model: 'judge', score: 7, reason: 'ok', cost_usd: 0 } }, judged)).toBeNull();
    expect(keptAfterFinish({ ...answer, judge: { model: 'judge', final_model: null, score: null, reason: null, cost_usd: 0, error: { code: 'no_score', message: 'none' } } }, judged)).toBe(judged);
  });
});
