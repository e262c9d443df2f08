import { resolve } from 'node:path';
import { builtInConfig } from '../config/defaults.ts';
import { loadConfigFile } from '../config/load.ts';
import { answerableNames, DEFAULT_MIN_ANSWERS, judgeMaxTokens, type JudgeConfig, type SwitchyardConfig } from '../config/schema.ts';
import { UsageError } from '../errors.ts';
import { batchIdRule, isValidBatchId } from '../queue/keys.ts';
import { CappedMaxTokens } from '../batch/capped-max-tokens.ts';
import { lookalikeColumnsText, requestFieldColumnsText, unsentBodyFieldsText, unsentRequestFieldsText } from '../batch/run-messages.ts';
import { missingKeys, modelsTheRowsGoTo, modelsTheRowsMayCall, notSet, refuseWithoutKeys, spentMonthCheck } from '../batch/config-checks.ts';
import { withoutAnswerCache } from '../execution/answer-cache.ts';
import { readMonthSpent } from './dry-run-month.ts';
import { countUnsentBodyFields } from '../queue/producer.ts';
import { pinnedCallProgress } from '../execution/pinned-call.ts';
import { readRows } from '../input/read-rows.ts';
import { callCostNanos, formatUsd, nanosToUsd, usdToNanos } from '../models/pricing.ts';
import { AB_BESIDE_PINNED, autoArmUnroutedNote, formatAbSplit, parseAbSplit } from '../routing/ab-split.ts';
import { rowTarget } from '../routing/row-target.ts';
import { comparedText, fanOutItem, noneCompared } from '../routing/compare-fan-out.ts';
import { parseCompareModels, refuseCompareBesideOneModel } from '../routing/compare-models.ts';
import { AUTO_ROUTE, pinnedModel, refuseUnknownPinned } from '../routing/pinned-model.ts';
import { maxTokensOfRow, noModelMessage, planRoute } from '../routing/route-plan.ts';
import { classificationInput, classifyByRules, compileTaskRules } from '../routing/rule-classifier.ts';
import { countMessageTokens, countPromptTokens, countTextTokens, requestFieldsText, type PromptCount } from '../routing/token-count.ts';
import { countInvalidRow, type ChatMessage, type InputRow, type InvalidRowCounts, type ReadPosition } from '../input/row.ts';
import { judgeMessages } from '../judge/judge-prompt.ts';
import { withJudge } from '../judge/judge-override.ts';
import { referenceAnswer } from '../judge/judge-row.ts';
import { counted, formatCount } from '../figure-text.ts';

export interface DryRunOptions {
  file?: string;
  config?: string;
  model?: string;
  route?: string;
  ab?: string;
  compare?: string;
  judge?: string;
  promptColumn?: string;
  budget?: number;
  /** false: --no-cache. */
  cache?: boolean;
  /** --resume: a dry run reads no batch, and says so (it estimates the file as a new batch). */
  resume?: string;
  /** --batch-id: checked as the run would (a pre-check in a script should fail where the run would). */
  batchId?: string;
}

interface Tally {
  rows: number;
  inputTokens: number;
  maxOutputTokens: number;
  costNanos: number;
  unpriced: number;
}

const emptyTally = (): Tally => ({ rows: 0, inputTokens: 0, maxOutputTokens: 0, costNanos: 0, unpriced: 0 });
/** What a call beside a row's answer (the judge's) adds to the totals: all but a row (an unpriced judge is said apart: `unpriced` counts rows). */
const CALL_FIELDS = ['inputTokens', 'maxOutputTokens', 'costNanos'] as const;

/** A dry run calls nothing, so it counts in its own thread (token-count.ts), with no thread to start. */
const countHere = async (messages: readonly ChatMessage[], fieldsText: string): Promise<PromptCount> => countPromptTokens(messages, fieldsText);

/**
 * `switchyard run --dry-run`: reads and routes every row (with the rules classifier: a dry run
 * calls no model), counts input tokens with the tokenizer, and prices each row on its first-choice
 * model with max_tokens as the output (and its judge call, with a judge), an upper bound on what
 * the batch can cost.
 */
export async function runDryRun(options: DryRunOptions, say: (line: string) => void): Promise<number> {
  for (const id of [options.batchId, options.resume]) if (id !== undefined && !isValidBatchId(id)) throw new UsageError(batchIdRule('batch id', id));
  if (!options.file) {
    const batch = options.resume ? ` (it reads no batch: give the file of ${options.resume}, and its --config, --ab, --compare or --judge)` : '';
    throw new UsageError(`--dry-run needs an input file${batch}`);
  }
  if (options.resume) {
    say(
      `Note: --dry-run reads no batch: this estimates ${options.file} as a new batch, with the options given here, not ${options.resume}'s split, comparison, judge or config. ` +
        `A resume pays only for the rows it runs (not those that succeeded), and adding a judge only for its calls${options.judge ? ' (the Judge line below)' : ''}.`,
    );
  }
  const loaded = options.config ? await loadConfigFile(options.config) : builtInConfig('http://127.0.0.1:8787/v1');
  // As run says it (QA: a switchyard.yaml in the folder was ignored without a word). No simulator: nothing is called.
  if (!options.config) say('No --config given: estimating with the built-in models (a run would start their simulator; a dry run starts none and calls nothing).');
  const builtIn = !options.config;
  const config = options.judge ? withJudge(loaded, options.judge, builtIn) : loaded;
  refuseCompareBesideOneModel(options);
  const pinned = pinnedModel(options);
  refuseUnknownPinned(pinned, answerableNames(config), builtIn);
  if (options.ab && pinned) throw new UsageError(AB_BESIDE_PINNED);
  const abSplit = options.ab ? parseAbSplit(options.ab, answerableNames(config), builtIn) : undefined;
  const compare = options.compare !== undefined ? parseCompareModels(options.compare, answerableNames(config), builtIn) : undefined;
  const compareTally = noneCompared();
  const rules = compileTaskRules(config.routing);
  const byModel = new Map<string, Tally>();
  const byTask = new Map<string, Tally>();
  const byArm = new Map<string, Tally>();
  const total = emptyTally();
  let invalid = 0;
  let unpricedJudgeCalls = 0;
  const invalidByCode: InvalidRowCounts = {};
  let unroutable = 0;
  let firstUnroutable: string | null = null;
  const unsentBodyFields: Record<string, number> = {};
  const capped = new CappedMaxTokens(config);
  const noFit = (row: InputRow, why: string) => {
    unroutable++;
    firstUnroutable ??= `line ${row.line}: ${why}`;
  };
  const add = (map: Map<string, Tally>, key: string, rowTally: Tally) => {
    const tally = map.get(key) ?? emptyTally();
    for (const field of Object.keys(tally) as (keyof Tally)[]) tally[field] += rowTally[field];
    map.set(key, tally);
  };

  const position: ReadPosition = { bytesRead: 0, fileBytes: 0 };
  for await (const read of readRows(resolve(options.file), { promptColumn: options.promptColumn ?? 'prompt', knownModels: new Set(answerableNames(config)) }, position)) {
    // Under --compare, a record is a row per model (a vacant number is no row), as the run queues it.
    for (const item of compare ? fanOutItem(read, compare, compareTally) : [read]) {
      if (item.kind === 'vacant') continue;
      if (item.kind === 'error') {
        invalid++;
        countInvalidRow(invalidByCode, item.value);
        continue;
      }
      const row = item.value;
      if (row.custom_id !== undefined) countUnsentBodyFields(unsentBodyFields, row.metadata['body_extra']);
      const { text, chars } = classificationInput(row.messages);
      const { taskType, reason } = classifyByRules(text, rules, chars);
      const { maxTokens, maxTokensFrom } = maxTokensOfRow(row, config);
      const { abArm, ensemble } = rowTarget(row, config, abSplit, pinned);
      // A compared copy's arm is its model, for the table per compared model.
      const arm = abArm ?? (compare && read.kind === 'row' && read.value.model === undefined ? row.model : undefined);
      // The request fields sent beside the prompt are read as prompt too: a structured output's JSON schema is billed so.
      // Counted only where the route plan has not (it counts them with the prompt when a context window asks it to).
      const fieldTokens = () => countTextTokens(requestFieldsText(row.params));
      const judgeCall = (answerTokens: number) => {
        if (!config.judge) return;
        const judged = judgeCallTally(config, config.judge, row, answerTokens);
        add(byModel, `${config.judge.model} (judge)`, judged);
        for (const field of CALL_FIELDS) total[field] += judged[field];
        unpricedJudgeCalls += judged.unpriced;
      };
      if (ensemble) {
        // Each member on the first of its models (its own, then its fallbacks) that can hold the prompt, as the run would.
        const members: string[] = [];
        for (const model of ensemble.config.members) {
          const first = (await pinnedCallProgress(config, { model, messages: row.messages, params: row.params, maxTokens, maxTokensFrom, reason: 'dry run', notTo: ensemble.config.members }, countHere)).plan?.chain[0];
          if (first !== undefined) members.push(first);
        }
        const needed = ensemble.config.min_answers ?? DEFAULT_MIN_ANSWERS;
        if (members.length < needed) {
          noFit(row, `ensemble "${ensemble.name}": ${members.length} of ${ensemble.config.members.length} members can take this prompt, ${needed} needed`);
          continue;
        }
        const synthesisMaxTokens = ensemble.config.synthesis_max_tokens ?? maxTokens;
        const rowTally = ensembleRowTally(config, members, ensemble.config.synthesizer, countMessageTokens(row.messages) + fieldTokens(), maxTokens, synthesisMaxTokens);
        add(byModel, `${ensemble.name} (ensemble)`, rowTally);
        // Labelled by the rules, as the run records it (results.jsonl's task_type, the report's task-type table).
        add(byTask, taskType, rowTally);
        if (arm !== undefined) add(byArm, arm, rowTally);
        for (const field of Object.keys(total) as (keyof Tally)[]) total[field] += rowTally[field];
        judgeCall(Math.min(synthesisMaxTokens, config.models[ensemble.config.synthesizer]?.max_output_tokens ?? synthesisMaxTokens));
        continue;
      }
      const plan = planRoute({ messages: row.messages, params: row.params, rowModel: row.model, abArm, pinnedModel: pinned, maxTokens, maxTokensFrom, taskType, routeReason: reason }, config, countPromptTokens);
      const model = plan.chain[0];
      if (!model) {
        noFit(row, noModelMessage(plan));
        continue;
      }
      capped.add(model, row.max_tokens);
      const rowTally = callTally(config, model, plan.promptTokensCounted ? plan.promptTokens : countMessageTokens(row.messages) + fieldTokens(), maxTokens);
      add(byModel, model, rowTally);
      add(byTask, plan.taskType, rowTally);
      if (arm !== undefined) add(byArm, arm, rowTally);
      for (const field of Object.keys(total) as (keyof Tally)[]) total[field] += rowTally[field];
      judgeCall(rowTally.maxOutputTokens);
    }
  }

  say(`Dry run of ${options.file}: no model was called.`);
  // What the run would say first: a preflight that passes a run which then refuses to start helps no one.
  // A key missing for a model no row goes to is not said.
  const answering = modelsTheRowsGoTo(compare, abSplit, pinned);
  for (const [key, models] of missingKeys(config, modelsTheRowsMayCall(config, answering))) {
    say(`Warning: ${notSet(key)} here: calls to ${models.join(', ')} would fail with missing_api_key (a run stops before calling anything when no model its rows may use has its key, here or on a worker on its Redis).`);
  }
  if (abSplit) say(`A/B split: each row that names no model goes to ${formatAbSplit(abSplit)}, by its id.`);
  if (compare) for (const line of comparedText(compare, compareTally)) say(line);
  const unrouted = autoArmUnroutedNote(abSplit, config);
  if (unrouted) say(unrouted);
  say(`${counted(total.rows, 'row')} routed, ${formatCount(invalid)} invalid (they would go to errors.jsonl), ${formatCount(unroutable)} with no model that fits.`);
  if (firstUnroutable) say(`  no model that fits ${formatCount(unroutable)}, the first: ${firstUnroutable}`);
  for (const note of [unsentBodyFieldsText(unsentBodyFields), unsentRequestFieldsText(position.unsentRequestFields), capped.text()]) if (note) say(note);
  for (const note of [lookalikeColumnsText(position.csvLookalikeColumns), requestFieldColumnsText(position.csvRequestFieldColumns)]) if (note) say(note);
  // What is wrong with the file, so it can be fixed before anything is spent.
  for (const [code, entry] of Object.entries(invalidByCode).sort(([, a], [, b]) => b.rows - a.rows)) {
    say(`  ${code} ${formatCount(entry.rows)}, the first: ${entry.example}`);
  }
  say('');
  if (total.rows === 0) {
    say('No row would run: nothing to estimate.');
    return 1;
  }
  printTable('Model', byModel, say);
  say('');
  printTable('Task type', byTask, say);
  say('');
  if (byArm.size > 0) {
    printTable(compare ? 'Compared model' : 'A/B arm', byArm, say);
    say('');
  }
  const judged = !config.judge ? '' : unpricedJudgeCalls > 0 ? `; the ${config.judge.model} judge has no price: its calls are not in it` : `; a ${config.judge.model} judge call per row included`;
  const nothingPriced = total.unpriced === total.rows && (!config.judge || unpricedJudgeCalls > 0);
  say(`Estimated cost: ${nothingPriced ? formatUsd(null) : `at most ${formatUsd(nanosToUsd(total.costNanos))} as counted here`} (input tokens by the o200k tokenizer, which a model with a tokenizer of its own may count higher; output at max_tokens; retries and fallbacks not included${judged})` + (total.unpriced > 0 ? `; ${counted(total.unpriced, 'row')} on unpriced models` : ''));
  const budgetUsd = options.budget ?? config.budget.batch_usd;
  if (budgetUsd !== undefined && nanosToUsd(total.costNanos) > budgetUsd) {
    say(`Budget: the batch budget of ${formatUsd(budgetUsd)} is below this estimate; the calls stop where it runs out (answers are usually shorter than max_tokens), and the rows left end budget_exceeded.`);
  }
  const monthRefused = await checkMonth(options.cache === false ? withoutAnswerCache(config) : config, answering, total.costNanos, say);
  const routesByTaskType = !compare && (!abSplit || abSplit.some((arm) => arm.model === AUTO_ROUTE));
  if (config.routing?.classifier === 'llm' && routesByTaskType) say(`Note: routing uses the rules here; the LLM classifier would add one cheap call per row routed by task type${abSplit ? ` (the arm ${AUTO_ROUTE}'s rows)` : ''}, not in these estimates.`);
  if (config.cache && options.cache !== false) say('Note: the answer cache is on (cache in the config): rows whose request was answered before, in any batch on this Redis and key prefix, are not called; the estimate counts every row as called.');
  // As run would stop: no model the rows may use has its key here (a worker elsewhere with it is not known here).
  const keyless = refusalWithoutKeys(config, answering);
  if (keyless) say(`A run here would stop before queueing, unless a worker on its Redis has the key: ${keyless}`);
  // As run would: 1 when rows could not run (invalid, or no model fits them, or no key, or the month's budget is spent).
  return invalid > 0 || unroutable > 0 || keyless !== null || monthRefused ? 1 : 0;
}

/**
 * With budget.monthly_usd, the month's spend as the run would read it (QA: a dry run passed, the run
 * then refused with exit 2): what is left, and whether the run would stop before queueing (true).
 * A Redis that does not answer at once is said, not waited for; none is started.
 */
async function checkMonth(config: SwitchyardConfig, pinned: readonly string[] | undefined, estimateNanos: number, say: (line: string) => void): Promise<boolean> {
  const cap = config.budget.monthly_usd;
  if (cap === undefined) return false;
  const now = new Date();
  const month = now.toISOString().slice(0, 7);
  const read = await readMonthSpent(now);
  if (!read.ok) {
    say(`Month: the month's spend could not be checked against budget.monthly_usd ${formatUsd(cap)} (${read.why}); a run refuses to start when it is spent.`);
    return false;
  }
  const leftNanos = Math.max(0, usdToNanos(cap) - read.spentNanos);
  say(`Month: ${formatUsd(nanosToUsd(read.spentNanos))} spent in ${month} (UTC) of budget.monthly_usd ${formatUsd(cap)}, ${formatUsd(nanosToUsd(leftNanos))} left (${read.where}).`);
  const check = spentMonthCheck(config, pinned, read.spentNanos, now);
  if (check?.kind === 'refuse') {
    say(`A run here would stop before queueing: ${check.message}`);
    return true;
  }
  if (check) say(check.message);
  else if (estimateNanos > leftNanos) say("Month: what is left of the month's budget is below this estimate; the calls stop where it runs out (answers are usually shorter than max_tokens), and the rows left end budget_exceeded.");
  return false;
}

/**
 * An ensemble row at most: every member reads the prompt and writes max_tokens; the synthesizer
 * reads the prompt, their answers and its instructions (about 150 tokens), and writes its own
 * max_tokens (the ensemble's synthesis_max_tokens, else the row's).
 */
function ensembleRowTally(config: SwitchyardConfig, memberModels: readonly string[], synthesizer: string, promptTokens: number, maxTokens: number, synthesisMaxTokens: number): Tally {
  const members = memberModels.map((model) => callTally(config, model, promptTokens, maxTokens));
  const answers = members.reduce((sum, member) => sum + member.maxOutputTokens, 0);
  const calls = [...members, callTally(config, synthesizer, promptTokens + answers + 150, synthesisMaxTokens)];
  return {
    rows: 1,
    inputTokens: calls.reduce((sum, call) => sum + call.inputTokens, 0),
    maxOutputTokens: calls.reduce((sum, call) => sum + call.maxOutputTokens, 0),
    costNanos: calls.reduce((sum, call) => sum + call.costNanos, 0),
    unpriced: calls.some((call) => call.unpriced > 0) ? 1 : 0,
  };
}

/** A judge's call at most: its instructions, the request, the reference and an answer of `answerTokens` read; its max_tokens written. */
function judgeCallTally(config: SwitchyardConfig, judge: JudgeConfig, row: InputRow, answerTokens: number): Tally {
  const instructions = countMessageTokens(judgeMessages({ request: row.messages, answer: '', reference: referenceAnswer(row, judge), criteria: judge.criteria }));
  return callTally(config, judge.model, instructions + answerTokens, judgeMaxTokens(judge));
}

/** One call at most: the prompt read, max_tokens written (capped by the model's max_output_tokens), priced. */
function callTally(config: SwitchyardConfig, model: string, inputTokens: number, maxTokens: number): Tally {
  const maxOutputTokens = Math.min(maxTokens, config.models[model]?.max_output_tokens ?? maxTokens);
  const nanos = callCostNanos(config.models[model]?.price, { input_tokens: inputTokens, output_tokens: maxOutputTokens });
  return { rows: 1, inputTokens, maxOutputTokens, costNanos: nanos ?? 0, unpriced: nanos === null ? 1 : 0 };
}

function printTable(label: string, tallies: Map<string, Tally>, say: (line: string) => void): void {
  const rows = [...tallies.entries()].sort(([, a], [, b]) => b.rows - a.rows);
  const header = [label, 'Rows', 'Input tokens', 'Max output tokens', 'Est. cost (max)'];
  const cost = (t: Tally) => (t.unpriced === t.rows ? formatUsd(null) : `${formatUsd(nanosToUsd(t.costNanos))}${t.unpriced > 0 ? ` + ${t.unpriced} unpriced` : ''}`);
  const body = rows.map(([name, t]) => [name, formatCount(t.rows), formatCount(t.inputTokens), formatCount(t.maxOutputTokens), cost(t)]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  say(line(header));
  for (const r of body) say(line(r));
}

/** What `run` would refuse for want of API keys, with no other worker known to have them; null when some model can be called. */
function refusalWithoutKeys(config: SwitchyardConfig, answering: readonly string[] | undefined): string | null {
  try {
    refuseWithoutKeys(config, answering, new Set(), 'run');
    return null;
  } catch (error) {
    if (error instanceof UsageError) return error.message;
    throw error;
  }
}
