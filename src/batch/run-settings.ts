// What a run runs with: its options or, on a resume, what the batch was given before; and the notes that say so.
import { resolve } from 'node:path';
import { loadConfigFile } from '../config/load.ts';
import { answerableNames, type JudgeConfig, type SwitchyardConfig } from '../config/schema.ts';
import { UsageError } from '../errors.ts';
import type { InputRow } from '../input/row.ts';
import type { BatchMeta } from '../queue/batch-state.ts';
import { noBatchMessage, type Session } from '../queue/session.ts';
import { AB_BESIDE_PINNED, autoArmUnroutedNote, formatAbSplit, parseAbSplit, type AbArm } from '../routing/ab-split.ts';
import { AUTO_ROUTE, pinnedModel } from '../routing/pinned-model.ts';
import { mayAnswer } from '../routing/may-answer.ts';
import { chooseCompareModels } from '../routing/compare-models.ts';
import type { Simulator } from '../sim/server.ts';
import { formatUsd, nanosToUsd } from '../models/pricing.ts';
import { RAISE_A_BUDGET, RAISE_MONTH_CAP } from '../limits/budget-way-out.ts';
import { withJudge } from '../judge/judge-override.ts';
import { withoutAnswerCache } from '../execution/answer-cache.ts';
import { startBuiltInModels } from './built-in-models.ts';
import type { RunHost, RunOptions } from './run-batch.ts';

/** The batch an earlier run left (null for a new one), refused when these options cannot go on with it. */
export async function loadEarlierBatch(batchId: string, options: RunOptions, session: Session): Promise<BatchMeta | null> {
  const existing = await session.store.load(batchId);
  if (options.resume && !existing) throw new UsageError(noBatchMessage(session, batchId));
  if (existing && options.out && resolve(options.out) !== existing.out_dir) {
    throw new UsageError(`batch ${batchId} writes its outputs to ${existing.out_dir}, not ${resolve(options.out)}: leave --out off to go on with it, or start a new batch (another --batch-id)`);
  }
  return existing;
}

export interface ResolvedConfig {
  config: SwitchyardConfig;
  builtIn: boolean;
  /** The simulator this run started, which stops with it. */
  simulator: Simulator | null;
}

/** No config file: the built-in models on a simulator inside this process (the demo path). */
export async function resolveConfig(options: RunOptions, existing: BatchMeta | null, storedConfig: SwitchyardConfig | null, say: (line: string) => void, host: RunHost | undefined): Promise<ResolvedConfig> {
  if (host) return { ...host.config, simulator: null };
  if (options.config) return { config: await loadConfigFile(options.config), builtIn: false, simulator: null };
  if (existing && storedConfig && !existing.builtin_config) return { config: storedConfig, builtIn: false, simulator: null };
  // Its config was evicted or deleted from Redis: the built-in models would answer its rows instead, at other prices (QA).
  if (existing && !existing.builtin_config) {
    throw new UsageError(`batch ${existing.batch_id}'s config is gone from Redis (evicted, or deleted): give it again with --config to go on with the batch, or run the file as a new batch`);
  }
  if (options.detach) {
    throw new UsageError('--detach needs --config: the built-in models are a simulator inside this process, which stops when it exits. Give a config (examples/switchyard.yaml runs on "switchyard sim").');
  }
  const { config, simulator } = await startBuiltInModels();
  say(`No --config given: using the built-in models on the simulator at ${simulator.url} (no API key needed).`);
  return { config, builtIn: true, simulator };
}

/** The config with the run's judge in it (`judgeModel`: the one named by --judge or kept from before, if any), said when there is one. */
export function withRunJudge(resolved: Pick<ResolvedConfig, 'config' | 'builtIn'>, options: RunOptions, existing: BatchMeta | null, say: (line: string) => void): { config: SwitchyardConfig; judgeModel: string | undefined } {
  // A resume keeps the judge it was given, as it keeps --ab.
  const judgeModel = options.judge ?? existing?.judge_model;
  const config = judgeModel ? withJudge(resolved.config, judgeModel, resolved.builtIn) : resolved.config;
  if (config.judge) say(`Judge: ${config.judge.model} scores every answer from 1 to 10 (against the "${config.judge.reference_column}" field where a row has one).`);
  return { config, judgeModel };
}

/** Whether the batch leaves the answer cache out: --no-cache (the API's cache=false), or its earlier run's --no-cache until --cache. */
export function cacheTurnedOff(options: RunOptions, existing: BatchMeta | null): boolean {
  return options.cache === undefined ? existing?.cache_off === true : !options.cache;
}

/** The config this run's rows see: without its answer cache when the batch has it off (said when the config has one). */
export function withRunCache(config: SwitchyardConfig, cacheOff: boolean, options: RunOptions, say: (line: string) => void): SwitchyardConfig {
  if (options.cache === true && !config.cache) say('Note: --cache has no cache to use: this config has no `cache` key (cache: { ttl_hours: 168 } turns the answer cache on).');
  if (!cacheOff || !config.cache) return config;
  if (options.cache === false) say('Note: the answer cache is off for this batch (--no-cache): every row is called, and no answer is kept for later.');
  else say('Note: the answer cache is off for this batch, as its earlier run was given --no-cache (--cache turns it on again).');
  return withoutAnswerCache(config);
}

/** Whether any budget caps this run's spend: its own, the batch's, or the config's for a batch or a month. */
export function isBudgeted(options: RunOptions, existing: BatchMeta | null, config: SwitchyardConfig): boolean {
  return (options.budget ?? existing?.budget_usd ?? config.budget.batch_usd ?? config.budget.monthly_usd) !== undefined;
}

/**
 * A resume's judge, when the rows answered before were scored by another one (`judgeBefore`) or none:
 * they are scored again. `all`: the same judge model with other instructions (criteria, reference
 * column): every answer is scored again, its score by the model alone saying nothing of the change.
 */
export function rescoringJudge(existing: BatchMeta | null, config: SwitchyardConfig, judgeBefore: JudgeConfig | undefined): { model: string; all: boolean } | undefined {
  const judge = config.judge;
  if (!existing || !judge) return undefined;
  if (judge.model !== judgeBefore?.model) return { model: judge.model, all: false };
  const instructionsChanged = judge.criteria !== judgeBefore.criteria || judge.reference_column !== judgeBefore.reference_column;
  return instructionsChanged ? { model: judge.model, all: true } : undefined;
}

/** The settings a run keeps in the batch's meta, each from its option or else from the batch's earlier run. */
export interface RunSettings {
  inputPath: string;
  promptColumn: string;
  /** Where every row that names no model goes (--model, or --route with a model name). */
  model: string | undefined;
  abSplit: AbArm[] | undefined;
  /** --compare's models, or the batch's on a resume: every row that names no model goes to each. */
  compare: string[] | undefined;
  budgetUsd: number | undefined;
  /** `budgetUsd` is the config's budget.batch_usd (no --budget, now or before). */
  budgetFromConfig: boolean;
  /** The concurrency given to the batch (the config's otherwise). */
  concurrency: number | undefined;
}

export const NO_INPUT_FILE = 'no input file: give one, e.g. "switchyard run prompts.csv"';

/** The run's settings; refuses a run with no input file, with --ab beside a pinned model or --compare beside either, and says what its A/B split, comparison or pinned model means for its rows. */
export function chooseRunSettings(options: RunOptions, existing: BatchMeta | null, config: SwitchyardConfig, builtIn: boolean, storedConfig: SwitchyardConfig | null, say: (line: string) => void): RunSettings {
  const file = options.file ?? existing?.input;
  if (!file) throw new UsageError(NO_INPUT_FILE);
  const inputPath = resolve(file);
  const promptColumn = options.promptColumn ?? existing?.prompt_column ?? 'prompt';
  const compare = chooseCompareModels(options, existing && { id: existing.batch_id, compare: existing.compare }, answerableNames(config), builtIn);
  // A comparison pins each row's copies to their models: no split, no pinned model.
  const { model, abSplit } = compare ? { model: undefined, abSplit: undefined } : chooseRowModels(options, existing, config, builtIn);
  // A comparison is said once the file is read, with its counts (comparedText).
  if (!compare) sayAbSplitNotes(options, existing, config, model, abSplit, say);
  const budget = chooseBudget(options, existing, config);
  sayBudgetStillSpent(existing, budget.usd, config, storedConfig, say);
  // A resume goes on at the pace the batch was given (a provider's limits may be why it was low).
  const concurrency = options.concurrency ?? existing?.concurrency;
  return { inputPath, promptColumn, model, abSplit, compare, budgetUsd: budget.usd, budgetFromConfig: budget.fromConfig, concurrency };
}

/**
 * The batch's own cap: --budget, or the --budget an earlier run was given, or else this run's
 * config's budget.batch_usd (a resume with a config that raises or drops it follows that).
 */
function chooseBudget(options: RunOptions, existing: BatchMeta | null, config: SwitchyardConfig): { usd: number | undefined; fromConfig: boolean } {
  if (options.budget !== undefined) return { usd: options.budget, fromConfig: false };
  if (existing?.budget_usd !== undefined && existing.budget_from_config !== true) return { usd: existing.budget_usd, fromConfig: false };
  return { usd: config.budget.batch_usd, fromConfig: config.budget.batch_usd !== undefined };
}

/**
 * A resume of a batch a budget stopped that raises neither its cap (`budgetUsd`) nor the month's
 * (the config's budget.monthly_usd against the batch's earlier config): its rows that still need a
 * call would end budget_exceeded again, each once more.
 */
function sayBudgetStillSpent(existing: BatchMeta | null, budgetUsd: number | undefined, config: SwitchyardConfig, storedConfig: SwitchyardConfig | null, say: (line: string) => void): void {
  if (existing?.status !== 'budget_exceeded') return;
  const raised = (before: number | undefined, now: number | undefined) => before !== undefined && (now === undefined || now > before);
  const monthRaised = raised(storedConfig?.budget.monthly_usd, config.budget.monthly_usd);
  if (existing.budget_stop === 'month') {
    // A higher --budget is beside the point: the month's cap stopped it.
    if (monthRaised) return;
    const cap = storedConfig?.budget.monthly_usd;
    say(
      `Warning: batch ${existing.batch_id} stopped at the month's cap (budget.monthly_usd${cap === undefined ? '' : ` ${formatUsd(cap)}`}) and this run's config does not raise it: its rows that still need a call may end budget_exceeded again. ` +
        RAISE_MONTH_CAP,
    );
    return;
  }
  if (raised(existing.budget_usd, budgetUsd) || monthRaised) return;
  const own = existing.budget_usd === undefined ? '' : ` (its own is ${formatUsd(existing.budget_usd)}, ${formatUsd(nanosToUsd(existing.cost_nanos))} spent)`;
  say(`Warning: batch ${existing.batch_id} stopped at a budget${own} and this run raises none: its rows that still need a call may end budget_exceeded again. ${RAISE_A_BUDGET}`);
}

/** Where rows that name no model go: --model or --route, --ab, or what the batch was given before (a resume that names neither keeps it). */
function chooseRowModels(options: RunOptions, existing: BatchMeta | null, config: SwitchyardConfig, builtIn: boolean): { model: string | undefined; abSplit: AbArm[] | undefined } {
  if (options.ab && (options.model || (options.route && options.route !== AUTO_ROUTE))) throw new UsageError(AB_BESIDE_PINNED);
  const model = pinnedModel(options) ?? (options.route === AUTO_ROUTE || options.ab ? undefined : existing?.model_override);
  const abSplit = options.ab ? parseAbSplit(options.ab, answerableNames(config), builtIn) : !options.model && !options.route ? existing?.ab_split : undefined;
  return { model, abSplit };
}

/** The split this run follows, and what a resume that changes or drops the batch's split does to its rows. */
function sayAbSplitNotes(options: RunOptions, existing: BatchMeta | null, config: SwitchyardConfig, model: string | undefined, abSplit: AbArm[] | undefined, say: (line: string) => void): void {
  if (abSplit) say(`A/B split: each row that names no model goes to ${formatAbSplit(abSplit)}, by its id (the same id, the same model, in every run given these arms in this order).`);
  const unrouted = autoArmUnroutedNote(abSplit, config);
  if (unrouted) say(unrouted);
  if (options.ab && existing?.ab_split && formatAbSplit(existing.ab_split) !== formatAbSplit(abSplit!)) {
    say(
      `Note: the batch's split was ${formatAbSplit(existing.ab_split)}: the rows answered before keep the arm they had; only the rows run now follow the new one. ` +
        'A row whose arm changes starts afresh: answers a stopped run kept for it are not used (they stay paid for, under their arm).',
    );
  } else if (!abSplit && existing?.ab_split) {
    say(`Note: the batch's split (${formatAbSplit(existing.ab_split)}) ends here: a row this run answers goes to ${model ?? 'the model its task type routes to'}. The rows answered before keep their arms, and the report's A/B arms table holds those alone.`);
  }
}

/** The splits the batch's earlier runs ran under, one more when this run changes or drops the split: its rows answered before keep their arms. */
export function abSplitsBefore(existing: BatchMeta | null, abSplit: AbArm[] | undefined): Pick<BatchMeta, 'ab_splits_before'> {
  const before = existing?.ab_splits_before ?? [];
  const changed = existing?.ab_split !== undefined && (abSplit === undefined || formatAbSplit(abSplit) !== formatAbSplit(existing.ab_split));
  const splits = changed ? [...before, existing.ab_split!] : before;
  return splits.length > 0 ? { ab_splits_before: splits } : {};
}

/**
 * Said once the file is read: whether the judge answers rows too, and whom it falls back to.
 * `answering`: what the rows went to (answering-models.ts; `auto` for those routed), none for a
 * file without a valid row.
 */
export function sayJudgeAnswersToo(config: SwitchyardConfig, answering: ReadonlySet<string>, say: (line: string) => void): void {
  if (!config.judge || answering.size === 0) return;
  const judge = config.judge.model;
  const answerers = mayAnswer(config, [...answering]);
  const how = answering.has(judge) ? 'answers rows here too' : answerers.has(judge) ? 'may answer rows here too (a route or a fallback goes to it)' : null;
  if (how) say(`Note: the judge, ${judge}, ${how}: it scores its own answers (judges tend to favour them), and its judge calls count under it in the Models table (the Judge line shows them apart).`);
  // A judge that fails scores through its fallbacks: another judge, maybe one that answered the row.
  const fallbacks = [...mayAnswer(config, [judge])].filter((model) => model !== judge);
  if (fallbacks.length === 0) return;
  const answeringToo = fallbacks.filter((model) => answerers.has(model));
  const own = answeringToo.length === 0 ? '' : ` (${answeringToo.join(', ')} may answer rows here too, and would score its own answers)`;
  say(`Note: the judge, ${judge}, falls back to ${fallbacks.join(', ')} when it fails: the rows they score get another judge's scores${own}; the report counts them apart. For one judge throughout, give ${judge} no fallbacks in this run's config.`);
}

/** Said of the file's first row when it lacks the field the judge compares answers with. */
export function sayNoReferenceField(config: SwitchyardConfig, first: InputRow, say: (line: string) => void): void {
  const reference = config.judge?.reference_column;
  if (reference !== undefined && !(reference in first.metadata)) say(`Note: the first row has no "${reference}" field, so the judge scores it without a reference answer (judge.reference_column names the field to use).`);
}

/** Once the batch is saved: a resume keeps the rows that succeeded, and is told when it reads another file than the batch began with. */
export function sayResuming(batchId: string, existing: BatchMeta | null, inputPath: string, say: (line: string) => void): void {
  if (existing) say(`Resuming: rows that already succeeded are kept and not run again.`);
  if (existing && existing.input !== inputPath) {
    say(`Note: batch ${batchId} was started from ${existing.input}; this run reads ${inputPath}. Rows are matched by their place in the file: those that differ run again, the others keep their answers. A new --batch-id starts afresh.`);
  }
}
