import type { ModelConfig, SwitchyardConfig } from '../config/schema.ts';
import type { ChatMessage } from '../input/row.ts';
import { estimatePromptTokens, maxMessageTokens, maxParamsTokens, requestFieldsText, type PromptCount } from './token-count.ts';
import { armTarget } from './ab-split.ts';

/**
 * Which models a row may go to, in order: the row's chain.
 *
 * - A row that names its own model, else a batch pinned with `--model`/`--route <model>` (the row's
 *   own model wins, as it always has): `[model, ...models[model].fallbacks]`.
 * - Otherwise the row's task type picks `routing.routes[taskType]`, or, when that type has no route
 *   (or there is no routing), `[default_model, ...models[default_model].fallbacks]`.
 *
 * Then every model whose `context_window` cannot hold the prompt plus its answer is dropped (and
 * listed in `skipped`): prompt tokens + min(max_tokens, the model's max_output_tokens). The prompt
 * is the messages and the request fields sent beside them (`params`: a response_format's JSON
 * schema is read, and billed, as prompt), counted alike. When every
 * model is dropped the chain is empty and the caller fails the row with `noModelMessage(plan)`.
 *
 * Counting tokens costs CPU (and loading the tokenizer, once), so it is done only when needed: not
 * when no model in the chain has a context_window, and not when even an upper bound of the prompt's
 * tokens (its UTF-8 bytes) fits every window. `promptTokens` is then a chars/4 estimate and
 * `promptTokensCounted` is false.
 */

export interface RouteInput {
  messages: readonly ChatMessage[];
  /** The request fields sent beside the messages (the row's `params`). */
  params?: Readonly<Record<string, unknown>> | undefined;
  /** The row's own `model` field. */
  rowModel?: string | undefined;
  /** rowModel was put to the row by --compare, not named by its record. */
  compared?: boolean | undefined;
  /** The arm an A/B split gave the row (it names no model of its own): a model, an ensemble or `auto` (routed). */
  abArm?: string | undefined;
  /** A model the whole batch is pinned to (`--model`, `--route <model>`). */
  pinnedModel?: string | undefined;
  /** The max_tokens the call will request. */
  maxTokens: number;
  /** What sets it, as the advice of noModelMessage names it: "the row's max_tokens", "judge.max_tokens"... (maxTokensOfRow). */
  maxTokensFrom: string;
  taskType: string;
  /** Why the row got its task type (the classifier's reason). */
  routeReason: string;
}

export interface SkippedModel {
  model: string;
  reason: string;
  /** Where it stood in the route: how many models of `chain` come before it. */
  at?: number;
  /** Its context_window, when that is why it was skipped. */
  contextWindow?: number;
}

export interface RoutePlan {
  taskType: string;
  /** The classifier's reason, or why the chain was pinned (`row model "x"`, `pinned model "x"`). */
  routeReason: string;
  /** Models to try in order; empty when none can take the prompt. */
  chain: string[];
  skipped: SkippedModel[];
  promptTokens: number;
  /** True when promptTokens came from the tokenizer, false when it is the chars/4 estimate. */
  promptTokensCounted: boolean;
  /** The input's maxTokensFrom (absent from a plan saved before it was kept). */
  maxTokensFrom?: string;
  /** The request fields sent beside the messages, by name, and their tokens, part of promptTokens; absent without any. */
  fields?: { names: string[]; tokens: number };
  /**
   * The config key that lists the chain's models, for advice to add one (`models.small.fallbacks`,
   * `routing.routes.complex`): the user configured fallbacks or a route, not a "chain". Absent from a
   * plan saved before it was kept.
   */
  chainFrom?: string;
}

/** Counts a request's prompt: its messages, and the JSON of the request fields beside them ("" for none), apart. */
export type CountTokens = (messages: readonly ChatMessage[], fieldsText: string) => PromptCount;
/** A count made off the event loop (token-count-thread.ts). */
export type CountTokensLater = (messages: readonly ChatMessage[], fieldsText: string) => Promise<PromptCount>;

/** A row's answer's max_tokens (its own, else the config's), and which of them it is. */
export function maxTokensOfRow(row: { max_tokens?: number | undefined }, config: Pick<SwitchyardConfig, 'max_tokens'>): { maxTokens: number; maxTokensFrom: string } {
  return row.max_tokens !== undefined ? { maxTokens: row.max_tokens, maxTokensFrom: "the row's max_tokens" } : { maxTokens: config.max_tokens, maxTokensFrom: "the config's max_tokens" };
}

function unique(models: readonly string[]): string[] {
  return [...new Set(models)];
}

function candidateChain(input: RouteInput, config: SwitchyardConfig): { models: string[]; reason: string; from: string } {
  const pinned = input.rowModel ?? (input.abArm === undefined ? input.pinnedModel : armTarget(input.abArm));
  if (pinned !== undefined) {
    const reason = input.rowModel !== undefined ? `${input.compared ? 'compared' : 'row'} model "${pinned}"` : input.abArm !== undefined ? `A/B arm "${pinned}"` : `pinned model "${pinned}"`;
    return { models: unique([pinned, ...(config.models[pinned]?.fallbacks ?? [])]), reason, from: `models.${pinned}.fallbacks` };
  }
  const route = config.routing?.routes[input.taskType];
  const reason = input.abArm === undefined ? input.routeReason : `A/B arm "${input.abArm}": ${input.routeReason}`;
  if (route) return { models: unique(route), reason, from: `routing.routes.${input.taskType}` };
  return { models: unique([config.default_model, ...(config.models[config.default_model]?.fallbacks ?? [])]), reason, from: `models.${config.default_model}.fallbacks` };
}

/** Tokens a call reserves for its answer on this model. */
function outputTokens(model: ModelConfig, maxTokens: number): number {
  return Math.min(maxTokens, model.max_output_tokens ?? maxTokens);
}

function fitsAll(models: readonly ModelConfig[], promptTokens: number, maxTokens: number): boolean {
  return models.every((model) => model.context_window === undefined || promptTokens + outputTokens(model, maxTokens) <= model.context_window);
}

type CandidateChain = ReturnType<typeof candidateChain>;

/**
 * Whether the prompt must be counted to route it: when its chain has a model with a context window
 * that the prompt's UTF-8 bytes (a bound its tokens never exceed), fields included, plus the answer do not fit.
 */
function needsCount({ models }: CandidateChain, input: RouteInput, config: SwitchyardConfig): boolean {
  const windowed = models.map((name) => config.models[name]).filter((model): model is ModelConfig => model?.context_window !== undefined);
  return windowed.length > 0 && !fitsAll(windowed, maxMessageTokens(input.messages) + maxParamsTokens(input.params), input.maxTokens);
}

export function planRoute(input: RouteInput, config: SwitchyardConfig, countTokens: CountTokens): RoutePlan {
  const candidates = candidateChain(input, config);
  return planWithCount(input, config, candidates, needsCount(candidates, input, config) ? countTokens(input.messages, requestFieldsText(input.params)) : null);
}

/** planRoute for processes with calls in flight: a count it needs is made off the event loop, and waited for. */
export async function planRouteCountingLater(input: RouteInput, config: SwitchyardConfig, countTokens: CountTokensLater): Promise<RoutePlan> {
  const candidates = candidateChain(input, config);
  return planWithCount(input, config, candidates, needsCount(candidates, input, config) ? await countTokens(input.messages, requestFieldsText(input.params)) : null);
}

/** The plan, given the prompt's count when needsCount said it is needed (else null: the prompt is estimated). */
function planWithCount(input: RouteInput, config: SwitchyardConfig, { models, reason, from }: CandidateChain, counted: PromptCount | null): RoutePlan {
  const count = counted ?? estimatePromptTokens(input.messages, input.params);
  const promptTokens = count.messages + count.fields;
  const fields = input.params !== undefined && count.fields > 0 ? { names: Object.keys(input.params), tokens: count.fields } : undefined;
  const promptText = fields ? `${promptTokens} prompt (${fields.tokens} of them ${fieldsText(fields.names)})` : `${promptTokens} prompt`;

  const chain: string[] = [];
  const skipped: SkippedModel[] = [];
  for (const name of models) {
    const model = config.models[name];
    if (!model) {
      skipped.push({ model: name, reason: 'not a configured model', at: chain.length });
      continue;
    }
    const output = outputTokens(model, input.maxTokens);
    if (counted !== null && model.context_window !== undefined && promptTokens + output > model.context_window) {
      skipped.push({ model: name, reason: `context window ${model.context_window} < ${promptText} + ${output} output tokens`, at: chain.length, contextWindow: model.context_window });
    } else {
      chain.push(name);
    }
  }
  return { taskType: input.taskType, routeReason: reason, chain, skipped, promptTokens, promptTokensCounted: counted !== null, maxTokensFrom: input.maxTokensFrom, ...(fields && { fields }), chainFrom: from };
}

/** "its response_format", "its seed and response_format". */
function fieldsText(names: readonly string[]): string {
  return `its ${names.length <= 1 ? names.join('') : `${names.slice(0, -1).join(', ')} and ${names.at(-1)}`}`;
}

/** What to add a model to: the config key the user wrote the chain in (a plan saved without it: "the chain"). */
function addLargerModel(plan: Pick<RoutePlan, 'chainFrom'>): string {
  return `add a model with a larger context window to ${plan.chainFrom ?? 'the chain'}`;
}

/**
 * The row error for an empty chain: every model tried and why it could not take the prompt, then
 * what to change. Where the prompt alone fits a window, the room asked for the answer is what does
 * not (QA: a 9-token prompt with max_tokens 9000 was said to be what no model could take).
 */
export function noModelMessage(plan: RoutePlan): string {
  const why = plan.skipped.map((skip) => `${skip.model}: ${skip.reason}`).join('; ') || 'the chain is empty';
  // The fields sent beside the messages are named: a prompt of a few words is not what is too long (a 50 KB schema is).
  const prompt = plan.fields ? `${plan.promptTokens} tokens, ${plan.fields.tokens} of them ${fieldsText(plan.fields.names)}` : `${plan.promptTokens} tokens`;
  const tooSmall = plan.skipped.flatMap((skip) => (skip.contextWindow === undefined ? [] : [{ model: skip.model, room: skip.contextWindow - plan.promptTokens }]));
  if (tooSmall.length === 0) return `no model can take this prompt (${prompt}): ${why}`;
  // The model with the most room beside the prompt: the least change lets the call go there.
  const roomiest = tooSmall.reduce((best, model) => (model.room > best.room ? model : best));
  if (roomiest.room <= 0) {
    const windows = tooSmall.length === 1 ? 'that context window' : 'any of these context windows';
    const shorten = plan.fields ? `shorten it or ${fieldsText(plan.fields.names)}` : 'shorten it';
    return `no model can take this prompt (${prompt}): ${why}. The prompt alone leaves no room for an answer in ${windows}: ${shorten}, or ${addLargerModel(plan)}`;
  }
  const from = plan.maxTokensFrom ?? 'max_tokens';
  return (
    `no model has room for this prompt (${prompt}) and its answer: ${why}. ` +
    `The prompt fits ${roomiest.model}'s context window, the answer's max_tokens does not: set ${from} (or models.${roomiest.model}.max_output_tokens) to ${roomiest.room} or less, or ${addLargerModel(plan)}`
  );
}
