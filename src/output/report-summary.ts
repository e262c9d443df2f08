/**
 * The summary printed in the terminal once a batch's outputs are written (collect-and-report.ts):
 * aligned label/value lines, then a line per model, ensemble and A/B arm. Its wording shared with
 * report.md (report-markdown.ts) is in report-text.ts.
 */
import { formatUsd } from '../models/pricing.ts';
import type { PairedComparison } from './paired-scores.ts';
import type { Report } from './report-json.ts';
import { counted, formatClockSpan, formatCount as count } from '../figure-text.ts';
import {
  pairedLeftOutText,
  anyTtft,
  answeredByText,
  armCost,
  bothCounted,
  classifierDecidedText,
  compareText,
  extraCost,
  formatCost,
  formatDifference,
  formatLatency,
  formatScore,
  groupCost,
  inParentheses,
  renderCache,
  renderCutOff,
  renderLongOutputs,
  renderLongPrompts,
  renderEnsembleCalls,
  renderEstimatedUsage,
  renderJudge,
  pairsInOrder,
  renderSavings,
  retriedAnswers,
  scoreText,
  shorten,
  timeAndRate,
  unfinishedText,
} from './report-text.ts';

/**
 * The summary's Rows line: "1,998 of 2,000 succeeded, 2 failed", which scripts look for; a run
 * stopped before any row finished, "0 finished; 100 not run yet" (not "0 of 0 succeeded, 0 failed").
 */
function rowsText(totals: Report['totals']): string {
  const unfinished = unfinishedText(totals);
  if (unfinished && totals.rows === 0) return `0 finished; ${totals.unfinished_rows === null ? unfinished : `${count(totals.unfinished_rows)} not run yet`}`;
  return `${count(totals.succeeded)} of ${count(totals.rows)} succeeded, ${count(totals.failed)} failed${unfinished ? `; ${unfinished}` : ''}`;
}

/** "flash vs glm: 24 prompts, flash better in 10, tie 4, glm better in 10; flash − glm +0.30 ± 0.81". */
function pairedText(pair: PairedComparison): string {
  return `${pair.a} vs ${pair.b}: ${counted(pair.prompts, 'prompt')}, ${pair.a} better in ${count(pair.a_better)}, tie ${count(pair.ties)}, ${pair.b} better in ${count(pair.b_better)}; ${pair.a} − ${pair.b} ${formatDifference(pair)}`;
}

/**
 * A summary line of counts by code ("bad_json 3, bad_field 1"), then the messages of the three most
 * frequent codes: they say what to do (a key to check, a budget to raise, a file to re-save).
 */
function codePairs(label: string, lead: string, counts: Record<string, number>, examples: Record<string, string>): Array<[string, string]> {
  const codes = Object.entries(counts);
  if (codes.length === 0) return [];
  const shown = codes.slice(0, 4).map(([code, n]) => `${code} ${count(n)}`);
  if (codes.length > 4) shown.push(`+${codes.length - 4} more`);
  const pairs: Array<[string, string]> = [[label, lead + shown.join(', ')]];
  for (const [code] of codes.slice(0, 3)) {
    const example = examples[code];
    // Long enough for a chain's first error and what to do about it.
    if (example) pairs.push(['', `${code}: ${shorten(example, 300)}`]);
  }
  return pairs;
}

/** " (rate_limited 50, server_error 3)": why calls failed, most frequent first (three at most), so a batch slowed by 429s says so. */
function failedCallCodes(callErrors: Record<string, number>): string {
  const codes = Object.entries(callErrors).sort(([, a], [, b]) => b - a);
  if (codes.length === 0) return '';
  const shown = codes.slice(0, 3).map(([code, calls]) => `${code} ${count(calls)}`);
  return ` (${shown.join(', ')}${codes.length > 3 ? ', ...' : ''})`;
}

/**
 * Under the Calls line, the first message of each failed-call code that no row failed with (a
 * row's own is under Errors), two at most: an outage the rows rode out, or calls a fallback
 * answered for, then name the model, the URL and the error in the log too (QA: "connection_error 43" alone).
 */
function failedCallExamples(report: Report): Array<[string, string]> {
  const examples = report.call_error_examples ?? {};
  return Object.keys(report.call_errors)
    .filter((code) => report.errors[code] === undefined && examples[code] !== undefined)
    .slice(0, 2)
    .map((code) => ['', `${code}: ${shorten(examples[code]!, 200)}`]);
}

/** Paired comparisons the terminal summary shows. */
const SUMMARY_PAIRS = 3;

/** How clearly a pair differs: its mean difference past its margin (a pair without a margin, a single prompt, comes last). */
function clearness(pair: PairedComparison): number {
  return pair.difference_margin === null ? -Infinity : Math.abs(pair.mean_difference) - pair.difference_margin;
}

/** A short terminal summary: aligned label/value lines, then one aligned line per model. */
export function renderSummaryLines(report: Report): string[] {
  const { totals } = report;
  const compared = compareText(report);
  const pairs: Array<[string, string]> = [
    ['Rows', rowsText(totals)],
    ...(compared ? [['Compared', compared] as [string, string]] : []),
    ['Time', [timeAndRate(totals), formatClockSpan(report.started_at, report.finished_at)].filter(Boolean).join(', ')],
    ['Calls', `${count(totals.calls)}, ${count(totals.failed_calls)} failed${failedCallCodes(report.call_errors)}`],
    ...failedCallExamples(report),
    ['Tokens', `${count(totals.input_tokens)} in, ${count(totals.output_tokens)} out`],
    ['Cost', formatCost(totals.cost_usd, totals.unpriced_calls, totals.calls)],
  ];
  const savings = renderSavings(report);
  // A baseline cheaper than the batch is an extra cost, not a saving.
  if (savings) pairs.push([savingsLabel(report.baseline), savings]);
  if (report.extra_calls.fallback_calls > 0 || report.extra_calls.retry_calls > 0) {
    const extra = report.extra_calls;
    pairs.push(['Retries', `${counted(extra.retry_calls, 'call')}${retriedAnswers(extra)} ${inParentheses(extraCost(extra.retry_calls, extra.retry_cost_usd, extra.retry_unpriced_calls))}; fallbacks ${counted(extra.fallback_calls, 'call')} ${inParentheses(extraCost(extra.fallback_calls, extra.fallback_cost_usd, extra.fallback_unpriced_calls))}${bothCounted(extra)}`]);
  }
  const cache = renderCache(report);
  if (cache) pairs.push(['Cache', cache]);
  // Said only when it decided nothing: a classifier paid for in vain is worth a look; one that works is in report.md.
  if (report.extra_calls.classifier_calls > 0 && (report.extra_calls.classifier_decided_rows ?? 0) === 0) pairs.push(['Classifier', classifierDecidedText(report)]);
  const ensembleCalls = renderEnsembleCalls(report.extra_calls);
  if (ensembleCalls) pairs.push(['Ensemble', ensembleCalls]);
  const judge = renderJudge(report);
  if (judge) pairs.push(['Judge', judge]);
  // The clearest differences (by how far the mean difference passes its margin), listed in report.md's order (QA: two orders); the rest are in report.md.
  const paired = pairsInOrder(report);
  const clearest = new Set([...paired].sort((x, y) => clearness(y) - clearness(x)).slice(0, SUMMARY_PAIRS));
  paired.filter((pair) => clearest.has(pair)).forEach((pair, i) => pairs.push([i === 0 ? 'Paired' : '', pairedText(pair)]));
  if (paired.length > SUMMARY_PAIRS) pairs.push(['', `and ${count(paired.length - SUMMARY_PAIRS)} more pairs in report.md`]);
  const leftOut = pairedLeftOutText(report);
  if (leftOut) pairs.push([paired.length === 0 ? 'Paired' : '', leftOut]);
  const estimated = renderEstimatedUsage(totals);
  if (estimated) pairs.push(['Usage', estimated]);
  const cutOff = renderCutOff(report);
  if (cutOff) pairs.push(['Cut off', cutOff]);
  const long = renderLongOutputs(report);
  if (long) pairs.push(['Long', long]);
  const longPrompts = renderLongPrompts(report);
  if (longPrompts) pairs.push([long ? '' : 'Long', longPrompts]);
  pairs.push(...codePairs('Errors', '', report.errors, report.error_examples));
  pairs.push(...codePairs('Invalid', `${counted(totals.invalid_rows, 'row')} not run (errors.jsonl): `, report.invalid_input, report.invalid_input_examples));
  const labelWidth = Math.max(...pairs.map(([label]) => label.length)) + 2;
  const lines = pairs.map(([label, value]) => `${label.padEnd(labelWidth)}${value}`);

  const modelEntries = Object.entries(report.models);
  // A streamed model has a first-token figure; with scores after it, the others keep its place empty.
  const ttftPlace = report.judge != null && anyTtft(modelEntries);
  // Rows a model failed (rows the budget stopped before any call among them), so its rows read as what it was given, not what it answered.
  const failedPlace = modelEntries.some(([, m]) => m.failed > 0);
  const models = modelEntries.map(([name, m]) => [
    name,
    counted(m.rows, 'row'),
    ...(failedPlace ? [`${count(m.failed)} failed`] : []),
    counted(m.calls, 'call'),
    formatCost(m.cost_usd, m.unpriced_calls, m.calls),
    `p50 ${formatLatency(m.latency_p50_ms)}`,
    `p95 ${formatLatency(m.latency_p95_ms)}`,
    ...(m.ttft_p50_ms != null ? [`first token p50 ${formatLatency(m.ttft_p50_ms)}`] : ttftPlace ? [''] : []),
    ...(m.mean_score != null ? [`score ${formatScore(m)}`] : []),
  ]);
  lines.push(...alignedBlock('Models', models));
  const ensembleRows = Object.entries(report.ensembles ?? {}).map(([name, e]) => [
    name,
    counted(e.rows, 'row'),
    `${count(e.failed)} failed`,
    groupCost(e),
    `p50 ${formatLatency(e.latency_p50_ms)}`,
    `p95 ${formatLatency(e.latency_p95_ms)}`,
    ...(e.mean_score != null ? [`score ${scoreText(e)}`] : []),
    // Each member was paid for: rows answered from fewer of them are worth saying beside the cost.
    ...((e.rows_short_of_members ?? 0) > 0 ? [`${count(e.rows_short_of_members!)} from fewer answers than members`] : []),
  ]);
  lines.push(...alignedBlock('Ensembles (members and synthesis together)', ensembleRows));
  const arms = Object.entries(report.ab_arms ?? {});
  const armsCached = arms.some(([, arm]) => (arm.cached_rows ?? 0) > 0);
  const armRows = arms.map(([name, arm]) => [
    name,
    counted(arm.rows, 'row'),
    `${count(arm.failed)} failed`,
    ...(armsCached ? [`${count(arm.cached_rows)} from cache`] : []),
    armCost(arm),
    arm.cost_per_answer_usd == null ? 'n/a per answer' : `${formatUsd(arm.cost_per_answer_usd)}/answer`,
    `p50 ${formatLatency(arm.latency_p50_ms)}`,
    `p95 ${formatLatency(arm.latency_p95_ms)}`,
    ...(arm.mean_score != null ? [`score ${formatScore(arm)}`] : []),
    // An arm answered by other models than its own (its model's fallbacks, an open circuit; auto's routing) says by which.
    ...(Object.keys(arm.answered_by).some((by) => by !== name) ? [`answered by ${answeredByText(arm)}`] : []),
  ]);
  lines.push(...alignedBlock("A/B arms (every call of their rows but the judge's)", armRows));
  return lines;
}

/** A titled block of rows whose cells line up: the first column to the left, the others to the right. */
function alignedBlock(title: string, rows: string[][]): string[] {
  if (rows.length === 0) return [];
  // Rows may differ in length (a model that streamed has one figure more).
  const widths = Array.from({ length: Math.max(...rows.map((row) => row.length)) }, (_, i) => Math.max(...rows.map((row) => row[i]?.length ?? 0)));
  return [title, ...rows.map((row) => `  ${row.map((text, i) => (i === 0 ? text.padEnd(widths[i]!) : text.padStart(widths[i]!))).join('  ')}`.trimEnd())];
}

/** The summary's label for the saving's line: after a budget stop, the answered rows' comparison decides it (renderSavings). */
function savingsLabel(baseline: Report['baseline']): string {
  const answered = baseline?.answered_rows;
  const unknown = answered ? answered.unpriced_rows > 0 : (baseline?.unpriced_calls ?? 0) > 0;
  if (unknown) return 'Baseline';
  return ((answered ?? baseline)?.savings_percent ?? 0) < 0 ? 'Extra cost' : 'Savings';
}
