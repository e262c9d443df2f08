/**
 * The figures and sentences report.md (report-markdown.ts) and the terminal summary
 * (report-summary.ts) both say, worded once so the two never disagree: latencies, costs with their
 * unpriced calls, judge scores and their margins, and the lines on savings, the cache, ensembles,
 * the judge, estimated usage and answers cut off.
 */
import { formatUsd } from '../models/pricing.ts';
import type { PairedComparison } from './paired-scores.ts';
import { EMPTY_ANSWER, EXCEL_CELL_MAX_CHARS, REFUSED_ANSWER } from './report.ts';
import type { AbArmReport, BaselineReport, LongCells, ModelReport, Report, RowGroupReport } from './report-json.ts';
import { counted, formatCount, formatDuration } from '../figure-text.ts';

const count = (n: number): string => formatCount(n);

/** A latency: "4.2 ms", "820 ms", "1.92 s", "—" when unknown. */
export function formatLatency(ms: number | null): string {
  if (ms === null) return '—';
  if (ms < 10) return `${ms.toFixed(1)} ms`;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  return `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;
}

function formatRate(rowsPerSecond: number | null): string {
  if (rowsPerSecond === null) return 'n/a rows/s';
  const digits = rowsPerSecond >= 100 ? 0 : 1;
  return `${formatCount(rowsPerSecond, digits)} rows/s`;
}

/** "5 prompts, each put to all 2 models (a, b): 10 rows": a comparison's size (--compare); null without one. */
export function compareText(report: Report): string | null {
  const compare = report.compare;
  if (!compare) return null;
  const models = `${compare.models.length} models (${compare.models.join(', ')})`;
  if (compare.prompts === null) return `each prompt put to all ${models}`;
  return `${counted(compare.prompts, 'prompt')}, each put to all ${models}: ${counted(compare.prompts * compare.models.length, 'row')}`;
}

/** Cost with a note for calls that had no price (and are therefore not in the sum). */
export function formatCost(costUsd: number, unpricedCalls: number, calls: number): string {
  if (calls > 0 && unpricedCalls === calls) return formatUsd(null);
  const cost = formatUsd(costUsd);
  return unpricedCalls > 0 ? `${cost} + ${counted(unpricedCalls, 'unpriced call')}` : cost;
}

/** "4.1 s (487 rows/s)", or for a resumed batch "4.1 s (1,365 rows this run, 333 rows/s)". */
export function timeAndRate(totals: Report['totals']): string {
  const resumed = totals.rows_this_run < totals.rows ? `${counted(totals.rows_this_run, 'row')} this run, ` : '';
  return `${formatDuration(totals.elapsed_ms)} (${resumed}${formatRate(totals.rows_per_second)})`;
}

/** The rows a run stopped early did not get to ('' for a finished batch). */
export function unfinishedText(totals: Report['totals']): string {
  if (totals.unfinished_rows === 0) return '';
  return totals.unfinished_rows === null ? 'the rest of the file not run yet' : `${counted(totals.unfinished_rows, 'row')} not run yet`;
}

/** One line of at most `max` characters: whitespace runs become one space, the rest is cut with "…". */
export function shorten(text: string, max: number): string {
  const line = text.replace(/\s+/g, ' ').trim();
  return line.length <= max ? line : `${line.slice(0, max - 1)}…`;
}

interface ScoreFigures {
  mean_score: number | null;
  score_margin: number | null;
  judged_rows: number;
}

/** A mean judge score with its 95% margin: "7.4 ± 0.3"; the margin left out under 2 scores. */
export function scoreText(scores: Omit<ScoreFigures, 'judged_rows'>, digits = 1): string {
  if (scores.mean_score === null) return '—';
  return scores.score_margin === null ? scores.mean_score.toFixed(digits) : `${scores.mean_score.toFixed(digits)} ± ${scores.score_margin.toFixed(digits)}`;
}

/** The same with how many rows it is over: "7.4 ± 0.3 (120)"; a dash for none. */
export function formatScore(scores: ScoreFigures): string {
  return scores.mean_score === null ? '—' : `${scoreText(scores)} (${count(scores.judged_rows)})`;
}

/** How many rows the LLM classifier's answers routed, and what routed the rest. */
export function classifierDecidedText(report: Report): string {
  const { classifier_calls: calls, classifier_decided_rows: decided = 0 } = report.extra_calls;
  if (decided > 0) return `it chose the task type of ${counted(decided, 'row')}, the rules the rest`;
  return `its ${counted(calls, 'call')} chose no row's task type (each failed or named no configured type: route_reason in results.jsonl says which), so the rules routed every row; check routing.llm_classifier's model and prompt`;
}

/** "296 rows scored by pro, mean 6.42 ± 0.31 of 10; 4 not scored (server_error 3, no_score 1); 300 calls, $0.0123", or null without a judge. */
export function renderJudge(report: Report): string | null {
  const judge = report.judge;
  if (!judge) return null;
  const mean = judge.mean_score === null ? '' : `, mean ${scoreText(judge, 2)} of 10`;
  const fallbacks = Object.entries(judge.scored_by_fallback ?? {});
  const byFallback = fallbacks.length === 0 ? '' : ` (${fallbacks.map(([model, n]) => `${count(n)} of them by its fallback ${model}`).join(', ')}: another judge's scores)`;
  const unscored = judge.rows_unscored > 0 ? `; ${count(judge.rows_unscored)} not scored (${Object.entries(judge.unscored).map(([code, n]) => `${code} ${count(n)}`).join(', ')})` : '';
  // The batch's judge calls in every run: those of an earlier judge (or of a fallback) are said apart.
  const others = Object.entries(judge.calls_by_model ?? {}).filter(([model]) => model !== judge.model);
  const byOthers = others.length === 0 ? '' : `, ${others.map(([model, n]) => `${count(n)} by ${model}`).join(', ')}`;
  return `${counted(judge.rows_scored, 'row')} scored by ${judge.model}${byFallback}${mean}${unscored}; ${counted(report.extra_calls.judge_calls, 'call')}${byOthers} ${inParentheses(extraCost(report.extra_calls.judge_calls, report.extra_calls.judge_cost_usd, report.extra_calls.judge_unpriced_calls))}`;
}

/** Whether any model streamed: only then does the report show time to first token. */
export function anyTtft(models: ReadonlyArray<[string, ModelReport]>): boolean {
  return models.some(([, m]) => m.ttft_p50_ms != null);
}

/** Said when both kinds are counted: the two counts may add up to more than the calls beyond the first. */
export function bothCounted(extra: Report['extra_calls']): string {
  return extra.retry_calls > 0 && extra.fallback_calls > 0 ? '; a retry on a fallback model counts in both' : '';
}

/**
 * " after a failed one, any answers they gave included": a retry is any call after a row's first to its
 * model, so its cost holds the answers that retries gave, not only what failures wasted.
 */
export function retriedAnswers(extra: Report['extra_calls']): string {
  return extra.retry_calls > 0 ? ' after a failed one, any answers they gave included' : '';
}

/** "($0.0012)", or "(no price configured)" rather than "(n/a (no price configured))". */
export function inParentheses(cost: string): string {
  return cost === formatUsd(null) ? '(no price configured)' : `(${cost})`;
}

/** "$0.0123 + 2 unpriced calls": a cost with what of it is unknown; n/a when none of it is known. */
function costWithUnpriced(costUsd: number, unpriced: number, noun: 'call' | 'row', noneKnown: boolean): string {
  if (noneKnown) return formatUsd(null);
  return unpriced > 0 ? `${formatUsd(costUsd)} + ${counted(unpriced, `unpriced ${noun}`)}` : formatUsd(costUsd);
}

/** What calls of one kind beside the answers cost: "$0.0012", "$0.0012 + 3 unpriced calls", n/a when none had a price. */
export const extraCost = (calls: number, costUsd: number, unpriced: number): string => costWithUnpriced(costUsd, unpriced, 'call', calls > 0 && unpriced === calls);

/** An arm's cost (from its calls). */
export const armCost = (arm: AbArmReport): string => costWithUnpriced(arm.cost_usd, arm.unpriced_calls, 'call', arm.unpriced_calls > 0 && arm.cost_usd === 0);

/** Rows' cost from their results. */
export const groupCost = (group: RowGroupReport): string => costWithUnpriced(group.cost_usd, group.unpriced_rows, 'row', group.unpriced_rows > 0 && group.unpriced_rows === group.rows);

/** "deepseek-v4-flash 30, deepseek-v4-pro 10": who answered an arm's rows. */
export function answeredByText(arm: AbArmReport): string {
  return Object.entries(arm.answered_by).map(([name, rows]) => `${name} ${count(rows)}`).join(', ') || '—';
}

/** "+0.30 ± 0.81" (a − b); under two prompts, no margin. */
export function formatDifference(pair: PairedComparison): string {
  return signedDifference(pair.mean_difference, pair.difference_margin);
}

/**
 * "+0.30 ± 0.81", with its sign: a difference of scores and its margin. Without a margin (a side
 * with a single score) it says so: a bare "+3.91" read as a clear win (QA).
 */
export function signedDifference(difference: number, margin: number | null): string {
  const mean = `${difference > 0 ? '+' : ''}${difference.toFixed(2)}`;
  return margin === null ? `${mean} (1 score: no margin)` : `${mean} ± ${margin.toFixed(2)}`;
}

/**
 * "3 answers left out: a fallback gave them in place of the model they were put to (fast 2, slow 1)",
 * or null when none was: the answers judge.paired_left_out counts, which are in none of the pairs.
 */
export function pairedLeftOutText(report: Report): string | null {
  const leftOut = Object.entries(report.judge?.paired_left_out ?? {});
  const total = leftOut.reduce((sum, [, n]) => sum + n, 0);
  if (total === 0) return null;
  const them = total === 1 ? 'it' : 'them';
  return `${counted(total, 'answer')} left out: a fallback gave ${them} in place of the model ${total === 1 ? 'it was' : 'they were'} put to (${leftOut.map(([name, n]) => `${name} ${count(n)}`).join(', ')}), so ${total === 1 ? 'its prompt counts' : 'their prompts count'} in none of that model's pairs`;
}

/**
 * The judge's pairs in the order the summary and report.md both list them: a comparison's by
 * their models' places in --compare (first the pairs with its first model), others as report.json
 * has them (the most prompts first). Each pair keeps its a and b, as report.json names them.
 */
export function pairsInOrder(report: Report): PairedComparison[] {
  const pairs = [...(report.judge?.paired ?? [])];
  const models = report.compare?.models;
  if (!models) return pairs;
  // A name outside the list (none is expected: a row naming its own model pairs with nothing) goes last.
  const place = (name: string) => (models.includes(name) ? models.indexOf(name) : models.length);
  const places = (pair: PairedComparison) => [place(pair.a), place(pair.b)].sort((x, y) => x - y) as [number, number];
  return pairs.sort((x, y) => {
    const [x1, x2] = places(x);
    const [y1, y2] = places(y);
    return x1 - y1 || x2 - y2;
  });
}

/**
 * "This batch cost $X: Z% less (or more) than the $Y it would have cost on <baseline>" ("Its
 * answers cost" with a judge, whose calls are left out), or null without a baseline, without a
 * succeeded row to compare ("it would have cost $0" says nothing), or in a comparison (--compare),
 * whose Models table gives each model's cost: all its answers against one model, itself maybe
 * among them, say little (QA). report.json keeps the figures.
 */
export function renderSavings(report: Report): string | null {
  const baseline = report.baseline;
  // The comparison is of the calls made: answers from the cache had none, on either side.
  const cachedRows = report.cache?.answered_rows ?? 0;
  if (!baseline || report.compare || report.totals.succeeded - cachedRows <= 0) return null;
  const cost = formatUsd(baseline.batch_cost_usd);
  const wouldHave = formatUsd(baseline.baseline_cost_usd);
  const savings = baseline.savings_percent;
  // Judging would cost the same on the baseline: the comparison is of the answers.
  const asides = [...(report.extra_calls.judge_calls > 0 ? ['the judge'] : []), ...(cachedRows > 0 ? [`the ${counted(cachedRows, 'row')} answered from the cache`] : [])];
  const aside = asides.length > 0 ? ` (${asides.join(' and ')} aside)` : '';
  const [paid, it] = report.extra_calls.judge_calls > 0 ? [`Its answers cost ${cost}${aside}`, 'they'] : [`This batch cost ${cost}${aside}`, 'it'];
  if (baseline.answered_rows) return answeredRowsSavings(report, baseline, baseline.answered_rows, aside);
  if (baseline.unpriced_calls > 0) {
    const what = report.extra_calls.judge_calls > 0 ? 'its answers' : 'this batch';
    return `On ${baseline.model} ${what} would have cost ${wouldHave}; what ${it} cost is not known in full (${counted(baseline.unpriced_calls, 'call')} to models with no price configured)`;
  }
  if (savings === null) return `${paid}; on ${baseline.model} ${it} would have cost ${wouldHave}`;
  if (savings === 0) return `${paid}, what ${it} would have cost on ${baseline.model}`;
  // In words: a bare "(-41.6%)" reads as the saving or as the baseline's extra cost alike.
  return `${paid}: ${lessOrMore(savings)} than the ${wouldHave} ${it} would have cost on ${baseline.model}${outsideEnsembles(baseline)}`;
}

/**
 * After a budget stop: the answered rows' own calls against their answers on the baseline, like for
 * like, and what the rest of the batch paid, left out (QA: all the paid calls, the members of rows
 * whose synthesis the budget refused among them, against the answered rows alone read "2276% more").
 */
function answeredRowsSavings(report: Report, baseline: BaselineReport, answered: NonNullable<BaselineReport['answered_rows']>, aside: string): string {
  const rows = `${counted(answered.rows, 'answered row')}`;
  const they = answered.rows === 1 ? 'it' : 'they';
  const wouldHave = formatUsd(answered.baseline_cost_usd);
  const stopped = report.errors['budget_exceeded'] ?? 0;
  const rest = Math.max(0, baseline.batch_cost_usd - answered.batch_cost_usd);
  const restText = rest > 0 ? `; left out: the other ${formatUsd(rest)} paid, for rows with no answer yet (${count(stopped)} stopped by the budget)` : '';
  if (answered.unpriced_rows > 0) {
    return `On ${baseline.model} the ${rows} would have cost ${wouldHave}; what ${they} cost cannot be compared with it (${counted(answered.unpriced_rows, 'row')} called models with no price configured)${restText}`;
  }
  const paid = `The ${rows} cost ${formatUsd(answered.batch_cost_usd)}${aside}`;
  if (answered.savings_percent === null) return `${paid}; on ${baseline.model} ${they} would have cost ${wouldHave}${restText}`;
  if (answered.savings_percent === 0) return `${paid}, what ${they} would have cost on ${baseline.model}${restText}`;
  return `${paid}: ${lessOrMore(answered.savings_percent)} than the ${wouldHave} ${they} would have cost on ${baseline.model}${restText}`;
}

function lessOrMore(percent: number): string {
  return `${Math.abs(percent)}% ${percent >= 0 ? 'less' : 'more'}`;
}

/**
 * "; the rows outside ensembles cost $A, 79.4% less than the $B on <baseline>": ensembles pay several
 * calls per row by design, so the whole alone hides what routing saved (QA: "19.6% more" for a batch
 * whose routed rows saved 79.4% beside 8% of rows on ensembles).
 */
function outsideEnsembles(baseline: BaselineReport): string {
  const outside = baseline.outside_ensembles;
  if (!outside || outside.savings_percent === null) return '';
  return `; the rows outside ensembles cost ${formatUsd(outside.batch_cost_usd)}, ${lessOrMore(outside.savings_percent)} than the ${formatUsd(outside.baseline_cost_usd)} on ${baseline.model}`;
}

/** "120 rows answered from the cache ($0.0123 saved)", or null when none was. */
export function renderCache(report: Report): string | null {
  const cache = report.cache;
  if (!cache || cache.answered_rows === 0) return null;
  const rows = `${counted(cache.answered_rows, 'row')} answered from the cache`;
  if (cache.unpriced_rows === cache.answered_rows) return `${rows} (what that saved is unknown: no price configured)`;
  return `${rows} (${costWithUnpriced(cache.saved_usd, cache.unpriced_rows, 'row', false)} saved)`;
}

/** "30 member calls ($0.0012), 10 synthesis calls ($0.0009)", or null when no row used an ensemble. */
export function renderEnsembleCalls(extra: Report['extra_calls']): string | null {
  if (!extra.ensemble_member_calls && !extra.synthesis_calls) return null;
  return `${counted(extra.ensemble_member_calls, 'member call')} ${inParentheses(extraCost(extra.ensemble_member_calls, extra.ensemble_member_cost_usd, extra.ensemble_member_unpriced_calls))}, ${counted(extra.synthesis_calls, 'synthesis call')} ${inParentheses(extraCost(extra.synthesis_calls, extra.synthesis_cost_usd, extra.synthesis_unpriced_calls))}`;
}

/** A note when some calls came without token usage, so their tokens and cost are estimates; else null. */
export function renderEstimatedUsage(totals: Report['totals']): string | null {
  const calls = totals.usage_estimated_calls ?? 0;
  if (calls === 0) return null;
  return `${counted(calls, 'call')} had no token usage from the provider (an answer sent without it, or a call that timed out or whose stream broke off, charged for its prompt and what it sent): their tokens and cost are Switchyard's estimate (marked usage_estimated in costs.jsonl)`;
}

/**
 * Answers longer than an Excel cell holds: Excel cuts them, unsaid, when it opens results.csv (whose
 * separator and byte order mark are chosen for it), so a summary of a contract there ends mid-sentence;
 * and compare.csv, in a --compare batch, where the compared models' answers are too (QA: only results.csv was named).
 */
export function renderLongOutputs(report: Report): string | null {
  const csvFiles = report.compare ? "results.csv, and compare.csv, which holds the compared models' answers too" : 'results.csv';
  return report.long_outputs ? longCellsText(report.long_outputs, 'answer', csvFiles, 'results.jsonl') : null;
}

/**
 * compare.csv's prompts longer than an Excel cell holds (--compare): Excel cuts them, unsaid, when
 * it opens the file, as it does long answers (renderLongOutputs).
 */
export function renderLongPrompts(report: Report): string | null {
  const long = report.compare?.long_prompts;
  return long ? longCellsText(long, 'prompt', 'compare.csv', 'the input file') : null;
}

/** "2 answers over 32,767 characters, ...: Excel cuts them when it opens results.csv; results.jsonl has them whole". */
function longCellsText(long: LongCells, noun: string, csvFile: string, wholeIn: string): string {
  const them = long.rows === 1 ? 'it' : 'them';
  return `${counted(long.rows, noun)} over ${formatCount(EXCEL_CELL_MAX_CHARS)} characters, the most an Excel cell holds (the first: row id ${long.first_id}; the longest ${formatCount(long.longest_chars)}): Excel cuts ${them} when it opens ${csvFile}; ${wholeIn} has ${them} whole`;
}

/**
 * "20 answers stopped at max_tokens (finish_reason "length"): raise ...", and the other reasons
 * answers ended early; null when every answer was finished.
 */
export function renderCutOff(report: Report): string | null {
  const reasons = Object.entries(report.cut_off ?? {});
  if (reasons.length === 0) return null;
  return reasons
    .flatMap(([reason, rows]) => {
      if (reason === 'length') return stoppedAtTokenLimit(rows, report.cut_off_at_model_cap ?? {});
      if (reason === REFUSED_ANSWER) return `${counted(rows, 'answer')} ${rows === 1 ? 'was a refusal' : 'were refusals'} (the model declined: its words are the row's refusal in results.jsonl and results.csv, output "")`;
      if (reason === EMPTY_ANSWER) return `${counted(rows, 'answer')} finished with no text (output "" in results.jsonl: the model sent none, or only tool calls)`;
      return `${counted(rows, 'answer')} ended by finish_reason "${reason}"`;
    })
    .join('; ');
}

/**
 * Answers stopped by their token limit: at the row's own max_tokens, which a higher one in the file
 * lets go on, or at the model's max_output_tokens, which caps it, so that a higher one only paid for
 * the same cut answer again (QA): for those, the cap or another model is what to change.
 */
function stoppedAtTokenLimit(rows: number, atModelCap: Record<string, number>): string[] {
  const capped = Object.entries(atModelCap);
  const own = rows - capped.reduce((sum, [, n]) => sum + n, 0);
  const lines = own > 0 ? [`${counted(own, 'answer')} stopped at max_tokens (finish_reason "length"): give those rows a higher max_tokens in the file and run the batch again (only edited rows run again)`] : [];
  for (const [model, n] of capped) {
    lines.push(
      `${counted(n, 'answer')} stopped at models.${model}.max_output_tokens (finish_reason "length"), which caps a row's max_tokens, so a higher one does not help: ` +
        `raise it if ${model} can write more, or give those rows another model, then run them again (a resume runs only rows edited in the file)`,
    );
  }
  return lines;
}
