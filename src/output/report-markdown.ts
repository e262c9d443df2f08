/**
 * report.md: the batch's report for a person to read, section by section (overview, models,
 * ensembles, A/B arms, the judge's paired comparisons, task types, errors, invalid rows). Its
 * wording shared with the terminal summary (report-summary.ts) is in report-text.ts.
 */
import { formatUsd } from '../models/pricing.ts';
import type { AbArmReport, EnsembleReport, ExtraCallsReport, ModelReport, Report, RowGroupReport } from './report-json.ts';
import { formatAbSplit } from '../routing/ab-split.ts';
import { counted, formatCount as count } from '../figure-text.ts';
import { withControlsShown } from '../control-characters.ts';
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
  shorten,
  signedDifference,
  timeAndRate,
  unfinishedText,
} from './report-text.ts';

/** "1,998 of 2,000 rows succeeded in 4.1 s (487 rows/s), 2,013 calls, $0.0123", then any invalid rows. */
export function renderHeadline(report: Report): string {
  const { totals } = report;
  const invalid = totals.invalid_rows > 0 ? `; ${counted(totals.invalid_rows, 'invalid row')} not run` : '';
  const unfinished = unfinishedText(totals);
  // Stopped before any row finished: "0 of 0 rows succeeded" says nothing.
  const rows = unfinished && totals.rows === 0 ? '0 rows finished' : `${count(totals.succeeded)} of ${counted(totals.rows, 'row')} succeeded`;
  const stopped = report.cancelled ? 'Cancelled: ' : 'Stopped early: ';
  return `${unfinished ? stopped : ''}${rows} in ${timeAndRate(totals)}, ${counted(totals.calls, 'call')}, ${formatCost(totals.cost_usd, totals.unpriced_calls, totals.calls)}${invalid}${unfinished ? `; ${unfinished}` : ''}`;
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
      (unfinished ? `; ${unfinished}: ${report.cancelled ? `the batch was cancelled, and ${resume} runs the rest` : `the run stopped early, and ${resume} finishes the batch`}` : '') +
      (!unfinished && totals.failed > 0 ? `; ${resume} runs the failed rows again (once what their errors say is fixed, if it needs fixing: see Errors)` : ''),
    ...bullet('Comparison: ', compareText(report)),
    `- Calls: ${count(totals.calls)} (${count(totals.failed_calls)} failed), retries and fallbacks included`,
    `- Tokens: ${count(totals.input_tokens)} in, ${count(totals.output_tokens)} out`,
    `- Cost: ${formatUsd(totals.cost_usd)}, the sum of costs.jsonl`,
    ...(totals.unpriced_calls > 0 ? [`- ${counted(totals.unpriced_calls, 'call')} used a model with no configured price: not in the cost`] : []),
    ...bullet('', renderEstimatedUsage(totals)),
    ...bullet('', renderSavings(report)),
    `- Retries: ${counted(extra.retry_calls, 'call')}${retriedAnswers(extra)}, ${extraCost(extra.retry_calls, extra.retry_cost_usd, extra.retry_unpriced_calls)}; fallbacks: ${counted(extra.fallback_calls, 'call')}, ${extraCost(extra.fallback_calls, extra.fallback_cost_usd, extra.fallback_unpriced_calls)}, ${counted(extra.rows_on_fallback, 'row')} answered by a fallback model${bothCounted(extra)}`,
    ...bullet('Rate limits: ', pastRateLimitWords(extra)),
    ...bullet('Cache: ', renderCache(report)),
    ...(extra.classifier_calls > 0 ? [`- Task classifier: ${counted(extra.classifier_calls, 'call')}, ${extraCost(extra.classifier_calls, extra.classifier_cost_usd, extra.classifier_unpriced_calls)}; ${classifierDecidedText(report)}`] : []),
    ...bullet('Ensembles: ', renderEnsembleCalls(extra)),
    ...bullet('Judge: ', renderJudge(report)),
    ...bullet('Cut off: ', renderCutOff(report)),
    ...bullet('Long answers: ', renderLongOutputs(report)),
    ...bullet('Long prompts: ', renderLongPrompts(report)),
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

/** The ensembles whose succeeded rows were synthesized from fewer answers than their members, each in a sentence. */
function shortEnsembleRows(ensembles: ReadonlyArray<readonly [string, EnsembleReport]>): string[] {
  const short = ensembles.filter(([, e]) => (e.rows_short_of_members ?? 0) > 0);
  if (short.length === 0) return [];
  const what = short.map(([name, e]) => `${name}: ${count(e.rows_short_of_members!)} of its ${count(e.succeeded)} succeeded rows`);
  return ['', `Synthesized from fewer answers than the ensemble has members (a member failed after its retries and fallbacks, or was given up for its rate limit): ${what.join('; ')}. Each row's \`ensemble.members\` in results.jsonl says which and why.`];
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
    ...shortEnsembleRows(ensembles),
  ]);
}

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

function pairedSection(report: Report): string[] {
  const pairs = pairsInOrder(report);
  const leftOut = pairedLeftOutText(report);
  if (pairs.length === 0 && !leftOut) return [];
  return section('Judge: models compared on the same prompts', [
    ...(pairs.length === 0 ? [] : table(
      ['A', 'B', 'Prompts', 'A better', 'Tie', 'B better', 'Score A − B'],
      ['l', 'l', 'r', 'r', 'r', 'r', 'r'],
      pairs.map((pair) => [pair.a, pair.b, count(pair.prompts), count(pair.a_better), count(pair.ties), count(pair.b_better), formatDifference(pair)]),
    )),
    '',
    'Rows with the same id answered by two models (or ensembles), scored by the judge: the difference of their scores over those prompts alone, ± its 95% margin of error. A difference within its margin is no clear winner.' +
      (leftOut ? ` ${leftOut[0]!.toUpperCase()}${leftOut.slice(1)}.` : ''),
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
 * "293 rows went on past lim for its rate limit (...); their answers cost $0.612, 35x the $0.0177 of
 * the same tokens at lim's price": the fallbacks a wait would
 * have spared, and what they cost (on_limit: fallback). Null when none went on so.
 */
export function pastRateLimitWords(extra: Pick<ExtraCallsReport, 'rows_past_rate_limit' | 'past_rate_limit_cost'>): string | null {
  const past = Object.entries(extra.rows_past_rate_limit ?? {});
  if (past.length === 0) return null;
  const costs = past.flatMap(([model, rows]) => {
    const cost = extra.past_rate_limit_cost?.[model];
    return cost && cost.rows > 0 ? [pastRateLimitCostWords(model, rows, cost)] : [];
  });
  return `${past.map(([model, rows]) => `${counted(rows, 'row')} went on past ${model}`).join(', ')} for ${past.length === 1 ? 'its rate limit' : 'their rate limits'} (on_limit: fallback; the next slot over limits.max_wait_ms away)${costs.length > 0 ? `; ${costs.join('; ')}` : ''}`;
}

/** What the rows that went on past `model` cost against their tokens at its price, in words. */
function pastRateLimitCostWords(model: string, rows: number, cost: NonNullable<ExtraCallsReport['past_rate_limit_cost']>[string]): string {
  // The rows outside ensembles only: an ensemble row's cost is all its calls' (report.ts).
  const answers = cost.rows === rows ? (rows === 1 ? 'its answer' : 'their answers') : `the answers of the ${count(cost.rows)} outside ensembles`;
  const paid = `${answers} cost ${formatUsd(cost.cost_usd)}${cost.unpriced_rows > 0 ? ` (and ${counted(cost.unpriced_rows, 'row')} on models with no price)` : ''}`;
  if (cost.cost_at_its_price_usd === null) return `${paid} (${model} has no price to compare with)`;
  const atItsPrice = `${formatUsd(cost.cost_at_its_price_usd)} of the same tokens at ${model}'s price`;
  if (cost.unpriced_rows > 0 || cost.cost_at_its_price_usd === 0) return `${paid}, beside the ${atItsPrice}`;
  return `${paid}, ${timesAsMuch(cost.cost_usd / cost.cost_at_its_price_usd)} the ${atItsPrice}`;
}

/**
 * "35x", "2.4x", "0.8x", "0.03x": a ratio of two costs, to the precision it is read at. Under a tenth
 * (rows sent past a premium model to a cheap one) to one significant figure, which one decimal read "0x".
 */
function timesAsMuch(ratio: number): string {
  if (ratio >= 10) return `${Math.round(ratio)}x`;
  if (ratio >= 0.1 || ratio === 0) return `${Math.round(ratio * 10) / 10}x`;
  return `${Number(ratio.toPrecision(1))}x`;
}
