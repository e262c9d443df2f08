import { describe, expect, it } from 'vitest';
import { finish } from '../../src/execution/row-result.ts';
import { freshProgress } from '../../src/execution/row-progress.ts';
import type { ModelAnswer } from '../../src/models/call-model.ts';
import type { CallRecord } from '../../src/output/records.ts';
import { reportModels, ReportTally } from '../../src/output/report.ts';

const call = (purpose: CallRecord['purpose'], outputTokens: number): CallRecord => ({
  batch_id: 'b', row: 1, id: 'q1', model: 'alpha', attempt: 1, purpose, task_type: purpose === 'classify' ? null : 'general', chain_position: purpose === 'classify' ? null : 0,
  status: 'succeeded', http_status: 200, input_tokens: 10, output_tokens: outputTokens, cost_usd: null, latency_ms: 5, started_at: '2026-11-02T10:00:00.000Z',
});

describe("a row's result cut off at a token limit", () => {
  it("keeps its answer call's output tokens apart from the classifier's, and the report judges the model's cap by them (review: a row cut at its own max_tokens of 25 under a cap of 30, plus 5 classifier tokens, was reported cut at the cap)", () => {
    const progress = { ...freshProgress(), calls: [call('classify', 5), call('answer', 25)], plan: { taskType: 'general', routeReason: 'llm classifier', chain: ['alpha'], skipped: [], promptTokens: 10, promptTokensCounted: true } };
    const answer: ModelAnswer = { output: 'cut', usage: { input_tokens: 10, output_tokens: 25 }, usageEstimated: false, countingMs: 0, finishReason: 'length', requestId: 'r', httpStatus: 200, ttftMs: null };
    const step = finish({ batchId: 'b', row: 1, id: 'q1', messages: [{ role: 'user', content: 'hi' }], metadata: {} }, progress, 'alpha', answer, null);
    if (step.kind !== 'finished') throw new Error(step.kind);
    const { result } = step.event;
    expect(result.usage.output_tokens).toBe(30);
    expect(result.answer_output_tokens).toBe(25);
    const tally = new ReportTally(undefined, undefined, reportModels({ models: { alpha: { max_output_tokens: 30 } } }));
    tally.addResult(result);
    const report = tally.build({ batchId: 'b', startedAt: '2026-11-02T10:00:00.000Z', finishedAt: '2026-11-02T10:00:01.000Z' });
    expect(report.cut_off).toEqual({ length: 1 });
    expect(report.cut_off_at_model_cap ?? {}).toEqual({});
  });

  it('has no answer_output_tokens when it finished', () => {
    const answer: ModelAnswer = { output: 'done', usage: { input_tokens: 10, output_tokens: 25 }, usageEstimated: false, countingMs: 0, finishReason: 'stop', requestId: 'r', httpStatus: 200, ttftMs: null };
    const step = finish({ batchId: 'b', row: 1, id: 'q1', messages: [{ role: 'user', content: 'hi' }], metadata: {} }, { ...freshProgress(), calls: [call('answer', 25)] }, 'alpha', answer, null);
    if (step.kind !== 'finished') throw new Error(step.kind);
    expect(step.event.result).not.toHaveProperty('answer_output_tokens');
  });
});
