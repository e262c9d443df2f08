import type { ModelConfig } from '../config/schema.ts';
import { callCostNanos, nanosToUsd, usdToNanos } from '../models/pricing.ts';
import { LatencyHistogram } from './latency-histogram.ts';
import { marginOfError, PairedScores } from './paired-scores.ts';
import type { CallRecord, RowResult } from './records.ts';
import type { InvalidRowCounts } from '../input/row.ts';
import type { AbArmReport, BaselineReport, ExtraCallsReport, JudgeReport, LongCells, ModelReport, Report, RowFigures, RowGroupReport, SavingsFigures } from './report-json.ts';

/** Compare the batch's cost with what its answers would have cost on this model. */
export interface ReportBaseline {
  model: string;
  price: { input_per_mtok: number; output_per_mtok: number };
}

interface ModelTally {
  rows: number;
  succeeded: number;
  failed: number;
  calls: number;
  callsThisRun: number;
  /** Of this run's calls, those the model's rate limits made wait for their slots, and how long in all (ms). */
  limitWaitedCalls: number;
  limitWaitMs: number;
  failedCalls: number;
  inputTokens: number;
  outputTokens: number;
  costNanos: number;
  unpricedCalls: number;
  latency: LatencyHistogram;
  /** Made at the model's first streamed call. */
  ttft: LatencyHistogram | null;
  scores: ScoreTally;
}

/** Judge scores: how many, their sum and their squares' sum (for the mean and its margin of error). */
interface ScoreTally {
  count: number;
  sum: number;
  sumOfSquares: number;
}

const noScores = (): ScoreTally => ({ count: 0, sum: 0, sumOfSquares: 0 });

/** Calls of one kind beside the answers (retries, fallbacks, judge, ...): their count, their cost, and how many had no price. */
interface CallTally {
  calls: number;
  nanos: number;
  unpriced: number;
}

/** The rows that went on past one model for its rate limit: their cost, and their tokens at its price (null once one is unknown: it has no price). */
interface PastRateLimitTally {
  rows: number;
  nanos: number;
  unpriced: number;
  atItsPriceNanos: number | null;
}

const callTally = (): CallTally => ({ calls: 0, nanos: 0, unpriced: 0 });

function addToTally(tally: CallTally, nanos: number | null): void {
  tally.calls += 1;
  if (nanos === null) tally.unpriced += 1;
  else tally.nanos += nanos;
}

/** Each configured model's figures that the report reads, by name (reportModels). */
export type ReportModels = Readonly<Record<string, { max_output_tokens?: number | undefined; price?: ModelConfig['price'] }>>;

/**
 * What the report needs of each configured model: its max_output_tokens, which caps a row's
 * max_tokens (model-request.ts), so that an answer cut off there, which a higher max_tokens does not
 * help, is told apart; and its price, so that rows a rate limit sent to a fallback are set against
 * what the model they went on past would have charged for the same tokens.
 */
export function reportModels(config: { models: ReportModels } | null | undefined): ReportModels {
  return Object.fromEntries(Object.entries(config?.models ?? {}).map(([name, model]) => [name, { max_output_tokens: model.max_output_tokens, price: model.price }]));
}

/** What a report is about, beside the figures: the batch and its time span. */
export interface ReportSpan {
  batchId: string;
  startedAt: Date | string;
  finishedAt: Date | string;
}

/**
 * Rows counted as a group (see RowGroupReport, AbArmReport). Its cost comes from the results
 * (`unpricedRows`), or for an A/B arm from the calls (`unpricedCalls`); `answeredBy` is read where
 * the group spans models.
 */
interface RowGroupTally {
  rows: number;
  succeeded: number;
  /** Succeeded rows whose cost is known (no unpriced call). */
  pricedAnswers: number;
  cachedRows: number;
  costNanos: number;
  unpricedRows: number;
  unpricedCalls: number;
  latency: LatencyHistogram;
  answeredBy: Map<string, number>;
  scores: ScoreTally;
}

function newRowGroupTally(): RowGroupTally {
  return { rows: 0, succeeded: 0, pricedAnswers: 0, cachedRows: 0, costNanos: 0, unpricedRows: 0, unpricedCalls: 0, latency: new LatencyHistogram(), answeredBy: new Map(), scores: noScores() };
}

/** Who a result is counted under: its ensemble, else its model (the Models table's rows). */
function countedUnder(result: RowResult): string {
  return result.ensemble?.name ?? result.model;
}

/** Counts a result in the group; its cost too unless the group's cost comes from the calls (an A/B arm). */
function addToRowGroup(group: RowGroupTally, result: RowResult, costFrom: 'result' | 'calls'): void {
  group.rows += 1;
  if (costFrom === 'result') {
    if (result.cost_usd === null) group.unpricedRows += 1;
    else group.costNanos += usdToNanos(result.cost_usd);
  }
  if (result.status === 'succeeded') {
    group.succeeded += 1;
    // A cached answer took no call: its $0 and 0 ms would pull the group's cost per answer and latency down.
    if (result.cached) group.cachedRows += 1;
    else {
      if (result.cost_usd !== null) group.pricedAnswers += 1;
      group.latency.record(result.latency_ms);
    }
    increment(group.answeredBy, result.ensemble?.name ?? result.final_model ?? result.model);
  }
}

interface TaskTally {
  rows: number;
  succeeded: number;
  failed: number;
  calls: number;
  costNanos: number;
  byModel: Map<string, RowGroupTally>;
}

/** finish_reason values of an answer the model ended itself (a tool call is one too). */
const FINISHED_ANSWER = new Set(['stop', 'tool_calls', 'function_call']);

/** The most characters an Excel cell holds: a longer answer in results.csv is cut when Excel opens it. */
export const EXCEL_CELL_MAX_CHARS = 32_767;

/** Counts a cell longer than EXCEL_CELL_MAX_CHARS into `long` (made at the first, whose id it keeps), for long_outputs and compare.long_prompts alike. */
export function withLongCell(long: LongCells | null, id: string, chars: number): LongCells {
  const cells = long ?? { rows: 0, first_id: id, longest_chars: 0 };
  cells.rows += 1;
  cells.longest_chars = Math.max(cells.longest_chars, chars);
  return cells;
}
/**
 * A finished batch's exit code: 1 when a row failed, was invalid, or was answered but not scored
 * by its judge (an evaluation with gaps; a resume scores them), else 0. Invalid rows did not
 * succeed either: a script checking the exit code must see them.
 */
export function batchExitCode(report: Report, invalidRows: number): 0 | 1 {
  return report.totals.failed > 0 || invalidRows > 0 || (report.judge?.rows_unscored ?? 0) > 0 ? 1 : 0;
}

function newModelTally(): ModelTally {
  return { rows: 0, succeeded: 0, failed: 0, calls: 0, callsThisRun: 0, limitWaitedCalls: 0, limitWaitMs: 0, failedCalls: 0, inputTokens: 0, outputTokens: 0, costNanos: 0, unpricedCalls: 0, latency: new LatencyHistogram(), ttft: null, scores: noScores() };
}

/** The task-type lines holding the LLM classifier's calls and the judge's: neither is the answering of a row of some type. */
const CLASSIFIER_TASK_LINE = '(classifier)';
const JUDGE_TASK_LINE = '(judge)';

/** The cut_off key of succeeded answers that are empty though finished. */
export const EMPTY_ANSWER = 'empty';
/** The cut_off key of succeeded answers that are the model's refusal (`refusal` in results.jsonl). */
export const REFUSED_ANSWER = 'refusal';

/**
 * The report's figures, fed one result and one call at a time: by the collector as rows come in
 * (collection-tally.ts), or from results.jsonl and costs.jsonl when that tally was given up. Memory
 * holds one tally per model (with a bounded latency histogram), per task type and per error code.
 * Nano-dollar sums are exact while below 2^53 nanos (about $9 million).
 */
export class ReportTally {
  readonly #baseline: ReportBaseline | undefined;
  readonly #models = new Map<string, ModelTally>();
  readonly #taskTypes = new Map<string, TaskTally>();
  readonly #ensembles = new Map<string, RowGroupTally>();
  /** Per ensemble, its succeeded rows synthesized from fewer answers than it has members. */
  readonly #ensembleRowsShort = new Map<string, number>();
  readonly #abArms = new Map<string, RowGroupTally>();
  #judge: { model: string; scores: ScoreTally; unscored: Map<string, number>; paired: PairedScores; byFallback: Map<string, number> } | null = null;
  readonly #rowErrors = new Map<string, number>();
  readonly #errorExamples = new Map<string, string>();
  /** The models failed rows ended on, per code: bounded by the codes and the models, whatever the rows. */
  readonly #errorModels = new Map<string, Set<string>>();
  readonly #callErrors = new Map<string, number>();
  /** One message per call error code: bounded by the codes, whatever the number of calls. */
  readonly #callErrorExamples = new Map<string, string>();
  readonly #cutOff = new Map<string, number>();
  /** Answers cut off ("length") at their model's max_output_tokens, by model: bounded by the models. */
  readonly #cutAtModelCap = new Map<string, number>();
  /** Answers longer than an Excel cell holds (EXCEL_CELL_MAX_CHARS): the first row's id, and the longest. */
  #longOutputs: LongCells | null = null;
  #longOutputFirstRow = Number.POSITIVE_INFINITY;
  readonly #configModels: ReportModels;
  /** A --compare batch's models, in its order: which one a row was put to is told by its number (compare-fan-out.ts). */
  readonly #compared: readonly string[] | undefined;
  readonly #cached = { rows: 0, savedNanos: 0, unpriced: 0 };
  readonly #extra = { retry: callTally(), fallback: callTally(), classifier: callTally(), member: callTally(), synthesis: callTally(), judge: callTally() };
  readonly #runStartedAt: number;
  #rows = 0;
  #rowsThisRun = 0;
  #succeeded = 0;
  #rowsOnFallback = 0;
  /** Rows that went on past a model for its rate limit, by that model (fallback_reason). */
  readonly #pastRateLimit = new Map<string, number>();
  /** By the model passed over: what those rows (outside ensembles) cost, and their tokens at its price. */
  readonly #pastRateLimitCost = new Map<string, PastRateLimitTally>();
  #classifierDecided = 0;
  /** Judge calls by the model that made them: an earlier judge's (a resume that changed it) or a fallback's are not the judge's. */
  readonly #judgeCallsByModel = new Map<string, number>();
  #baselineNanos = 0;
  /** What the rows with an answer cost (their results' cost_usd; a row from the cache none), for a comparison with the baseline that leaves out the calls of rows without one. */
  readonly #answeredRows = { rows: 0, nanos: 0, unpriced: 0 };
  /** The part of the baseline comparison outside ensembles: the answer calls' (and the classifier's) cost, and their answers on the baseline. */
  readonly #outsideEnsembles = { nanos: 0, unpriced: 0, baselineNanos: 0 };
  /** An ensemble row's prompt tokens (its first answered member call's input), until its synthesis call comes. */
  readonly #ensemblePromptTokens = new Map<string, number>();
  #usageEstimatedCalls = 0;
  #lastCompletedAt = Number.NaN;

  /**
   * `runStartedAt`: when this run began; rows completed before it were done by an earlier run.
   * `models`: each model's max_output_tokens and price (reportModels), to tell answers cut off there and price the rows a rate limit sent on.
   */
  constructor(baseline?: ReportBaseline, runStartedAt?: Date, models: ReportModels = {}, compared?: readonly string[]) {
    this.#baseline = baseline;
    this.#runStartedAt = runStartedAt?.getTime() ?? -Infinity;
    this.#configModels = models;
    this.#compared = compared;
  }

  /**
   * The model (or ensemble) a row answered by a fallback was put to: a compared row's by its number;
   * else its A/B arm, or the first model it called (one passed over unsent, its context window too
   * small, is not among them: the fallback is named then).
   */
  #putTo(result: RowResult): string {
    if (result.ensemble) return result.ensemble.name;
    const compared = this.#compared;
    if (compared && result.row >= 1) return compared[(result.row - 1) % compared.length]!;
    const arm = result.ab_arm !== undefined && result.ab_arm !== 'auto' ? result.ab_arm : undefined;
    return arm ?? result.models_tried?.[0] ?? result.model;
  }

  #model(model: string): ModelTally {
    let entry = this.#models.get(model);
    if (!entry) {
      entry = newModelTally();
      this.#models.set(model, entry);
    }
    return entry;
  }

  #task(type: string | null | undefined): TaskTally {
    const key = type || 'unclassified';
    let entry = this.#taskTypes.get(key);
    if (!entry) {
      entry = { rows: 0, succeeded: 0, failed: 0, calls: 0, costNanos: 0, byModel: new Map() };
      this.#taskTypes.set(key, entry);
    }
    return entry;
  }

  addResult(result: RowResult): void {
    // An ensemble row that failed before its synthesis has the ensemble's name for a model: it is
    // counted in the Ensembles table only, not as a model's row.
    const entry = result.ensemble?.name === result.model ? null : this.#model(result.model);
    const task = this.#task(result.task_type);
    this.#rows += 1;
    // "llm: coding" (after an A/B arm's prefix, if any): the classifier's answer chose the type.
    if (/(^|: )llm: /.test(result.route_reason ?? '')) this.#classifierDecided += 1;
    // Not `>=` on a missing or bad stamp (NaN): such a row counts as this run's.
    const completedAt = Date.parse(result.completed_at);
    if (!(completedAt < this.#runStartedAt)) this.#rowsThisRun += 1;
    if (!(completedAt <= this.#lastCompletedAt)) this.#lastCompletedAt = completedAt;
    if (entry) entry.rows += 1;
    task.rows += 1;
    const ensemble = result.ensemble ? rowGroup(this.#ensembles, result.ensemble.name) : undefined;
    const arm = result.ab_arm === undefined ? undefined : rowGroup(this.#abArms, result.ab_arm);
    const taskOnModel = rowGroup(task.byModel, countedUnder(result));
    for (const group of [ensemble, taskOnModel]) if (group) addToRowGroup(group, result, 'result');
    // Paid for every member, answered from fewer: a member failed, or was given up for its rate limit.
    if (result.ensemble && result.status === 'succeeded' && result.ensemble.members.some((member) => member.status !== 'succeeded')) increment(this.#ensembleRowsShort, result.ensemble.name);
    if (arm) addToRowGroup(arm, result, 'calls');
    // A synthesis is the ensemble's answer: scored under the ensemble, not mixed into its synthesizer's own answers.
    if (result.judge) this.#addJudged(result, result.judge, ensemble ? undefined : entry?.scores, ensemble?.scores, arm?.scores, taskOnModel.scores);
    if (result.cached) {
      this.#cached.rows += 1;
      if (result.cached.saved_usd === null) this.#cached.unpriced += 1;
      else this.#cached.savedNanos += usdToNanos(result.cached.saved_usd);
    }
    for (const model of passedForRateLimit(result.fallback_reason ?? null)) {
      this.#pastRateLimit.set(model, (this.#pastRateLimit.get(model) ?? 0) + 1);
      this.#addPastRateLimitCost(model, result);
    }
    if (result.output !== null && result.output.length > EXCEL_CELL_MAX_CHARS) this.#addLongOutput(result.row, result.id, result.output.length);
    if (result.status === 'succeeded') {
      this.#succeeded += 1;
      // An answer from the cache had no call, on either side of the comparison: it is aside, as in the batch's.
      if (!result.cached) this.#addAnsweredRow(result.cost_usd);
      if (entry) entry.succeeded += 1;
      task.succeeded += 1;
      if (answeredOnFallback(result)) this.#rowsOnFallback += 1;
      if (result.finish_reason && !FINISHED_ANSWER.has(result.finish_reason)) {
        increment(this.#cutOff, result.finish_reason);
        const capped = result.finish_reason === 'length' ? this.#cappedModel(result) : null;
        if (capped !== null) increment(this.#cutAtModelCap, capped);
      } else if (result.refusal !== undefined) increment(this.#cutOff, REFUSED_ANSWER);
      // A finished answer with no text (content null, tool calls only) succeeded, but says nothing.
      else if (result.output !== null && result.output.trim() === '') increment(this.#cutOff, EMPTY_ANSWER);
    } else {
      if (entry) entry.failed += 1;
      task.failed += 1;
      const code = result.error?.code ?? 'unknown';
      increment(this.#rowErrors, code);
      const models = this.#errorModels.get(code) ?? new Set<string>();
      this.#errorModels.set(code, models.add(result.model));
      if (result.error?.message && !this.#errorExamples.has(code)) this.#errorExamples.set(code, result.error.message);
    }
  }

  /**
   * The model whose max_output_tokens stopped a cut-off answer, or null when the row's own max_tokens
   * (below the cap) did: the answer call's tokens reached the cap, which only a limit at the cap
   * allows. Its usage adds the row's other calls (an LLM classifier's, a broken stream's), so a row
   * cut at its own max_tokens just under the cap would pass for capped by them; a result written
   * before `answer_output_tokens` has only its usage. An ensemble's adds its members', so its
   * synthesis is not told apart.
   */
  #cappedModel(result: RowResult): string | null {
    if (result.ensemble) return null;
    const model = result.final_model ?? result.model;
    const cap = Object.hasOwn(this.#configModels, model) ? this.#configModels[model]?.max_output_tokens : undefined;
    const tokens = result.cached ? result.cached.usage.output_tokens : (result.answer_output_tokens ?? result.usage.output_tokens);
    return cap !== undefined && tokens >= cap ? model : null;
  }

  #addAnsweredRow(costUsd: number | null): void {
    this.#answeredRows.rows += 1;
    if (costUsd === null) this.#answeredRows.unpriced += 1;
    else this.#answeredRows.nanos += usdToNanos(costUsd);
  }

  /**
   * What a row that went on past `model` for its rate limit cost, and its tokens at `model`'s price:
   * what the wait on_limit: fallback spared was paid for (QA: 584 FAQ rows answered by a model 34
   * times the price, the summary saying only how many). An ensemble row's cost and tokens are every
   * member's and the synthesis', not the one call that went on: it is counted in rows_past_rate_limit
   * only. So is a row answered from the cache, which cost nothing either way.
   */
  #addPastRateLimitCost(model: string, result: RowResult): void {
    if (result.ensemble || result.cached) return;
    let tally = this.#pastRateLimitCost.get(model);
    if (!tally) {
      tally = { rows: 0, nanos: 0, unpriced: 0, atItsPriceNanos: 0 };
      this.#pastRateLimitCost.set(model, tally);
    }
    tally.rows += 1;
    if (result.cost_usd === null) tally.unpriced += 1;
    else tally.nanos += usdToNanos(result.cost_usd);
    // The row's usage: its answer's tokens (and its retries', and an LLM classifier's, which are few), as the skipped model would have billed them.
    const atItsPrice = callCostNanos(this.#configModels[model]?.price, result.usage);
    tally.atItsPriceNanos = atItsPrice === null || tally.atItsPriceNanos === null ? null : tally.atItsPriceNanos + atItsPrice;
  }

  #addJudged(result: RowResult, judged: NonNullable<RowResult['judge']>, ...scoreTallies: Array<ScoreTally | undefined>): void {
    const judge = (this.#judge ??= { model: judged.model, scores: noScores(), unscored: new Map(), paired: new PairedScores(), byFallback: new Map() });
    if (judged.score === null) {
      increment(judge.unscored, judged.error?.code ?? 'unknown');
      return;
    }
    if (judged.final_model && judged.final_model !== judged.model) increment(judge.byFallback, judged.final_model);
    // An ensemble's rows compare as the ensemble, not as its synthesizer. A row a fallback answered
    // is neither its model's answer nor the fallback's own row for that prompt: it is left out.
    if (answeredOnFallback(result)) judge.paired.leaveOut(result.id, this.#putTo(result));
    else judge.paired.add(result.id, result.ensemble?.name ?? result.model, judged.score);
    for (const tally of [judge.scores, ...scoreTallies]) {
      if (!tally) continue;
      tally.count += 1;
      tally.sum += judged.score;
      tally.sumOfSquares += judged.score * judged.score;
    }
  }

  #addLongOutput(row: number, id: string, chars: number): void {
    const long = (this.#longOutputs = withLongCell(this.#longOutputs, id, chars));
    // Rows come as they finish: the first is the file's first, as when tallied from results.jsonl.
    if (row < this.#longOutputFirstRow) [this.#longOutputFirstRow, long.first_id] = [row, id];
  }

  addCall(call: CallRecord): void {
    const extra = this.#extra;
    const entry = this.#model(call.model);
    const nanos = call.cost_usd === null || call.cost_usd === undefined ? null : usdToNanos(call.cost_usd);
    entry.calls += 1;
    // As for rows: a call with a missing or bad stamp (NaN) counts as this run's.
    if (!(Date.parse(call.started_at) < this.#runStartedAt)) {
      entry.callsThisRun += 1;
      if (call.limit_wait_ms) {
        entry.limitWaitedCalls += 1;
        entry.limitWaitMs += call.limit_wait_ms;
      }
    }
    entry.inputTokens += call.input_tokens;
    entry.outputTokens += call.output_tokens;
    if (nanos === null) entry.unpricedCalls += 1;
    else entry.costNanos += nanos;
    // The classifier's calls decide task types rather than answer one: their own line, not "unclassified".
    const task = this.#task(call.purpose === 'classify' ? CLASSIFIER_TASK_LINE : call.purpose === 'judge' ? JUDGE_TASK_LINE : call.task_type);
    task.calls += 1;
    task.costNanos += nanos ?? 0;
    // What routing saved, apart from what ensembles cost: the calls of rows outside ensembles (the classifier's routes them).
    if (call.purpose === 'answer' || call.purpose === 'classify') {
      if (nanos === null) this.#outsideEnsembles.unpriced += 1;
      else this.#outsideEnsembles.nanos += nanos;
    }
    if (call.purpose === 'classify') addToTally(extra.classifier, nanos);
    else if (call.purpose === 'judge') {
      addToTally(extra.judge, nanos);
      increment(this.#judgeCallsByModel, call.model);
    }
    else {
      if (call.purpose === 'ensemble_member') addToTally(extra.member, nanos);
      else if (call.purpose === 'synthesis') addToTally(extra.synthesis, nanos);
      if (call.attempt > 1) addToTally(extra.retry, nanos);
      if ((call.chain_position ?? 0) > 0) addToTally(extra.fallback, nanos);
      if (this.#baseline && call.status === 'succeeded') this.#addToBaseline(call);
    }
    // An arm's cost is what its rows' calls cost, in every run: a result's cost_usd covers the last run's alone.
    if (call.ab_arm !== undefined && call.purpose !== 'judge') {
      const arm = rowGroup(this.#abArms, call.ab_arm);
      if (nanos === null) arm.unpricedCalls += 1;
      else arm.costNanos += nanos;
    }
    if (call.usage_estimated) this.#usageEstimatedCalls += 1;
    if (call.status === 'succeeded') {
      entry.latency.record(call.latency_ms);
      if (call.ttft_ms !== undefined) (entry.ttft ??= new LatencyHistogram()).record(call.ttft_ms);
    } else {
      entry.failedCalls += 1;
      const code = call.error_code ?? (call.http_status === null ? 'unknown' : `http_${call.http_status}`);
      increment(this.#callErrors, code);
      if (call.error_message && !this.#callErrorExamples.has(code)) this.#callErrorExamples.set(code, call.error_message);
    }
  }

  /** When the last row finished (null when no row has a readable time): the end of a batch its workers finished before anyone collected it. */
  get lastCompletedAt(): Date | null {
    return Number.isNaN(this.#lastCompletedAt) ? null : new Date(this.#lastCompletedAt);
  }

  /** The report; `invalid` is what the producer counted of rows that could not be run. */
  build(span: ReportSpan, invalid: InvalidRowCounts = {}, unfinished: number | null = 0): Report {
    const invalidEntries = Object.entries(invalid).sort(([a, x], [b, y]) => y.rows - x.rows || byCodePoint(a, b));
    const { models, sums } = this.#modelReports();
    const errors = byCountDescending(this.#rowErrors);
    const callErrors = byCountDescending(this.#callErrors);
    const rows = this.#rows;
    const startedAt = new Date(span.startedAt);
    const finishedAt = new Date(span.finishedAt);
    const elapsedMs = Math.max(0, finishedAt.getTime() - startedAt.getTime());
    return {
      batch_id: span.batchId,
      started_at: startedAt.toISOString(),
      finished_at: finishedAt.toISOString(),
      totals: {
        rows,
        succeeded: this.#succeeded,
        failed: rows - this.#succeeded,
        calls: sums.calls,
        failed_calls: sums.failedCalls,
        input_tokens: sums.inputTokens,
        output_tokens: sums.outputTokens,
        cost_usd: nanosToUsd(sums.costNanos),
        unpriced_calls: sums.unpricedCalls,
        usage_estimated_calls: this.#usageEstimatedCalls,
        elapsed_ms: elapsedMs,
        rows_this_run: this.#rowsThisRun,
        rows_per_second: elapsedMs > 0 ? roundTenth((this.#rowsThisRun * 1000) / elapsedMs) : null,
        invalid_rows: invalidEntries.reduce((sum, [, entry]) => sum + entry.rows, 0),
        unfinished_rows: unfinished,
      },
      // fromEntries defines own properties, so a model named "__proto__" stays a plain key.
      models: Object.fromEntries(models),
      errors,
      error_examples: examplesOf(errors, this.#errorExamples),
      error_models: Object.fromEntries(Object.keys(errors).map((code) => [code, [...(this.#errorModels.get(code) ?? [])].sort(byCodePoint)])),
      call_errors: callErrors,
      call_error_examples: examplesOf(callErrors, this.#callErrorExamples),
      cut_off: byCountDescending(this.#cutOff),
      cut_off_at_model_cap: byCountDescending(this.#cutAtModelCap),
      ...(this.#longOutputs && { long_outputs: { ...this.#longOutputs } }),
      invalid_input: Object.fromEntries(invalidEntries.map(([code, entry]) => [code, entry.rows])),
      invalid_input_examples: Object.fromEntries(invalidEntries.map(([code, entry]) => [code, entry.example])),
      task_types: Object.fromEntries(
        [...this.#taskTypes.entries()]
          .sort(([a, x], [b, y]) => y.rows - x.rows || byCodePoint(a, b))
          .map(([type, t]) => [type, { rows: t.rows, succeeded: t.succeeded, failed: t.failed, calls: t.calls, cost_usd: nanosToUsd(t.costNanos), by_model: rowGroupReports(t.byModel) }]),
      ),
      ensembles: Object.fromEntries(Object.entries(rowGroupReports(this.#ensembles)).map(([name, group]) => [name, { ...group, rows_short_of_members: this.#ensembleRowsShort.get(name) ?? 0 }])),
      ab_arms: Object.fromEntries([...this.#abArms.entries()].sort(([a], [b]) => byCodePoint(a, b)).map(([name, arm]) => [name, abArmReport(arm)])),
      extra_calls: this.#extraCallsReport(),
      cache: { answered_rows: this.#cached.rows, saved_usd: nanosToUsd(this.#cached.savedNanos), unpriced_rows: this.#cached.unpriced },
      judge: this.#judgeReport(),
      // Judging would cost the same on the baseline: the comparison is of the answers.
      baseline: this.#baselineReport(sums.costNanos - this.#extra.judge.nanos, sums.unpricedCalls - this.#extra.judge.unpriced),
    };
  }

  /** Each model's figures, most rows first, and their sums (the batch's totals). */
  #modelReports(): { models: Array<[string, ModelReport]>; sums: { calls: number; failedCalls: number; inputTokens: number; outputTokens: number; costNanos: number; unpricedCalls: number } } {
    const ordered = [...this.#models.entries()].sort(([nameA, a], [nameB, b]) => b.rows - a.rows || b.calls - a.calls || byCodePoint(nameA, nameB));
    const sums = { calls: 0, failedCalls: 0, inputTokens: 0, outputTokens: 0, costNanos: 0, unpricedCalls: 0 };
    const models = ordered.map(([name, entry]): [string, ModelReport] => {
      for (const key of Object.keys(sums) as Array<keyof typeof sums>) sums[key] += entry[key];
      return [name, {
        rows: entry.rows,
        succeeded: entry.succeeded,
        failed: entry.failed,
        calls: entry.calls,
        calls_this_run: entry.callsThisRun,
        ...(entry.limitWaitedCalls > 0 && { limit_waits_this_run: { calls: entry.limitWaitedCalls, wait_ms: entry.limitWaitMs } }),
        failed_calls: entry.failedCalls,
        input_tokens: entry.inputTokens,
        output_tokens: entry.outputTokens,
        cost_usd: nanosToUsd(entry.costNanos),
        unpriced_calls: entry.unpricedCalls,
        latency_p50_ms: roundTenth(entry.latency.quantile(0.5)),
        latency_p95_ms: roundTenth(entry.latency.quantile(0.95)),
        ttft_p50_ms: entry.ttft ? roundTenth(entry.ttft.quantile(0.5)) : null,
        ttft_p95_ms: entry.ttft ? roundTenth(entry.ttft.quantile(0.95)) : null,
        ...scoreFigures(entry.scores),
      }];
    });
    return { models, sums };
  }

  #extraCallsReport(): ExtraCallsReport {
    const extra = this.#extra;
    return {
      retry_calls: extra.retry.calls,
      retry_cost_usd: nanosToUsd(extra.retry.nanos),
      retry_unpriced_calls: extra.retry.unpriced,
      fallback_calls: extra.fallback.calls,
      fallback_cost_usd: nanosToUsd(extra.fallback.nanos),
      fallback_unpriced_calls: extra.fallback.unpriced,
      rows_on_fallback: this.#rowsOnFallback,
      rows_past_rate_limit: byCountDescending(this.#pastRateLimit),
      past_rate_limit_cost: Object.fromEntries(
        [...this.#pastRateLimitCost].map(([model, tally]) => [model, { rows: tally.rows, cost_usd: nanosToUsd(tally.nanos), unpriced_rows: tally.unpriced, cost_at_its_price_usd: tally.atItsPriceNanos === null ? null : nanosToUsd(tally.atItsPriceNanos) }]),
      ),
      classifier_calls: extra.classifier.calls,
      classifier_cost_usd: nanosToUsd(extra.classifier.nanos),
      classifier_decided_rows: this.#classifierDecided,
      classifier_unpriced_calls: extra.classifier.unpriced,
      ensemble_member_calls: extra.member.calls,
      ensemble_member_cost_usd: nanosToUsd(extra.member.nanos),
      ensemble_member_unpriced_calls: extra.member.unpriced,
      synthesis_calls: extra.synthesis.calls,
      synthesis_cost_usd: nanosToUsd(extra.synthesis.nanos),
      synthesis_unpriced_calls: extra.synthesis.unpriced,
      judge_calls: extra.judge.calls,
      judge_cost_usd: nanosToUsd(extra.judge.nanos),
      judge_unpriced_calls: extra.judge.unpriced,
    };
  }

  #judgeReport(): JudgeReport | null {
    const judge = this.#judge;
    if (!judge) return null;
    return {
      model: judge.model,
      rows_scored: judge.scores.count,
      mean_score: meanScore(judge.scores),
      score_margin: marginOfError(judge.scores),
      rows_unscored: [...judge.unscored.values()].reduce((sum, n) => sum + n, 0),
      unscored: byCountDescending(judge.unscored),
      scored_by_fallback: byCountDescending(judge.byFallback),
      calls_by_model: byCountDescending(this.#judgeCallsByModel),
      paired: judge.paired.comparisons(),
      paired_left_out: judge.paired.leftOut(),
    };
  }

  /**
   * What the call's answer would have cost on the baseline model. An ensemble row's answer is its
   * synthesis: on the baseline it would be one answer to the prompt (a member's input tokens, the
   * synthesis' output tokens), not every member's call and a synthesis prompt holding their answers.
   */
  #addToBaseline(call: CallRecord): void {
    const price = this.#baseline!.price;
    let usage = { input_tokens: call.input_tokens, output_tokens: call.output_tokens };
    if (call.purpose === 'ensemble_member') {
      const key = `${call.batch_id}\n${call.row}`;
      if (!this.#ensemblePromptTokens.has(key)) this.#ensemblePromptTokens.set(key, call.input_tokens);
      return;
    }
    if (call.purpose === 'synthesis') {
      const key = `${call.batch_id}\n${call.row}`;
      usage = { input_tokens: this.#ensemblePromptTokens.get(key) ?? 0, output_tokens: call.output_tokens };
      this.#ensemblePromptTokens.delete(key);
    }
    const nanos = callCostNanos(price, usage) ?? 0;
    this.#baselineNanos += nanos;
    if (call.purpose === 'answer') this.#outsideEnsembles.baselineNanos += nanos;
  }

  /** What the answers (`answersNanos`) cost against what they would have cost on the baseline model. */
  #baselineReport(answersNanos: number, unpricedCalls: number): BaselineReport | null {
    if (!this.#baseline) return null;
    const outside = this.#outsideEnsembles;
    const ensembleCalls = this.#extra.member.calls + this.#extra.synthesis.calls;
    const answered = this.#answeredRows;
    return {
      model: this.#baseline.model,
      ...savingsFigures(this.#baselineNanos, answersNanos, unpricedCalls),
      unpriced_calls: unpricedCalls,
      // Beside ensembles, whose several calls per row cost more than one answer by design, the whole says little of routing.
      ...(ensembleCalls > 0 && outside.baselineNanos > 0 && { outside_ensembles: savingsFigures(outside.baselineNanos, outside.nanos, outside.unpriced) }),
      // Rows the budget stopped may hold paid calls (an ensemble's members) with no answer to set against the baseline's.
      ...((this.#rowErrors.get('budget_exceeded') ?? 0) > 0 && { answered_rows: { rows: answered.rows, unpriced_rows: answered.unpriced, ...savingsFigures(this.#baselineNanos, answered.nanos, answered.unpriced) } }),
    };
  }
}

/** What `paidNanos` cost against `baselineNanos`; the saving null when some calls had no price (unknown cost: "100% less" would claim them free). */
function savingsFigures(baselineNanos: number, paidNanos: number, unpricedCalls: number): SavingsFigures {
  const known = unpricedCalls === 0;
  return {
    baseline_cost_usd: nanosToUsd(baselineNanos),
    batch_cost_usd: nanosToUsd(paidNanos),
    savings_usd: known ? nanosToUsd(baselineNanos - paidNanos) : null,
    savings_percent: known && baselineNanos > 0 ? Math.round(((baselineNanos - paidNanos) / baselineNanos) * 1000) / 10 : null,
  };
}

/**
 * A row whose answer came from a fallback model. An ensemble row calls several models by design:
 * only a synthesis or a member answered by another model than the one configured is a fallback.
 */
/**
 * The models a row went on past for their rate limits, as its fallback_reason words it (row-runner.ts
 * takeSlot and its 429 wait: "m: rate limited (requests) for 12 s, over limits.max_wait_ms"); an
 * ensemble's reasons carry a prefix before the model's own, "member <member>: m: ..." and
 * "synthesis: m: ..." (ensemble-row.ts), which is not part of the model's name.
 */
const PAST_RATE_LIMIT = /(?:^|; )(?:(?:member [^;]+?|synthesis): )?([^;]+?): rate limited(?: \((?:requests|tokens|cooldown)\))? for [\d.]+ s, over limits\.max_wait_ms/g;
export function passedForRateLimit(fallbackReason: string | null): string[] {
  if (fallbackReason === null) return [];
  return [...new Set([...fallbackReason.matchAll(PAST_RATE_LIMIT)].map((match) => match[1]!))];
}

function answeredOnFallback(result: RowResult): boolean {
  const { ensemble } = result;
  if (!ensemble) return (result.models_tried?.length ?? 1) > 1 || (result.fallback_reason ?? null) !== null;
  const member = ensemble.members.some((m) => m.status === 'succeeded' && m.final_model !== null && m.final_model !== m.model);
  return member || (result.final_model !== null && result.final_model !== ensemble.synthesizer) || SYNTHESIS_LEFT_ITS_MODEL.test(result.fallback_reason ?? '');
}

/**
 * A synthesis that went on past its synthesizer (ensemble-row.ts prefixes its reasons "synthesis: "):
 * `ensemble.synthesizer` names the model that wrote it, so it no longer tells a fallback's synthesis
 * apart; results written before that named the configured synthesizer, which the comparison above reads.
 */
const SYNTHESIS_LEFT_ITS_MODEL = /(?:^|; )synthesis: /;

/** The example of each code in `counts` that has one, in the counts' order. */
function examplesOf(counts: Record<string, number>, examples: ReadonlyMap<string, string>): Record<string, string> {
  return Object.fromEntries(Object.keys(counts).flatMap((code) => {
    const example = examples.get(code);
    return example === undefined ? [] : [[code, example]];
  }));
}

function increment(counts: Map<string, number>, key: string): void {
  counts.set(key, (counts.get(key) ?? 0) + 1);
}

function byCountDescending(counts: Map<string, number>): Record<string, number> {
  const sorted = [...counts.entries()].sort(([a, x], [b, y]) => y - x || byCodePoint(a, b));
  return Object.fromEntries(sorted);
}

/** Plain string order (no locale collation, which would load ICU for a tie-break). */
function byCodePoint(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** The group `name` of `groups`, made on first use. */
function rowGroup(groups: Map<string, RowGroupTally>, name: string): RowGroupTally {
  let group = groups.get(name);
  if (!group) {
    group = newRowGroupTally();
    groups.set(name, group);
  }
  return group;
}

function rowFigures(group: RowGroupTally): RowFigures {
  return {
    rows: group.rows,
    succeeded: group.succeeded,
    failed: group.rows - group.succeeded,
    cached_rows: group.cachedRows,
    latency_p50_ms: roundTenth(group.latency.quantile(0.5)),
    latency_p95_ms: roundTenth(group.latency.quantile(0.95)),
    ...scoreFigures(group.scores),
  };
}

/** `nanos` per answer, in USD; null with no answer. */
function perAnswer(nanos: number, answers: number): number | null {
  return answers === 0 ? null : nanosToUsd(Math.round(nanos / answers));
}

function rowGroupReport(group: RowGroupTally): RowGroupReport {
  return { ...rowFigures(group), cost_usd: nanosToUsd(group.costNanos), unpriced_rows: group.unpricedRows, cost_per_answer_usd: perAnswer(group.costNanos, group.pricedAnswers) };
}

function abArmReport(arm: RowGroupTally): AbArmReport {
  // Every call unpriced: what an answer cost is unknown, not $0.
  const known = arm.costNanos > 0 || arm.unpricedCalls === 0;
  return {
    ...rowFigures(arm),
    cost_usd: nanosToUsd(arm.costNanos),
    unpriced_calls: arm.unpricedCalls,
    cost_per_answer_usd: known ? perAnswer(arm.costNanos, arm.succeeded - arm.cachedRows) : null,
    answered_by: byCountDescending(arm.answeredBy),
  };
}

/** Groups by name, most rows first. */
function rowGroupReports(groups: Map<string, RowGroupTally>): Record<string, RowGroupReport> {
  return Object.fromEntries([...groups.entries()].sort(([a, x], [b, y]) => y.rows - x.rows || byCodePoint(a, b)).map(([name, group]) => [name, rowGroupReport(group)]));
}

function scoreFigures(scores: ScoreTally): { judged_rows: number; mean_score: number | null; score_margin: number | null } {
  return { judged_rows: scores.count, mean_score: meanScore(scores), score_margin: marginOfError(scores) };
}

/** A mean score to two decimals (scores are whole numbers, 1 to 10); null for none. */
function meanScore(scores: ScoreTally): number | null {
  return scores.count === 0 ? null : Math.round((scores.sum / scores.count) * 100) / 100;
}


function roundTenth(value: number | null): number | null {
  return value === null ? null : Math.round(value * 10) / 10;
}
