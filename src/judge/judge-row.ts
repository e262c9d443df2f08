import { judgeMaxTokens, type JudgeConfig } from '../config/schema.ts';
import { pinnedCallProgress } from '../execution/pinned-call.ts';
import { everyCall, freshProgress, type ProgressCheckpoint, type RowProgress } from '../execution/row-progress.ts';
import { advanceRow, withoutCache, type RowInput, type RowRunnerDeps, type RowStep } from '../execution/row-runner.ts';
import { callTotals } from '../execution/row-result.ts';
import type { JudgeOutcome, RowResult } from '../output/records.ts';
import { judgeMessages, readJudgeReply } from './judge-prompt.ts';

type Judging = NonNullable<RowProgress['judging']>;

/** The row's reference answer: its `reference_column` field, when that holds text or a number. */
export function referenceAnswer(row: Pick<RowInput, 'metadata'>, judge: JudgeConfig): string | undefined {
  const value = row.metadata[judge.reference_column];
  if (typeof value === 'number') return String(value);
  return typeof value === 'string' && value.trim() !== '' ? value : undefined;
}

/**
 * Moves a judged row forward: first its answer (`answer`: routed, pinned, an A/B arm or an
 * ensemble), then, when that succeeded, one call to the judge model (behind its breaker, limits,
 * budget and retries like any call, falling back along its `fallbacks`) that scores it. The
 * answer is saved in the row's progress before the judge is called: a judge that must wait parks
 * the row without losing it, and `checkpoint` keeps it for a worker killed meanwhile. A failed
 * answer is not judged; a judge that fails or gives no score leaves the answer as it was, with
 * the reason under `judge.error`.
 */
export async function advanceJudgedRow(row: RowInput, progress: RowProgress, deps: RowRunnerDeps, judge: JudgeConfig, answer: () => Promise<RowStep>, checkpoint?: ProgressCheckpoint): Promise<RowStep> {
  if (!progress.judging) {
    const step = await answer();
    if (step.kind === 'park' || step.event.result.status !== 'succeeded' || step.event.result.output === null) return step;
    progress.judging = { answer: step.event.result, progress: freshProgress() };
  }
  const judging = progress.judging;
  const messages = judgeMessages({ request: row.messages, answer: judging.answer.output ?? '', reference: referenceAnswer(row, judge), criteria: judge.criteria });
  if (!judging.progress.plan) {
    // Calls kept: a judge call of a stopped run, carried over (carried-progress.ts), was paid for.
    judging.progress = { ...(await pinnedCallProgress(deps.config, { model: judge.model, messages, maxTokens: judgeMaxTokens(judge), maxTokensFrom: 'judge.max_tokens', taskType: judging.answer.task_type ?? '', reason: 'judge' })), calls: judging.progress.calls };
    await checkpoint?.(progress);
  }
  const judgeRow: RowInput = { batchId: row.batchId, row: row.row, id: row.id, messages, model: judge.model, temperature: 0, max_tokens: judgeMaxTokens(judge), metadata: row.metadata, abArm: row.abArm };
  const step = await advanceRow(judgeRow, judging.progress, withoutCache(deps), checkpoint && (() => checkpoint(progress)));
  if (step.kind === 'park') return { ...step, progress };
  const calls = everyCall(progress);
  // The row is done once scored, which may be a run after its answer (a stopped run's, carried over).
  const result: RowResult = { ...judging.answer, judge: judgeOutcome(judge, judging, step.event.result), completed_at: new Date().toISOString() };
  return { kind: 'finished', event: { result, calls }, costNanos: callTotals(calls).costNanos };
}

function judgeOutcome(judge: JudgeConfig, judging: Judging, judged: RowResult): JudgeOutcome {
  const base = { model: judge.model, final_model: judged.final_model, cost_usd: callTotals(judging.progress.calls).costUsd };
  if (judged.status !== 'succeeded') {
    return { ...base, score: null, reason: null, error: judged.error ?? { code: 'judge_failed', message: 'the judge gave no answer' } };
  }
  const verdict = readJudgeReply(judged.output ?? '');
  if (verdict.score === null) return { ...base, score: null, reason: null, error: { code: 'no_score', message: verdict.reason } };
  return { ...base, score: verdict.score, reason: verdict.reason };
}
