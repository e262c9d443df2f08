import type { PairedComparison } from './paired-scores.ts';

// The shape of report.json, as the collector writes it (report.ts tallies it) and report.md, the
// summary, status and the API read it. Fields are snake_case as in the file.

/** Batch-wide figures. Row counts come from results.jsonl; calls, tokens and cost from costs.jsonl. */
export interface ReportTotals {
  /** Valid input rows (one line each in results.jsonl). */
  rows: number;
  succeeded: number;
  failed: number;
  /** Every model call, failed attempts included. */
  calls: number;
  failed_calls: number;
  input_tokens: number;
  output_tokens: number;
  /** Exactly the sum of costs.jsonl's priced `cost_usd` (added as integer nano-dollars). */
  cost_usd: number;
  /** Calls whose model has no configured price (cost null): left out of `cost_usd`. */
  unpriced_calls: number;
  /** Calls answered without token usage: their tokens and cost are Switchyard's own count (in the sums). */
  usage_estimated_calls: number;
  /** This run's time: from its start (a resume starts a new run) to the report. */
  elapsed_ms: number;
  /** Rows finished during this run; fewer than `rows` when a resumed batch had rows done before. */
  rows_this_run: number;
  /** rows_this_run per second of elapsed_ms; null when no time elapsed. */
  rows_per_second: number | null;
  /** Input rows that could not be run (errors.jsonl); not among `rows`. */
  invalid_rows: number;
  /**
   * Valid rows without a result yet, not among `rows`: 0 once the batch is finished. A run stopped
   * early (Ctrl-C, SIGTERM) writes the outputs of the rows finished so far and counts the rest
   * here; null when it stopped before the whole file was read.
   */
  unfinished_rows: number | null;
}

/** Rows answered from the cache (config `cache`): no call was made for them. */
export interface CacheReport {
  answered_rows: number;
  /** What their answers' calls would have cost at the models' prices now (rows on unpriced models left out). */
  saved_usd: number;
  unpriced_rows: number;
}

/** Cells longer than an Excel cell holds (32,767 characters): how many, the first one's row id, and the longest's length. */
export interface LongCells {
  rows: number;
  first_id: string;
  longest_chars: number;
}

export interface ModelReport {
  /** Rows whose final result came from this model (results.jsonl). */
  rows: number;
  succeeded: number;
  failed: number;
  /** Calls to this model (costs.jsonl), failed attempts and fallbacks included. */
  calls: number;
  /** Of them, those this run made (started since it began): a resume's pace, not its batch's. */
  calls_this_run: number;
  /**
   * Of this run's calls, those the model's rate limits (shared by every batch and worker on its
   * endpoint) made wait for their slots, and their waits summed (ms); absent when none waited.
   */
  limit_waits_this_run?: { calls: number; wait_ms: number };
  failed_calls: number;
  input_tokens: number;
  output_tokens: number;
  cost_usd: number;
  unpriced_calls: number;
  /** Latency of this model's succeeded calls (failed calls, fast 429s or slow timeouts, would blur it); null when none. */
  latency_p50_ms: number | null;
  latency_p95_ms: number | null;
  /** Time to first token of this model's streamed calls (models.<name>.stream); null when none streamed. */
  ttft_p50_ms: number | null;
  ttft_p95_ms: number | null;
  /** Rows of this model's answers the judge scored (config `judge`), and their mean score; null when none. */
  judged_rows: number;
  mean_score: number | null;
  /** The mean's 95% margin of error (Student's t standard errors; paired-scores.ts marginOfError), so close means read as a tie; null under 2 scores. */
  score_margin: number | null;
}

export interface TaskTypeReport {
  rows: number;
  succeeded: number;
  failed: number;
  /** Calls made for rows of this type (answers, retries, fallbacks), and what they cost. */
  calls: number;
  cost_usd: number;
  /**
   * Its rows by the model (or ensemble) they are counted under, as in `models`, most rows first:
   * how each model does on this type of prompt, to tune routing.routes by.
   */
  by_model: Record<string, RowGroupReport>;
}

/**
 * An ensemble's rows as a whole: their cost is every member and synthesis call, their latency the
 * slowest member, then the synthesis.
 */
export interface EnsembleReport extends RowGroupReport {
  /** Succeeded rows synthesized from fewer answers than the ensemble has members (absent in reports written before it was counted). */
  rows_short_of_members?: number;
}

/** What some rows have in common, whatever they are grouped by: how many, how fast, how good. */
export interface RowFigures {
  rows: number;
  succeeded: number;
  failed: number;
  /** Rows answered from the answer cache (config cache): no call, no cost; left out of cost per answer and latency. */
  cached_rows: number;
  /** Latency of the succeeded rows (first call to answer); null when none. */
  latency_p50_ms: number | null;
  latency_p95_ms: number | null;
  judged_rows: number;
  mean_score: number | null;
  score_margin: number | null;
}

/** Rows as a whole (an ensemble's, a task type's on one model), their cost being their results' `cost_usd` (the run that wrote each result). */
export interface RowGroupReport extends RowFigures {
  /** The rows' cost: every call but the judge's (answers, retries, fallbacks, the classifier, ensemble members and syntheses), rows with an unpriced call left out. */
  cost_usd: number;
  /** Rows that called a model with no configured price: left out of cost_usd. */
  unpriced_rows: number;
  /** cost_usd over the priced rows that succeeded: what an answer cost, failed rows' calls included; null with none. */
  cost_per_answer_usd: number | null;
}

/** The rows of one arm of an A/B split (`--ab`), its cost from costs.jsonl: what the arm paid, over every run of the batch. */
export interface AbArmReport extends RowFigures {
  /** Every call made for the arm's rows while in it but the judge's (answers, retries, fallbacks, the classifier, ensemble members and syntheses), unpriced calls left out. */
  cost_usd: number;
  unpriced_calls: number;
  /** cost_usd over the rows that succeeded by a call (not from the cache): what an answer cost, failed rows' calls included; null with none. */
  cost_per_answer_usd: number | null;
  /** Who gave its succeeded rows' answers (a model, or an ensemble), most rows first: the mix the arm `auto` routed to. */
  answered_by: Record<string, number>;
}

/** The judge's work (config `judge`): rows scored, rows it could not score and why. */
export interface JudgeReport {
  model: string;
  rows_scored: number;
  mean_score: number | null;
  score_margin: number | null;
  /** Succeeded rows the judge gave no score: its calls failed, or its reply held none. */
  rows_unscored: number;
  /** Those rows by reason code, most frequent first. */
  unscored: Record<string, number>;
  /** Rows scored by a fallback of the judge's (it failed), by that model: their scores are another judge's. */
  scored_by_fallback: Record<string, number>;
  /** Judge calls in every run of the batch by the model that made them: an earlier judge's, or a fallback's, besides this one's. */
  calls_by_model: Record<string, number>;
  /**
   * Models (or ensembles) that answered the same row ids, compared over those prompts alone: the
   * layout that gives every prompt to every model (a row per model, same id). Empty otherwise.
   */
  paired: PairedComparison[];
  /**
   * Scored answers left out of `paired`, by the model (or ensemble) their row was put to: a fallback
   * gave them, so they are not that model's answers. Only those whose prompt another answerer was
   * scored on (they would have made pairs). Absent in reports written before it.
   */
  paired_left_out?: Record<string, number>;
}

/** The rows that went on past a model for its rate limit: what they cost, and what the same tokens cost at its price. */
export interface PastRateLimitCost {
  rows: number;
  cost_usd: number;
  unpriced_rows: number;
  cost_at_its_price_usd: number | null;
}

/** Calls that were not a row's first try on its first-choice model, and what they cost. */
export interface ExtraCallsReport {
  /** Calls after the first to the same model (attempt > 1). */
  retry_calls: number;
  retry_cost_usd: number;
  /** Of those, calls to a model with no price: not in the cost. */
  retry_unpriced_calls: number;
  /** Calls to a model later in the row's chain. */
  fallback_calls: number;
  fallback_cost_usd: number;
  fallback_unpriced_calls: number;
  /** Rows answered by a model other than their first choice. */
  rows_on_fallback: number;
  /**
   * Rows that went on past a model because its rate limit would have made them wait over
   * limits.max_wait_ms (on_limit: fallback), by that model: fallbacks a higher rpm or max_wait_ms
   * would have spared. Absent from reports written before it was counted.
   */
  rows_past_rate_limit?: Record<string, number>;
  /**
   * By the same model: what those rows cost on the models that answered them and what their tokens
   * would have cost at its price (null when it has none), for the rows outside ensembles (an
   * ensemble row's cost is all its calls'); `unpriced_rows` of them called a model with no price and
   * are not in `cost_usd`. Absent from reports written before it was counted.
   */
  past_rate_limit_cost?: Record<string, PastRateLimitCost>;
  /** Task-type classifier calls (routing.classifier: llm). */
  classifier_calls: number;
  classifier_cost_usd: number;
  classifier_unpriced_calls: number;
  /** Rows whose task type the classifier's answer gave (the rest were routed by the rules: its call failed, or its answer named no type). */
  classifier_decided_rows: number;
  /** Ensemble rows: their members' calls and the synthesis calls (each also under its model). */
  ensemble_member_calls: number;
  ensemble_member_cost_usd: number;
  ensemble_member_unpriced_calls: number;
  synthesis_calls: number;
  synthesis_cost_usd: number;
  synthesis_unpriced_calls: number;
  /** Calls that scored answers (config `judge`); each also under its model. */
  judge_calls: number;
  judge_cost_usd: number;
  judge_unpriced_calls: number;
}

export interface SavingsFigures {
  /** What the succeeded answers' tokens would have cost at the baseline model's price. */
  baseline_cost_usd: number;
  /** What the batch paid for its answers: every call but the judge's (scoring would cost the same on the baseline). */
  batch_cost_usd: number;
  /** null when some of the answers' calls were to a model with no price: what they cost is not known. */
  savings_usd: number | null;
  /** Percent saved against the baseline (negative: the batch cost more); null when not known (as savings_usd) or the baseline cost nothing. */
  savings_percent: number | null;
}

export interface BaselineReport extends SavingsFigures {
  model: string;
  /** Calls for the answers (the judge's aside) to models with no configured price: batch_cost_usd leaves them out. */
  unpriced_calls: number;
  /**
   * The same figures for the rows outside ensembles (their answer calls, and the LLM classifier's),
   * when the batch has ensemble rows beside them: what routing saved, apart from what the ensembles
   * cost. Absent otherwise, and in reports written before it.
   */
  outside_ensembles?: SavingsFigures;
  /**
   * When the budget stopped rows: the same four figures for the rows that have an answer, their own
   * calls (results.jsonl's cost_usd) against their answers on the baseline, and how many they are.
   * The batch's figures above set every paid call (the stopped rows' members, say) against the
   * answers alone (QA: "2276% more"). Absent otherwise, and in reports written before it.
   */
  answered_rows?: SavingsFigures & { rows: number; unpriced_rows: number };
}

export interface Report {
  batch_id: string;
  /** ISO 8601. */
  started_at: string;
  finished_at: string;
  totals: ReportTotals;
  /** Per model, most rows first. */
  models: Record<string, ModelReport>;
  /** Failed rows by final error code, most frequent first. */
  errors: Record<string, number>;
  /** One failed row's message for each code in `errors` (the first seen), so the fix is in view. */
  error_examples: Record<string, string>;
  /**
   * For each code in `errors`, the models its rows failed on (a result's `model`), by name: whose
   * config the fix is in (a 401 from a provider with no api_key_env, say). Absent in reports written before it.
   */
  error_models?: Record<string, string[]>;
  /**
   * The batch was cancelled (`POST /v1/batches/<id>/cancel`) with rows left: they are `totals.unfinished_rows`.
   * Absent otherwise: a run stopped by a signal, or by Redis going away, is not a cancel.
   */
  cancelled?: true;
  /** Failed calls (retried ones included) by error code, most frequent first. */
  call_errors: Record<string, number>;
  /**
   * One failed call's message for each code in `call_errors` (the first seen): which model at which
   * URL, and what went wrong, for calls whose rows went on to succeed too (an outage ridden out).
   * Absent in reports written before calls recorded their message, and for codes whose calls have none.
   */
  call_error_examples?: Record<string, string>;
  /**
   * Succeeded rows whose answer the model did not finish, by finish_reason, most frequent first:
   * "length" (it stopped at max_tokens), "content_filter", ... A cut-off answer still counts as
   * succeeded (it was paid for, and may be enough), so this is where it shows.
   */
  cut_off: Record<string, number>;
  /**
   * Of `cut_off.length`, the answers stopped at their model's max_output_tokens (which caps a row's
   * max_tokens, so a higher max_tokens would not help them), by the model that answered. Absent in
   * reports written before it was told apart.
   */
  cut_off_at_model_cap?: Record<string, number>;
  /**
   * Answers longer than an Excel cell holds (32,767 characters), which Excel cuts when it opens
   * results.csv (results.jsonl has them whole): how many, the first one's row id and the longest's
   * length. Absent when there are none.
   */
  long_outputs?: LongCells;
  /** Invalid input rows (errors.jsonl) by reason code, most frequent first. */
  invalid_input: Record<string, number>;
  /** The first invalid row's message for each code in `invalid_input`, with its line. */
  invalid_input_examples: Record<string, string>;
  /** Per task type (rows without one are under "unclassified"). */
  task_types: Record<string, TaskTypeReport>;
  /** Per ensemble, its rows as a whole (members and synthesis), to set beside a model's in an A/B split. */
  ensembles: Record<string, EnsembleReport>;
  /** Per arm of the batch's A/B split (`--ab`), by name; empty without one. */
  ab_arms: Record<string, AbArmReport>;
  /** The split the batch runs with (`--ab`, its arms in order with their weights), so reports of two runs can be checked for the same arms; absent without one. */
  ab_split?: Array<{ model: string; weight: number }>;
  /** The splits earlier runs of the batch ran under, oldest first, when a resume changed or dropped it (their rows keep their arms). */
  ab_splits_before?: Array<Array<{ model: string; weight: number }>>;
  /**
   * The models the batch compares (`--compare`), in order, and the prompts put to each (null while
   * the file was not read to its end): `prompts` × the models' count rows. Absent without one.
   * `long_prompts`: compare.csv's prompt cells longer than an Excel cell holds (32,767 characters),
   * which Excel cuts when it opens the file, counted as `long_outputs` counts answers; absent when none.
   */
  compare?: { models: string[]; prompts: number | null; long_prompts?: LongCells };
  extra_calls: ExtraCallsReport;
  cache: CacheReport;
  /** Present when rows were judged (config `judge`). */
  judge: JudgeReport | null;
  /** Present when report.baseline_model is configured with a price. */
  baseline: BaselineReport | null;
}
