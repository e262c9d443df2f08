import { formatUsd } from '../models/pricing.ts';
import type { PairedComparison } from './paired-scores.ts';
import { EMPTY_ANSWER, REFUSED_ANSWER } from './report.ts';
import type { AbArmReport, ModelReport, Report, RowGroupReport } from './report-json.ts';
import { formatAbSplit } from '../routing/ab-split.ts';
import { counted, formatClockSpan, formatCount, formatDuration } from '../figure-text.ts';
import { withControlsShown } from '../control-characters.ts';

const count = (n: number): string => formatCount(n);

/** A latency: "4.2 ms", "820 ms", "1.92 s", "—" when unknown. */
function formatLatency(ms: number | null): string {
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

/** Cost with a note for calls that had no price (and are therefore not in the sum). */
function formatCost(costUsd: number, unpricedCalls: number, calls: number): string {
  if (calls > 0 && unpricedCalls === calls) return formatUsd(null);
  const cost = formatUsd(costUsd);
  return unpricedCalls > 0 ? `${cost} + ${counted(unpricedCalls, 'unpriced call')}` : cost;
}

/** "4.1 s (487 rows/s)", or for a resumed batch "4.1 s (1,365 rows this run, 333 rows/s)". */
function timeAndRate(totals: Report['totals']): string {
  const resumed = totals.rows_this_run < totals.rows ? `${counted(totals.rows_this_run, 'row')} this run, ` : '';
  return `${formatDuration(totals.elapsed_ms)} (${resumed}${formatRate(totals.rows_per_second)})`;
}

/** "1,998 of 2,000 rows succeeded in 4.1 s (487 rows/s), 2,013 calls, $0.0123", then any invalid rows. */
export function renderHeadline(report: Report): string {
  const { totals } = report;
  const invalid = totals.invalid_rows > 0 ? `; ${counted(totals.invalid_rows, 'invalid row')} not run` : '';
  const unfinished = unfinishedText(totals);
  // Stopped before any row finished: "0 of 0 rows succeeded" says nothing.
  const rows = unfinished && totals.rows === 0 ? '0 rows finished' : `${count(totals.succeeded)} of ${counted(totals.rows, 'row')} succeeded`;
  return `${unfinished ? 'Stopped early: ' : ''}${rows} in ${timeAndRate(totals)}, ${counted(totals.calls, 'call')}, ${formatCost(totals.cost_usd, totals.unpriced_calls, totals.calls)}${invalid}${unfinished ? `; ${unfinished}` : ''}`;
}

/** The rows a run stopped early did not get to ('' for a finished batch). */
function unfinishedText(totals: Report['totals']): string {
  if (totals.unfinished_rows === 0) return '';
  return totals.unfinished_rows === null ? 'the rest of the file not run yet' : `${counted(totals.unfinished_rows, 'row')} not run yet`;
}

/**
 * The summary's Rows line: "1,998 of 2,000 succeeded, 2 failed", which scripts look for; a run
 * stopped before any row finished, "0 finished; 100 not run yet" (not "0 of 0 succeeded, 0 failed").
 */
function rowsText(totals: Report['totals']): string {
  const unfinished = unfinishedText(totals);
  if (unfinished && totals.rows === 0) return `0 finished; ${totals.unfinished_rows === null ? unfinished : `${count(totals.unfinished_rows)} not run yet`}`;
  return `${count(totals.succeeded)} of ${count(totals.rows)} succeeded, ${count(totals.failed)} failed${unfinished ? `; ${unfinished}` : ''}`;
}

/** One line of at most `max` characters: whitespace runs become one space, the rest is cut with "…". */
function shorten(text: string, max: number): string {
  const line = text.replace(/\s+/g, ' ').trim();
  return line.length <= max ? line : `${line.slice(0, max - 1)}…`;
}

/** Text for a table cell: no row break, no column break, no markup a viewer would render (a provider's HTML), and no control character a terminal would run. */
function cell(text: string): string {
  return withControlsShown(text.replace(/\|/g, '\\|').replace(/</g, '&lt;').replace(/\r?\n|\r/g, ' '));
}

function table(headers: string[], align: Array<'l' | 'r'>, rows: string[][]): string[] {
  const line = (cells: string[]): string => `| ${cells.map(cell).join(' | ')} |`;
  const rule = `| ${align.map((a) => (a === 'r' ? '--:' : ':--')).join(' | ')} |`;
  return [line(headers), rule, ...rows.map(line)];
}

interface ScoreFigures {
  mean_score: number | null;
  score_margin: number | null;
  judged_rows: number;
}

/** A mean judge score with its 95% margin: "7.4 ± 0.3"; the margin left out under 2 scores. */
function scoreText(scores: Omit<ScoreFigures, 'judged_rows'>, digits = 1): string {
  if (scores.mean_score === null) return '—';
  return scores.score_margin === null ? scores.mean_score.toFixed(digits) : `${scores.mean_score.toFixed(digits)} ± ${scores.score_margin.toFixed(digits)}`;
}

/** The same with how many rows it is over: "7.4 ± 0.3 (120)"; a dash for none. */
function formatScore(scores: ScoreFigures): string {
  return scores.mean_score === null ? '—' : `${scoreText(scores)} (${count(scores.judged_rows)})`;
}

/** How many rows the LLM classifier's answers routed, and what routed the rest. */
function classifierDecidedText(report: Report): string {
  const { classifier_calls: calls, classifier_decided_rows: decided = 0 } = report.extra_calls;
  if (decided > 0) return `it chose the task type of ${counted(decided, 'row')}, the rules the rest`;
  return `its ${counted(calls, 'call')} chose no row's task type (each failed or named no configured type: route_reason in results.jsonl says which), so the rules routed every row; check routing.llm_classifier's model and prompt`;
}

/** "296 rows scored by pro, mean 6.42 ± 0.31 of 10; 4 not scored (server_error 3, no_score 1); 300 calls, $0.0123", or null without a judge. */
function renderJudge(report: Report): string | null {
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

function modelRow(name: string, m: ModelReport, withTtft: boolean, withScore: boolean): string[] {
  const row = [
    name,
    count(m.rows),
    count(m.succeeded),
    count(m.failed),
    m.failed_calls > 0 ? `${count(m.calls)} (${count(m.failed_calls)} failed)` : count(m.calls),
    count(m.input_tokens),
    count(m.output_tokens),
    formatCost(m.cost_usd, m.unpriced_calls, m.calls),
    formatLatency(m.latency_p50_ms),
    formatLatency(m.latency_p95_ms),
  ];
  if (withTtft) row.push(formatLatency(m.ttft_p50_ms), formatLatency(m.ttft_p95_ms));
  if (withScore) row.push(formatScore(m));
  return row;
}

/** Whether any model streamed: only then does the report show time to first token. */
function anyTtft(models: ReadonlyArray<[string, ModelReport]>): boolean {
  return models.some(([, m]) => m.ttft_p50_ms != null);
}

function countTable(label: string, counts: Record<string, number>): string[] {
  return table(['Code', label], ['l', 'r'], Object.entries(counts).map(([code, n]) => [code, count(n)]));
}

/** How the report tells its reader to run the rest of a batch: the CLI's resume, or posting its file again to the API. */
export type ResumeHint = 'cli' | 'api';

/** "`switchyard run --resume b1`" or "posting the file again with `batch_id=b1`": what runs the rest of the batch. */
function resumeText(batchId: string, hint: ResumeHint): string {
  return hint === 'api' ? `posting the file again with \`batch_id=${batchId}\`` : `\`switchyard run --resume ${batchId}\``;
}

/** report.md: headline, totals, a table per model (and ensemble, task type), errors by code. */
export function renderReportMarkdown(report: Report, hint: ResumeHint = 'cli'): string {
  const resume = resumeText(report.batch_id, hint);
  const lines = [
    `# Batch report: ${report.batch_id}`,
    '',
    `**${renderHeadline(report)}**`,
    '',
    ...overviewBullets(report, resume),
    ...modelsSection(report),
    ...ensemblesSection(report),
    ...abArmsSection(report),
    ...pairedSection(report),
    ...taskTypesSection(report),
    ...errorsSection(report),
    ...invalidRowsSection(report, resume),
  ];
  return `${lines.join('\n')}\n`;
}

/** The batch at a glance: time, rows, calls, tokens, cost, and what the calls beside the answers cost. */
function overviewBullets(report: Report, resume: string): string[] {
  const { totals } = report;
  const unfinished = unfinishedText(totals);
  const extra = report.extra_calls;
  return [
    `- Started ${report.started_at}, finished ${report.finished_at}`,
    `- Rows: ${count(totals.rows)} (${count(totals.succeeded)} succeeded, ${count(totals.failed)} failed)` +
      (totals.invalid_rows > 0 ? `; ${counted(totals.invalid_rows, 'invalid input row')} not run (errors.jsonl)` : '') +
      (unfinished ? `; ${unfinished}: the run stopped early, and ${resume} finishes the batch` : '') +
      (!unfinished && totals.failed > 0 ? `; ${resume} runs the failed rows again (once what their errors say is fixed, if it needs fixing: see Errors)` : ''),
    `- Calls: ${count(totals.calls)} (${count(totals.failed_calls)} failed), retries and fallbacks included`,
    `- Tokens: ${count(totals.input_tokens)} in, ${count(totals.output_tokens)} out`,
    `- Cost: ${formatUsd(totals.cost_usd)}, the sum of costs.jsonl`,
    ...(totals.unpriced_calls > 0 ? [`- ${counted(totals.unpriced_calls, 'call')} used a model with no configured price: not in the cost`] : []),
    ...bullet('', renderEstimatedUsage(totals)),
    ...bullet('', renderSavings(report)),
    `- Retries: ${counted(extra.retry_calls, 'call')}${retriedAnswers(extra)}, ${extraCost(extra.retry_calls, extra.retry_cost_usd, extra.retry_unpriced_calls)}; fallbacks: ${counted(extra.fallback_calls, 'call')}, ${extraCost(extra.fallback_calls, extra.fallback_cost_usd, extra.fallback_unpriced_calls)}, ${counted(extra.rows_on_fallback, 'row')} answered by a fallback model${bothCounted(extra)}`,
    ...bullet('Cache: ', renderCache(report)),
    ...(extra.classifier_calls > 0 ? [`- Task classifier: ${counted(extra.classifier_calls, 'call')}, ${extraCost(extra.classifier_calls, extra.classifier_cost_usd, extra.classifier_unpriced_calls)}; ${classifierDecidedText(report)}`] : []),
    ...bullet('Ensembles: ', renderEnsembleCalls(extra)),
    ...bullet('Judge: ', renderJudge(report)),
    ...bullet('Cut off: ', renderCutOff(report)),
  ];
}

/** A "- label text" bullet, or none when there is no text. */
function bullet(label: string, text: string | null): string[] {
  return text ? [`- ${label}${text}`] : [];
}

/** A report.md section: a blank line, its heading, a blank line, then its lines. */
function section(title: string, body: string[]): string[] {
  return ['', `## ${title}`, '', ...body];
}

function modelsSection(report: Report): string[] {
  const models = Object.entries(report.models);
  if (models.length === 0) return section('Models', ['No model was called.']);
  const withTtft = anyTtft(models);
  const withScore = report.judge != null;
  return section('Models', [
    ...table(
      ['Model', 'Rows', 'OK', 'Failed', 'Calls', 'Tokens in', 'Tokens out', 'Cost', 'p50', 'p95', ...(withTtft ? ['TTFT p50', 'TTFT p95'] : []), ...(withScore ? ['Score (rows)'] : [])],
      ['l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', ...(withTtft ? (['r', 'r'] as const) : []), ...(withScore ? (['r'] as const) : [])],
      models.map(([name, m]) => modelRow(name, m, withTtft, withScore)),
    ),
    '',
    'Rows are counted under the model that gave their final result (a failed row: the last model it called, or its first choice when it could call none; an ensemble row that failed before its synthesis: under its ensemble only); calls, tokens, cost and latency (of succeeded calls) under the model called.' +
      (withTtft ? ' TTFT: time to the first token of streamed calls (models.<name>.stream).' : '') +
      (withScore ? " Score: the judge's mean score (1 to 10) of the model's own answers (an ensemble's syntheses are scored under the ensemble) ± its 95% margin of error (two means differ clearly only when they are further apart than √(a² + b²) of their margins a and b, not merely than each margin), and how many it scored." : ''),
  ]);
}

function ensemblesSection(report: Report): string[] {
  const ensembles = Object.entries(report.ensembles ?? {});
  if (ensembles.length === 0) return [];
  const withScore = report.judge != null;
  return section('Ensembles', [
    ...table(
      ['Ensemble', 'Rows', 'OK', 'Failed', 'Cost', 'Cost / answer', 'p50', 'p95', ...(withScore ? ['Score (rows)'] : [])],
      ['l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', ...(withScore ? (['r'] as const) : [])],
      ensembles.map(([name, e]) => [name, count(e.rows), count(e.succeeded), count(e.failed), groupCost(e), costPerAnswer(e), formatLatency(e.latency_p50_ms), formatLatency(e.latency_p95_ms), ...(withScore ? [formatScore(e)] : [])]),
    ),
    '',
    "A row's cost and latency cover its members and its synthesis (the slowest member, then the synthesis); its calls are also under each model above.",
  ]);
}

/** Said when both kinds are counted: the two counts may add up to more than the calls beyond the first. */
function bothCounted(extra: Report['extra_calls']): string {
  return extra.retry_calls > 0 && extra.fallback_calls > 0 ? '; a retry on a fallback model counts in both' : '';
}

/**
 * " after a failed one, any answers they gave included": a retry is any call after a row's first to its
 * model, so its cost holds the answers that retries gave, not only what failures wasted.
 */
function retriedAnswers(extra: Report['extra_calls']): string {
  return extra.retry_calls > 0 ? ' after a failed one, any answers they gave included' : '';
}

/** "($0.0012)", or "(no price configured)" rather than "(n/a (no price configured))". */
function inParentheses(cost: string): string {
  return cost === formatUsd(null) ? '(no price configured)' : `(${cost})`;
}

/** "$0.0123 + 2 unpriced calls": a cost with what of it is unknown; n/a when none of it is known. */
function costWithUnpriced(costUsd: number, unpriced: number, noun: 'call' | 'row', noneKnown: boolean): string {
  if (noneKnown) return formatUsd(null);
  return unpriced > 0 ? `${formatUsd(costUsd)} + ${counted(unpriced, `unpriced ${noun}`)}` : formatUsd(costUsd);
}

/** What calls of one kind beside the answers cost: "$0.0012", "$0.0012 + 3 unpriced calls", n/a when none had a price. */
const extraCost = (calls: number, costUsd: number, unpriced: number): string => costWithUnpriced(costUsd, unpriced, 'call', calls > 0 && unpriced === calls);

/** An arm's cost (from its calls). */
const armCost = (arm: AbArmReport): string => costWithUnpriced(arm.cost_usd, arm.unpriced_calls, 'call', arm.unpriced_calls > 0 && arm.cost_usd === 0);
/** Rows' cost from their results. */
const groupCost = (group: RowGroupReport): string => costWithUnpriced(group.cost_usd, group.unpriced_rows, 'row', group.unpriced_rows > 0 && group.unpriced_rows === group.rows);

/** "$0.000412" an answer ("n/a" when none succeeded, or none was priced). */
function costPerAnswer(group: RowGroupReport | AbArmReport): string {
  return group.cost_per_answer_usd == null ? 'n/a' : formatUsd(group.cost_per_answer_usd);
}

/** The arms cover fewer rows than the batch has: say which rows are not in them. */
function armCoverage(report: Report, arms: ReadonlyArray<[string, AbArmReport]>): string {
  const inArms = arms.reduce((sum, [, arm]) => sum + arm.rows, 0);
  if (inArms >= report.totals.rows) return '';
  return ` The arms hold ${count(inArms)} of the ${counted(report.totals.rows, 'row')}: the others named a model of their own, or ran without the split (a resume given --model or --route).`;
}

/** "deepseek-v4-flash 30, deepseek-v4-pro 10": who answered an arm's rows. */
function answeredByText(arm: AbArmReport): string {
  return Object.entries(arm.answered_by).map(([name, rows]) => `${name} ${count(rows)}`).join(', ') || '—';
}

/** A resume changed the split: the rows answered before kept the arms of the earlier one(s), and the table mixes them. */
function splitsBeforeText(report: Report): string {
  const before = report.ab_splits_before ?? [];
  if (before.length === 0) return '';
  const now = report.ab_split ? `; the rows run since follow ${formatAbSplit(report.ab_split)}` : '';
  return ` The split changed between runs: rows answered earlier kept their arms of ${before.map(formatAbSplit).join(', then ')}${now}.`;
}

/**
 * The arm the others' scores are set against: the split's first (`--ab control,candidate`), or
 * the first listed when that one has no rows here.
 */
function referenceArm(report: Report, arms: ReadonlyArray<[string, AbArmReport]>): [string, AbArmReport] | undefined {
  const first = report.ab_split?.[0]?.model;
  return arms.find(([name]) => name === first) ?? arms[0];
}

/**
 * "+0.50 ± 0.80": an arm's mean score minus the reference arm's. The arms answered different
 * prompts, so the difference's margin is √(a² + b²) of their margins (the standard errors add in
 * quadrature): two means each outside the other's margin may still be no clear difference.
 */
function armScoreDifference(arm: AbArmReport, reference: AbArmReport): string {
  if (arm.mean_score === null || reference.mean_score === null) return '—';
  const margin = arm.score_margin === null || reference.score_margin === null ? null : Math.hypot(arm.score_margin, reference.score_margin);
  return signedDifference(arm.mean_score - reference.mean_score, margin);
}

function abArmsSection(report: Report): string[] {
  const arms = Object.entries(report.ab_arms ?? {});
  if (arms.length === 0) return [];
  const withScore = report.judge != null;
  const withCache = arms.some(([, arm]) => (arm.cached_rows ?? 0) > 0);
  const reference = withScore && arms.length > 1 ? referenceArm(report, arms) : undefined;
  const versus = (name: string, arm: AbArmReport) => (reference === undefined ? [] : [name === reference[0] ? '—' : armScoreDifference(arm, reference[1])]);
  return section('A/B arms', [
    ...table(
      ['Arm', 'Rows', 'OK', 'Failed', ...(withCache ? ['From cache'] : []), 'Cost', 'Cost / answer', 'p50', 'p95', ...(withScore ? ['Score (rows)'] : []), ...(reference ? [`Score vs ${reference[0]}`] : []), 'Answered by'],
      ['l', 'r', 'r', 'r', ...(withCache ? (['r'] as const) : []), 'r', 'r', 'r', 'r', ...(withScore ? (['r'] as const) : []), ...(reference ? (['r'] as const) : []), 'l'],
      arms.map(([name, arm]) => [name, count(arm.rows), count(arm.succeeded), count(arm.failed), ...(withCache ? [count(arm.cached_rows)] : []), armCost(arm), costPerAnswer(arm), formatLatency(arm.latency_p50_ms), formatLatency(arm.latency_p95_ms), ...(withScore ? [formatScore(arm)] : []), ...versus(name, arm), answeredByText(arm)]),
    ),
    '',
    ...(withCache ? ['Rows from the cache were answered by an earlier call (an earlier batch\'s, or an earlier row\'s of this one), which was paid for then: they are left out of cost / answer and latency, so the arms compare on the calls made for their own rows.', ''] : []),
    "Each row that names no model of its own went to one arm, by a hash of its id (`--ab`); `auto` routes its rows by task type, as the config's routing does. An arm's cost is every call made for its rows while in it, in every run of the batch (retries, fallbacks, the task classifier, an ensemble's members and synthesis), the judge's excepted; cost / answer divides it by the rows that succeeded, so failures' calls count against it. p50 / p95 are the succeeded rows' latency." +
      (withScore ? ' Score: the mean of the judge\'s scores ± its 95% margin of error; the arms answered different prompts, so compare them over many rows.' : '') +
      (reference ? ` Score vs ${reference[0]}: the arm's mean score minus ${reference[0]}'s, ± the 95% margin of that difference (√(a² + b²) of the two margins a and b): a difference within it is no clear winner, though each mean may lie outside the other's margin.` : '') +
      armCoverage(report, arms) +
      splitsBeforeText(report),
  ]);
}

/** "+0.30 ± 0.81" (a − b); under two prompts, no margin. */
function formatDifference(pair: PairedComparison): string {
  return signedDifference(pair.mean_difference, pair.difference_margin);
}

/**
 * "+0.30 ± 0.81", with its sign: a difference of scores and its margin. Without a margin (a side
 * with a single score) it says so: a bare "+3.91" read as a clear win (QA).
 */
function signedDifference(difference: number, margin: number | null): string {
  const mean = `${difference > 0 ? '+' : ''}${difference.toFixed(2)}`;
  return margin === null ? `${mean} (1 score: no margin)` : `${mean} ± ${margin.toFixed(2)}`;
}

/** "flash vs glm: 24 prompts, flash better in 10, tie 4, glm better in 10; flash − glm +0.30 ± 0.81". */
function pairedText(pair: PairedComparison): string {
  return `${pair.a} vs ${pair.b}: ${counted(pair.prompts, 'prompt')}, ${pair.a} better in ${count(pair.a_better)}, tie ${count(pair.ties)}, ${pair.b} better in ${count(pair.b_better)}; ${pair.a} − ${pair.b} ${formatDifference(pair)}`;
}

function pairedSection(report: Report): string[] {
  const pairs = report.judge?.paired ?? [];
  if (pairs.length === 0) return [];
  return section('Judge: models compared on the same prompts', [
    ...table(
      ['A', 'B', 'Prompts', 'A better', 'Tie', 'B better', 'Score A − B'],
      ['l', 'l', 'r', 'r', 'r', 'r', 'r'],
      pairs.map((pair) => [pair.a, pair.b, count(pair.prompts), count(pair.a_better), count(pair.ties), count(pair.b_better), formatDifference(pair)]),
    ),
    '',
    'Rows with the same id answered by two models (or ensembles), scored by the judge: the difference of their scores over those prompts alone, ± its 95% margin of error. A difference within its margin is no clear winner.',
  ]);
}

function taskTypesSection(report: Report): string[] {
  const taskTypes = Object.entries(report.task_types);
  if (taskTypes.length === 0) return [];
  return section('Task types', [
    ...table(
      ['Task type', 'Rows', 'OK', 'Failed', 'Calls', 'Cost'],
      ['l', 'r', 'r', 'r', 'r', 'r'],
      taskTypes.map(([type, t]) => [type, count(t.rows), count(t.succeeded), count(t.failed), count(t.calls), formatUsd(t.cost_usd)]),
    ),
    ...taskTypesByModel(report),
  ]);
}

/**
 * Each task type's rows by the model they are counted under: how each model does on each kind of
 * prompt (with a judge, how well), to tune routing.routes by. Shown when some type's rows went to
 * more than one model, or were scored.
 */
function taskTypesByModel(report: Report): string[] {
  const lines = Object.entries(report.task_types).flatMap(([type, t]) => Object.entries(t.by_model ?? {}).map(([model, group]) => ({ type, model, group })));
  const types = Object.values(report.task_types).filter((t) => t.rows > 0);
  const withScore = report.judge != null;
  if (lines.length === 0 || (!withScore && types.every((t) => Object.keys(t.by_model ?? {}).length <= 1))) return [];
  return [
    '',
    '### By model',
    '',
    ...table(
      ['Task type', 'Model', 'Rows', 'Failed', 'Cost / answer', 'p50', 'p95', ...(withScore ? ['Score (rows)'] : [])],
      ['l', 'l', 'r', 'r', 'r', 'r', 'r', ...(withScore ? (['r'] as const) : [])],
      lines.map(({ type, model, group }) => [type, model, count(group.rows), count(group.failed), costPerAnswer(group), formatLatency(group.latency_p50_ms), formatLatency(group.latency_p95_ms), ...(withScore ? [formatScore(group)] : [])]),
    ),
    '',
    `Cost / answer: what the rows' calls cost (all but the judge's: retries and fallbacks included, rows with an unpriced call left out) over the rows that succeeded${report.cache.answered_rows > 0 ? ' by a call of this batch (rows answered from the cache are left out of it and of the latencies; n/a when every answer came from there)' : ''}; p50 / p95 their latency, first call to answer.`,
  ];
}

function errorsSection(report: Report): string[] {
  const examples = report.error_examples;
  const rows = Object.keys(report.errors).length === 0
    ? ['No rows failed.']
    : table(['Code', 'Rows', 'Example'], ['l', 'r', 'l'], Object.entries(report.errors).map(([code, n]) => [code, count(n), shorten(examples[code] ?? '', 300)]));
  return section('Errors by code', [...rows, ...failedCallsTable(report)]);
}

/** Failed calls by code, each with the first one's message when the report has them (an outage its rows rode out is named there alone). */
function failedCallsTable(report: Report): string[] {
  const codes = Object.entries(report.call_errors);
  if (codes.length === 0) return [];
  const examples = report.call_error_examples;
  // A report from before calls kept their message has none: the table it always had.
  const rows = examples === undefined ? countTable('Calls', report.call_errors) : table(['Code', 'Calls', 'Example'], ['l', 'r', 'l'], codes.map(([code, n]) => [code, count(n), shorten(examples[code] ?? '', 300)]));
  return ['', '### Failed calls by code', '', ...rows];
}

function invalidRowsSection(report: Report, resume: string): string[] {
  if (report.totals.invalid_rows === 0) return [];
  const examples = report.invalid_input_examples;
  return section('Invalid input rows', [
    `Not run; each is in errors.jsonl with its line and reason. Fix them in place (the other rows keep their lines): ${resume} runs them, and rows that succeeded are not run again.`,
    '',
    ...table(['Code', 'Rows', 'First'], ['l', 'r', 'l'], Object.entries(report.invalid_input).map(([code, n]) => [code, count(n), shorten(examples[code] ?? '', 300)])),
  ]);
}

/**
 * "This batch cost $X: Z% less (or more) than the $Y it would have cost on <baseline>" ("Its
 * answers cost" with a judge, whose calls are left out), or null without a baseline or without a
 * succeeded row to compare ("it would have cost $0" says nothing).
 */
function renderSavings(report: Report): string | null {
  const baseline = report.baseline;
  // The comparison is of the calls made: answers from the cache had none, on either side.
  const cachedRows = report.cache?.answered_rows ?? 0;
  if (!baseline || report.totals.succeeded - cachedRows <= 0) return null;
  const cost = formatUsd(baseline.batch_cost_usd);
  const wouldHave = formatUsd(baseline.baseline_cost_usd);
  const savings = baseline.savings_percent;
  // Judging would cost the same on the baseline: the comparison is of the answers.
  const asides = [...(report.extra_calls.judge_calls > 0 ? ['the judge'] : []), ...(cachedRows > 0 ? [`the ${counted(cachedRows, 'row')} answered from the cache`] : [])];
  const aside = asides.length > 0 ? ` (${asides.join(' and ')} aside)` : '';
  const [paid, it] = report.extra_calls.judge_calls > 0 ? [`Its answers cost ${cost}${aside}`, 'they'] : [`This batch cost ${cost}${aside}`, 'it'];
  if (baseline.unpriced_calls > 0) {
    const what = report.extra_calls.judge_calls > 0 ? 'its answers' : 'this batch';
    return `On ${baseline.model} ${what} would have cost ${wouldHave}; what ${it} cost is not known in full (${counted(baseline.unpriced_calls, 'call')} to models with no price configured)`;
  }
  if (savings === null) return `${paid}; on ${baseline.model} ${it} would have cost ${wouldHave}`;
  if (savings === 0) return `${paid}, what ${it} would have cost on ${baseline.model}`;
  // In words: a bare "(-41.6%)" reads as the saving or as the baseline's extra cost alike.
  return `${paid}: ${Math.abs(savings)}% ${savings >= 0 ? 'less' : 'more'} than the ${wouldHave} ${it} would have cost on ${baseline.model}`;
}

/** "120 rows answered from the cache ($0.0123 saved)", or null when none was. */
function renderCache(report: Report): string | null {
  const cache = report.cache;
  if (!cache || cache.answered_rows === 0) return null;
  const rows = `${counted(cache.answered_rows, 'row')} answered from the cache`;
  if (cache.unpriced_rows === cache.answered_rows) return `${rows} (what that saved is unknown: no price configured)`;
  return `${rows} (${costWithUnpriced(cache.saved_usd, cache.unpriced_rows, 'row', false)} saved)`;
}

/** "30 member calls ($0.0012), 10 synthesis calls ($0.0009)", or null when no row used an ensemble. */
function renderEnsembleCalls(extra: Report['extra_calls']): string | null {
  if (!extra.ensemble_member_calls && !extra.synthesis_calls) return null;
  return `${counted(extra.ensemble_member_calls, 'member call')} ${inParentheses(extraCost(extra.ensemble_member_calls, extra.ensemble_member_cost_usd, extra.ensemble_member_unpriced_calls))}, ${counted(extra.synthesis_calls, 'synthesis call')} ${inParentheses(extraCost(extra.synthesis_calls, extra.synthesis_cost_usd, extra.synthesis_unpriced_calls))}`;
}

/** A note when some calls came without token usage, so their tokens and cost are estimates; else null. */
function renderEstimatedUsage(totals: Report['totals']): string | null {
  const calls = totals.usage_estimated_calls ?? 0;
  if (calls === 0) return null;
  return `${counted(calls, 'call')} had no token usage from the provider (an answer sent without it, or a call that timed out or whose stream broke off, charged for its prompt and what it sent): their tokens and cost are Switchyard's estimate (marked usage_estimated in costs.jsonl)`;
}

/**
 * "20 answers stopped at max_tokens (finish_reason "length"): raise ...", and the other reasons
 * answers ended early; null when every answer was finished.
 */
function renderCutOff(report: Report): string | null {
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
  const pairs: Array<[string, string]> = [
    ['Rows', rowsText(totals)],
    ['Time', [timeAndRate(totals), formatClockSpan(report.started_at, report.finished_at)].filter(Boolean).join(', ')],
    ['Calls', `${count(totals.calls)}, ${count(totals.failed_calls)} failed${failedCallCodes(report.call_errors)}`],
    ...failedCallExamples(report),
    ['Tokens', `${count(totals.input_tokens)} in, ${count(totals.output_tokens)} out`],
    ['Cost', formatCost(totals.cost_usd, totals.unpriced_calls, totals.calls)],
  ];
  const savings = renderSavings(report);
  // A baseline cheaper than the batch is an extra cost, not a saving.
  if (savings) pairs.push([(report.baseline?.unpriced_calls ?? 0) > 0 ? 'Baseline' : (report.baseline?.savings_percent ?? 0) < 0 ? 'Extra cost' : 'Savings', savings]);
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
  // The pairs with the most prompts in common; report.md lists them all.
  // The clearest differences first (by how far the mean difference passes its margin): the rest are in report.md.
  const paired = [...(report.judge?.paired ?? [])].sort((x, y) => clearness(y) - clearness(x));
  paired.slice(0, SUMMARY_PAIRS).forEach((pair, i) => pairs.push([i === 0 ? 'Paired' : '', pairedText(pair)]));
  if (paired.length > SUMMARY_PAIRS) pairs.push(['', `and ${count(paired.length - SUMMARY_PAIRS)} more pairs in report.md`]);
  const estimated = renderEstimatedUsage(totals);
  if (estimated) pairs.push(['Usage', estimated]);
  const cutOff = renderCutOff(report);
  if (cutOff) pairs.push(['Cut off', cutOff]);
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
