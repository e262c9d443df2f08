import { z } from 'zod';
import type { Report } from './report-json.ts';

/**
 * report.json's shape, to check a report read back from disk (write-report.ts): the file may have
 * been edited, cut short or replaced by another tool's since the batch wrote it. Typed as the
 * `Report` it yields, so a field added to the report and not here fails to compile.
 */

const count = z.number();
const usd = z.number();
const ms = z.number();
const counts = z.record(z.string(), count);
const abSplit = z.array(z.object({ model: z.string(), weight: z.number() }));
const longCells = z.object({ rows: count, first_id: z.string(), longest_chars: count });

const rowFigures = {
  rows: count,
  succeeded: count,
  failed: count,
  cached_rows: count,
  latency_p50_ms: ms.nullable(),
  latency_p95_ms: ms.nullable(),
  judged_rows: count,
  mean_score: z.number().nullable(),
  score_margin: z.number().nullable(),
};

const rowGroupSchema = z.object({ ...rowFigures, cost_usd: usd, unpriced_rows: count, cost_per_answer_usd: usd.nullable() });

export const reportSchema: z.ZodType<Report> = z.object({
  batch_id: z.string(),
  started_at: z.string(),
  finished_at: z.string(),
  totals: z.object({
    rows: count,
    succeeded: count,
    failed: count,
    calls: count,
    failed_calls: count,
    input_tokens: count,
    output_tokens: count,
    cost_usd: usd,
    unpriced_calls: count,
    usage_estimated_calls: count,
    elapsed_ms: ms,
    rows_this_run: count,
    rows_per_second: z.number().nullable(),
    invalid_rows: count,
    unfinished_rows: count.nullable(),
  }),
  models: z.record(
    z.string(),
    z.object({
      rows: count,
      succeeded: count,
      failed: count,
      calls: count,
      calls_this_run: count,
      limit_waits_this_run: z.object({ calls: count, wait_ms: ms }).optional(),
      failed_calls: count,
      input_tokens: count,
      output_tokens: count,
      cost_usd: usd,
      unpriced_calls: count,
      latency_p50_ms: ms.nullable(),
      latency_p95_ms: ms.nullable(),
      ttft_p50_ms: ms.nullable(),
      ttft_p95_ms: ms.nullable(),
      judged_rows: count,
      mean_score: z.number().nullable(),
      score_margin: z.number().nullable(),
    }),
  ),
  errors: counts,
  error_examples: z.record(z.string(), z.string()),
  // Optional: reports written before it have none, and `collect` reads them back.
  error_models: z.record(z.string(), z.array(z.string())).optional(),
  cancelled: z.literal(true).optional(),
  call_errors: counts,
  // Optional: reports written before calls kept their message have none, and `collect` reads them back.
  call_error_examples: z.record(z.string(), z.string()).optional(),
  cut_off: counts,
  // Optional: reports written before answers cut at a model's max_output_tokens were told apart have none.
  cut_off_at_model_cap: counts.optional(),
  long_outputs: longCells.optional(),
  invalid_input: counts,
  invalid_input_examples: z.record(z.string(), z.string()),
  task_types: z.record(z.string(), z.object({ rows: count, succeeded: count, failed: count, calls: count, cost_usd: usd, by_model: z.record(z.string(), rowGroupSchema) })),
  ensembles: z.record(z.string(), rowGroupSchema.extend({ rows_short_of_members: count.optional() })),
  ab_arms: z.record(z.string(), z.object({ ...rowFigures, cost_usd: usd, unpriced_calls: count, cost_per_answer_usd: usd.nullable(), answered_by: counts })),
  ab_split: abSplit.optional(),
  ab_splits_before: z.array(abSplit).optional(),
  compare: z.object({ models: z.array(z.string()).min(2), prompts: count.nullable(), long_prompts: longCells.optional() }).optional(),
  extra_calls: z.object({
    retry_calls: count,
    retry_cost_usd: usd,
    retry_unpriced_calls: count,
    fallback_calls: count,
    fallback_cost_usd: usd,
    fallback_unpriced_calls: count,
    rows_on_fallback: count,
    rows_past_rate_limit: counts.optional(),
    past_rate_limit_cost: z.record(z.string(), z.object({ rows: count, cost_usd: usd, unpriced_rows: count, cost_at_its_price_usd: usd.nullable() })).optional(),
    classifier_calls: count,
    classifier_cost_usd: usd,
    classifier_unpriced_calls: count,
    classifier_decided_rows: count,
    ensemble_member_calls: count,
    ensemble_member_cost_usd: usd,
    ensemble_member_unpriced_calls: count,
    synthesis_calls: count,
    synthesis_cost_usd: usd,
    synthesis_unpriced_calls: count,
    judge_calls: count,
    judge_cost_usd: usd,
    judge_unpriced_calls: count,
  }),
  cache: z.object({ answered_rows: count, saved_usd: usd, unpriced_rows: count }),
  judge: z
    .object({
      model: z.string(),
      rows_scored: count,
      mean_score: z.number().nullable(),
      score_margin: z.number().nullable(),
      rows_unscored: count,
      unscored: counts,
      scored_by_fallback: counts,
      calls_by_model: counts,
      paired: z.array(
        z.object({ a: z.string(), b: z.string(), prompts: count, a_better: count, ties: count, b_better: count, mean_difference: z.number(), difference_margin: z.number().nullable() }),
      ),
      paired_left_out: counts.optional(),
    })
    .nullable(),
  baseline: z
    .object({
      model: z.string(),
      baseline_cost_usd: usd,
      batch_cost_usd: usd,
      savings_usd: usd.nullable(),
      savings_percent: z.number().nullable(),
      unpriced_calls: count,
      outside_ensembles: z.object({ baseline_cost_usd: usd, batch_cost_usd: usd, savings_usd: usd.nullable(), savings_percent: z.number().nullable() }).optional(),
      answered_rows: z.object({ rows: count, unpriced_rows: count, baseline_cost_usd: usd, batch_cost_usd: usd, savings_usd: usd.nullable(), savings_percent: z.number().nullable() }).optional(),
    })
    .nullable(),
});
