import { z } from 'zod';
import { DEFAULT_TASK_TYPES } from '../routing/default-task-types.ts';
import { LOCK_TOO_SHORT, MIN_LOCK_MS } from '../queue/claim-lock.ts';
import { closestName, meantHint } from './closest-name.ts';
import { AUTO_ROUTE } from '../routing/pinned-model.ts';
import { BUDGET_TOO_LARGE, MAX_BUDGET_USD } from '../models/pricing.ts';

/** Everything a batch needs to know about its models, checked at the edge: a bad config is refused as it is loaded, every problem named, not met mid-batch. */

const positiveInt = z.number().int().positive();

/** What API keys look like (OpenAI's sk-..., Anthropic's sk-ant-..., OpenRouter's sk-or-..., Google's AIza...), pasted where a variable's name goes. */
const LOOKS_LIKE_A_KEY = /^(sk-|sk_|AIza|gsk_|xai-|pplx-|hf_)|^[A-Za-z0-9_-]{32,}$/;

/** `${VLLM_HOST}` or `$VLLM_HOST`, as a shell or docker compose would fill in; nothing here does. */
const ENV_REFERENCE = /\$\{[A-Za-z_][A-Za-z0-9_]*\}|\$[A-Z_][A-Z0-9_]*/;
const envReferenceText = (input: unknown) =>
  `${ENV_REFERENCE.exec(String(input))?.[0] ?? '$'} is not filled in: the config is read as written, with no environment variables (only api_key_env names one); write the URL itself, or fill the file in before the run (envsubst < switchyard.template.yaml > switchyard.yaml)`;

/** The longest delay setTimeout takes (2^31 - 1 ms); past it Node.js sets 1 ms instead, with a warning. */
export const MAX_TIMER_MS = 2_147_483_647;

const providerSchema = z.strictObject({
  // The SDK adds /chat/completions itself: a URL ending in it would 404 on every call.
  base_url: z
    .url({ protocol: /^https?$/, error: (issue) => (ENV_REFERENCE.test(String(issue.input)) ? envReferenceText(issue.input) : 'expected an http(s) URL such as http://127.0.0.1:8787/v1') })
    // `http://${HOST}:8000/v1` parses as a URL, and its calls would go to a host named "${host}".
    // (One that does not parse was said above, once.)
    .refine((url) => !(ENV_REFERENCE.test(url) && URL.canParse(url)), { error: (issue) => envReferenceText(issue.input) })
    .refine((url) => !/\/chat\/completions\/?$|\/completions\/?$/.test(url), { error: (issue) => `expected the API's root, e.g. ${String(issue.input).replace(/\/(chat\/)?completions\/?$/, '')}: the SDK adds /chat/completions itself` }),
  /** Name of the environment variable holding the key; the key itself never enters config. */
  api_key_env: z
    .string()
    .refine((name) => !LOOKS_LIKE_A_KEY.test(name) || /^[A-Z][A-Z0-9_]*$/.test(name), { error: 'this looks like an API key itself: put the key in an environment variable (export OPENAI_API_KEY=...) and its name here (api_key_env: OPENAI_API_KEY); a key in the config would travel with the batch to Redis', abort: true })
    .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'expected an environment variable name, e.g. OPENAI_API_KEY')
    .optional(),
  timeout_ms: positiveInt.max(MAX_TIMER_MS, { error: `at most ${MAX_TIMER_MS} (24.8 days), the longest timer Node.js sets: a longer one would fire at once, and every call would time out` }).default(60_000),
});

const priceSchema = z.strictObject({
  input_per_mtok: z.number().nonnegative(),
  output_per_mtok: z.number().nonnegative(),
});

const modelSchema = z.strictObject({
  provider: z.string().min(1),
  /** The name sent to the endpoint; defaults to the model's key. */
  upstream: z.string().min(1).optional(),
  /** USD per million tokens; without it a call's cost is null and a warning is logged. */
  price: priceSchema.optional(),
  context_window: positiveInt.optional(),
  max_output_tokens: positiveInt.optional(),
  /** Requests and tokens per minute, shared by every worker through Redis. */
  rpm: positiveInt.optional(),
  tpm: positiveInt.optional(),
  /**
   * How the provider counts tokens per minute: `requested` (prompt + max_tokens at admission, as
   * OpenAI does: unused tokens are not given back) or `usage` (prompt + the answer's tokens: a call
   * is booked at its prompt + the endpoint's running answer length and settled to what it used;
   * pacing.ts). `requested` by default: it never overshoots either kind of provider, while `usage`
   * paced against a provider that counts max_tokens draws 429s.
   */
  tpm_counts: z.enum(['usage', 'requested']).default('requested'),
  /** What to do when this model's limit would make a row wait: overrides `limits.on_limit`. */
  on_limit: z.enum(['wait', 'fallback']).optional(),
  /** Models to try next when a row pinned to this model (row `model`, --model) fails over. */
  fallbacks: z.array(z.string().min(1)).optional(),
  /**
   * Ask for the answer as a stream: each call records its time to first token, and the provider's
   * timeout_ms bounds the wait for the first token and for each next chunk, not the whole answer,
   * so a long answer from a slow model is not cut off.
   */
  stream: z.boolean().default(false),
  /**
   * An OpenAI reasoning model (o1, o3, o4-mini, gpt-5...): such models refuse `max_tokens` and any
   * temperature but their own, so its calls send the token limit as `max_completion_tokens`, and no
   * temperature (a row's, a task type's, an ensemble's, the judge's 0 all stay with other models).
   */
  reasoning: z.boolean().default(false),
});

const retrySchema = z
  .strictObject({
    /** Calls to one model for one row before the row fails (or falls back). */
    max_attempts: positiveInt.default(4),
    base_delay_ms: z.number().int().nonnegative().default(500),
    max_delay_ms: z.number().int().nonnegative().default(20_000),
  })
  .refine((retry) => retry.base_delay_ms <= retry.max_delay_ms, { path: ['base_delay_ms'], error: (issue) => `${(issue.input as { base_delay_ms: number }).base_delay_ms} is above max_delay_ms (${(issue.input as { max_delay_ms: number }).max_delay_ms}), which caps every backoff: lower it, or raise max_delay_ms` });

const queueSchema = z.strictObject({
  /** How long a worker's claim on a job lasts without renewal; a dead worker's rows re-run after it. */
  lock_ms: z.number().int().min(MIN_LOCK_MS, { error: LOCK_TOO_SHORT }).default(30_000),
  /** Rows per addBulk call. */
  enqueue_chunk: positiveInt.default(500),
  /**
   * How many rows `run` keeps queued ahead of the finished ones: the rest of the file waits on
   * disk, so Redis and the process stay small however long the batch (not with --detach).
   */
  max_pending: positiveInt.default(5000),
  /**
   * The most prompt text (MB, UTF-8) `run` keeps queued ahead, as rows of the batch's average
   * prompt size: 5,000 rows of 100 KB contracts put 500 MB in Redis. At least 16 rows whatever it says.
   */
  max_pending_mb: positiveInt.default(64),
});

const taskTypeSchema = z.strictObject({
  /** Whole words; a trailing * matches a word prefix ("strateg*" matches "strategy", "strategic"). */
  keywords: z.array(z.string().regex(/^\s*[^*\s][^*]*\*?\s*$/, 'expected a word or phrase, with an optional trailing * for a prefix')).default([]),
  /** Each distinct word of the prompt that matches one of the type's keywords adds this much to its score. */
  weight: z.number().positive().default(1),
  /** The score a prompt needs for this type to be a candidate; the highest candidate wins, ties go to the earlier type. */
  min_score: z.number().positive().default(1),
  /** A prompt at least this long is a candidate whatever its keywords (scored min_score). */
  min_chars: positiveInt.optional(),
});

export const routingSchema = z.strictObject({
  /** `rules`: keywords and length; `llm`: a cheap model labels the prompt, rules decide when it cannot. */
  classifier: z.enum(['rules', 'llm']).default('rules'),
  llm_classifier: z
    .strictObject({
      model: z.string().min(1),
      max_tokens: positiveInt.default(8),
    })
    .optional(),
  /** Task types in priority order (for ties). Replaces the built-in set when given. */
  task_types: z.record(z.string().min(1), taskTypeSchema).optional(),
  /** The type of a prompt no rule matches. */
  default_task_type: z.string().min(1).default('simple'),
  /** Task type -> ordered model chain: first choice, then fallbacks. A type without a route uses default_model. */
  routes: z.record(z.string().min(1), z.array(z.string().min(1)).min(1)).default({}),
  /** Task type -> the temperature its rows are sent with when they set none (e.g. creative: 1.0); others use `temperature`. */
  temperatures: z.record(z.string().min(1), z.number().min(0).max(2)).default({}),
});

const limitsSchema = z.strictObject({
  /** `wait`: a limited model makes rows wait for it; `fallback`: rows that would wait longer than max_wait_ms go to the next model. */
  on_limit: z.enum(['wait', 'fallback']).default('wait'),
  max_wait_ms: z.number().int().nonnegative().default(10_000),
  /** Waits up to this long happen inside the worker; longer ones park the job (delayed) so it holds no worker slot. */
  inline_wait_ms: z.number().int().nonnegative().default(200),
  /** Share of each rpm/tpm actually used, leaving room for clock skew and other clients. */
  headroom: z.number().min(0.5).max(1).default(0.98),
});

const breakerSchema = z.strictObject({
  /**
   * Consecutive failed calls that open a model's circuit: server_error (a 5xx or 409), timeout,
   * connection_error, model_not_found and endpoint_not_found (a 404 or a redirect), empty_response
   * and bad_response (a 2xx that is no chat completion); see health() in execution/row-runner.ts.
   */
  failure_threshold: positiveInt.default(5),
  /** How long an open circuit skips the model before one probe call is let through. */
  cooldown_ms: positiveInt.default(30_000),
  /**
   * How long a row may wait, in all, when its chain ended on open circuits: it is parked until the
   * next probe and runs its chain again. 0 (the default): it fails at once, which says quickly that
   * a provider is down. For unattended runs, some minutes: a provider's outage then pauses the
   * batch instead of failing the rows that came while it lasted.
   */
  max_wait_ms: z.number().int().nonnegative().default(0),
});

const budgetSchema = z.strictObject({
  /** Cap per batch in USD (`--budget` overrides). */
  batch_usd: z.number().positive().max(MAX_BUDGET_USD, { error: BUDGET_TOO_LARGE }).optional(),
  /** Cap per calendar month (UTC) across all batches sharing this Redis, in USD. */
  monthly_usd: z.number().positive().max(MAX_BUDGET_USD, { error: BUDGET_TOO_LARGE }).optional(),
});

/** Member answers an ensemble needs before it synthesizes, unless it says otherwise. */
export const DEFAULT_MIN_ANSWERS = 2;

/**
 * An ensemble: its members answer a row one beside the other, then the synthesizer writes one answer
 * from theirs. A row (its `model` column) or a batch (`--model`) names it like a model.
 */
const ensembleSchema = z.strictObject({
  members: z.array(z.string().min(1)).min(2),
  synthesizer: z.string().min(1),
  /** Member answers needed to synthesize; with fewer the row fails (ensemble_failed). Default: DEFAULT_MIN_ANSWERS. */
  min_answers: positiveInt.optional(),
  /** The synthesizer's instructions, with {question} and {answers} where those go (a default is built in). */
  synthesis_prompt: z.string().min(1).optional(),
  /** The members' and the synthesizer's temperature for rows that set none (default: the row's task type's in routing.temperatures, else the config's `temperature`). */
  temperature: z.number().min(0).max(2).optional(),
  /** The synthesis answer's max_tokens (default: the row's, else the config's): a merged answer may need more room than each member's. */
  synthesis_max_tokens: positiveInt.optional(),
});

/**
 * A judge: a model that scores every succeeded answer from 1 to 10, for offline evaluations and A/B
 * comparisons (the report gives each model's and ensemble's mean score).
 */
export const judgeSchema = z.strictObject({
  model: z.string().min(1),
  /** What a good answer does for these prompts, added to the judge's instructions. */
  criteria: z.string().min(1).optional(),
  /** The input column (CSV) or field (JSONL, or a key of its metadata) holding a row's reference answer. */
  reference_column: z.string().min(1).default('expected'),
  /**
   * For the judge's reply: a score and a sentence or two. Unset, JUDGE_MAX_TOKENS (judgeMaxTokens),
   * kept apart from a value set so that only a value set is warned of above the model's max_output_tokens.
   */
  max_tokens: positiveInt.optional(),
});

/** The judge's max_tokens when the config sets none; capped, as any call's, at the judge model's max_output_tokens (model-request.ts). */
const JUDGE_MAX_TOKENS = 200;

export function judgeMaxTokens(judge: Pick<JudgeConfig, 'max_tokens'>): number {
  return judge.max_tokens ?? JUDGE_MAX_TOKENS;
}

/** Answers kept in Redis and given again for the same request (execution/answer-cache.ts); present: on. */
const cacheSchema = z.strictObject({
  /** How long an answer is kept, and the oldest one a batch takes. At most 10 years: Redis refuses longer expiries. */
  ttl_hours: z.number().positive().max(87_600).default(168),
});

const reportSchema = z.strictObject({
  /** The report compares the batch's cost with what every answer would have cost on this model. */
  baseline_model: z.string().min(1).optional(),
});

export const configSchema = z
  .strictObject({
    providers: z.record(z.string().min(1), providerSchema),
    models: z.record(z.string().min(1), modelSchema),
    default_model: z.string().min(1),
    concurrency: positiveInt.default(64),
    max_tokens: positiveInt.default(1024).describe('max_tokens for rows that set none'),
    temperature: z.number().min(0).max(2).default(0.7),
    retry: retrySchema.default(retrySchema.parse({})),
    queue: queueSchema.default(queueSchema.parse({})),
    routing: routingSchema.optional(),
    limits: limitsSchema.default(limitsSchema.parse({})),
    breaker: breakerSchema.default(breakerSchema.parse({})),
    budget: budgetSchema.default({}),
    report: reportSchema.default({}),
    ensembles: z.record(z.string().min(1), ensembleSchema).default({}),
    judge: judgeSchema.optional(),
    cache: cacheSchema.optional(),
  })
  .superRefine((config, ctx) => {
    // `--route auto` and the `--ab` arm `auto` mean "route by task type": a model of that name could not be named there.
    for (const [key, names] of [['models', Object.keys(config.models)], ['ensembles', Object.keys(config.ensembles)]] as const) {
      if (names.includes(AUTO_ROUTE)) ctx.addIssue({ code: 'custom', path: [key, AUTO_ROUTE], message: `"${AUTO_ROUTE}" is the word --route and --ab use for routing by task type: give it another name${key === 'models' ? ` (its upstream can stay "${AUTO_ROUTE}")` : ''}` });
    }
    for (const [name, model] of Object.entries(config.models)) {
      if (model.max_output_tokens !== undefined && model.context_window !== undefined && model.max_output_tokens >= model.context_window) {
        ctx.addIssue({ code: 'custom', path: ['models', name, 'max_output_tokens'], message: `${model.max_output_tokens} leaves no room for a prompt in its context_window of ${model.context_window}: every row would skip the model` });
      }
      if (!(model.provider in config.providers)) {
        ctx.addIssue({
          code: 'custom',
          path: ['models', name, 'provider'],
          message: `unknown provider "${model.provider}"; known providers: ${Object.keys(config.providers).join(', ')}`,
        });
      }
    }
    const models = Object.keys(config.models);
    const modelList = models.length > 0 ? `models: ${models.join(', ')}` : 'no model is defined under models';
    const checkModel = (name: string, path: (string | number)[]) => {
      if (name in config.models) return;
      // An ensemble answers a row as a whole (a row's model, --model, --ab): it is no link of a chain.
      const asAnswer = path[0] === 'judge' || path[0] === 'report' || path[0] === 'ensembles' ? '' : " (name the ensemble as a row's model, or with --model or --ab)";
      const message = Object.hasOwn(config.ensembles, name) ? `"${name}" is an ensemble, and only a model can go here${asAnswer}` : `unknown model "${name}"${meantHint(name, models)}; ${modelList}`;
      ctx.addIssue({ code: 'custom', path, message });
    };
    for (const [name, model] of Object.entries(config.models)) {
      model.fallbacks?.forEach((f, i) => (f === name ? ctx.addIssue({ code: 'custom', path: ['models', name, 'fallbacks', i], message: `"${name}" falls back to itself: a fallback is another model (retries of the same one are retry.max_attempts)` }) : checkModel(f, ['models', name, 'fallbacks', i])));
      // The answer's room comes out of the context window: with none left for a prompt, every row would skip the model.
      const outputRoom = Math.min(config.max_tokens, model.max_output_tokens ?? config.max_tokens);
      if (model.context_window !== undefined && model.max_output_tokens === undefined && outputRoom >= model.context_window) {
        ctx.addIssue({ code: 'custom', path: ['models', name, 'context_window'], message: `${model.context_window} leaves no room for a prompt beside max_tokens (${config.max_tokens}): every row would skip the model; raise it, or lower max_tokens (or set models.${name}.max_output_tokens)` });
      }
    }
    for (const [type, chain] of Object.entries(config.routing?.routes ?? {})) {
      chain.forEach((m, i) => (chain.indexOf(m) < i ? ctx.addIssue({ code: 'custom', path: ['routing', 'routes', type, i], message: `"${m}" is in this route already: a model is tried once in a route (its retries are retry.max_attempts)` }) : checkModel(m, ['routing', 'routes', type, i])));
    }
    for (const [type, rule] of Object.entries(config.routing?.task_types ?? {})) {
      if (rule.keywords.length === 0 && rule.min_chars === undefined) ctx.addIssue({ code: 'custom', path: ['routing', 'task_types', type], message: 'no prompt can get this type: give it keywords, or min_chars' });
    }
    if (config.routing) checkTaskTypeNames(config.routing, ctx);
    if (config.routing?.llm_classifier) checkModel(config.routing.llm_classifier.model, ['routing', 'llm_classifier', 'model']);
    if (config.routing?.classifier === 'llm' && !config.routing.llm_classifier) {
      ctx.addIssue({ code: 'custom', path: ['routing', 'llm_classifier'], message: 'classifier "llm" needs llm_classifier: { model: <a cheap model> }' });
    }
    if (config.report.baseline_model) checkModel(config.report.baseline_model, ['report', 'baseline_model']);
    if (config.judge) checkModel(config.judge.model, ['judge', 'model']);
    for (const [name, ensemble] of Object.entries(config.ensembles)) {
      if (name in config.models) ctx.addIssue({ code: 'custom', path: ['ensembles', name], message: `"${name}" is a model's name too: give the ensemble another one` });
      ensemble.members.forEach((m, i) => checkModel(m, ['ensembles', name, 'members', i]));
      checkModel(ensemble.synthesizer, ['ensembles', name, 'synthesizer']);
      const minAnswers = ensemble.min_answers ?? DEFAULT_MIN_ANSWERS;
      if (minAnswers > ensemble.members.length) {
        const given = ensemble.min_answers === undefined ? `${minAnswers} (the default)` : String(minAnswers);
        ctx.addIssue({ code: 'custom', path: ['ensembles', name, 'min_answers'], message: `${given} is more than its ${ensemble.members.length} member${ensemble.members.length === 1 ? '' : 's'}: give it more members, or a lower min_answers` });
      }
      // Checked now, as max_tokens is: found at a row's synthesis, it would come after the members were paid for.
      const synthesizer = config.models[ensemble.synthesizer];
      const synthesisRoom = Math.min(ensemble.synthesis_max_tokens ?? 0, synthesizer?.max_output_tokens ?? Number.POSITIVE_INFINITY);
      if (synthesizer?.context_window !== undefined && synthesisRoom >= synthesizer.context_window) {
        ctx.addIssue({ code: 'custom', path: ['ensembles', name, 'synthesis_max_tokens'], message: `${ensemble.synthesis_max_tokens} leaves no room for the synthesis prompt in its synthesizer's context_window of ${synthesizer.context_window} (models.${ensemble.synthesizer}): every row would pay its members and then fail` });
      }
      const prompt = ensemble.synthesis_prompt;
      if (prompt !== undefined && !(prompt.includes('{question}') && prompt.includes('{answers}'))) {
        ctx.addIssue({ code: 'custom', path: ['ensembles', name, 'synthesis_prompt'], message: 'expected {question} and {answers} in it, where the row\'s prompt and the members\' answers go' });
      }
    }
    if (!(config.default_model in config.models)) checkModel(config.default_model, ['default_model']);
  });

export type SwitchyardConfig = z.infer<typeof configSchema>;

/**
 * A route for a task type that no rule gives, or a default type one edit away from a real one, is
 * a typo that would send rows silently to default_model: named here with the type meant.
 */
function checkTaskTypeNames(routing: z.infer<typeof routingSchema>, ctx: z.core.$RefinementCtx): void {
  const ruled = Object.keys(routing.task_types ?? DEFAULT_TASK_TYPES);
  const fallback = routing.default_task_type;
  const routed = Object.keys(routing.routes);
  const tempered = Object.keys(routing.temperatures);
  // "simple" is the default's default; another name no rule gives and no route takes may be a typo of one that is.
  const fallbackMeant = fallback === 'simple' || ruled.includes(fallback) || routed.includes(fallback) ? null : closestName(fallback, [...ruled, ...routed, 'simple']);
  if (fallbackMeant) ctx.addIssue({ code: 'custom', path: ['routing', 'default_task_type'], message: `"${fallback}" is no task type and no route names it (did you mean "${fallbackMeant}"?)` });
  const types = [...ruled, ...(ruled.includes(fallback) ? [] : [fallback])];
  const keyed: ReadonlyArray<readonly ['routes' | 'temperatures', string]> = [...routed.map((type) => ['routes', type] as const), ...tempered.map((type) => ['temperatures', type] as const)];
  for (const [key, type] of keyed) {
    if (types.includes(type) || type === fallbackMeant) continue;
    const meant = closestName(type, types);
    const hint = meant ? ` (did you mean "${meant}"?)` : '';
    const source = routing.task_types ? 'routing.task_types' : 'the built-in ones';
    ctx.addIssue({ code: 'custom', path: ['routing', key, type], message: `no prompt gets task type "${type}"${hint}: the task types are ${types.join(', ')} (${source}, and default_task_type)` });
  }
}

/** What a row's `model` or `--model` may name: a model or an ensemble. */
export function answerableNames(config: SwitchyardConfig): string[] {
  return [...Object.keys(config.models), ...Object.keys(config.ensembles)];
}
export type ModelConfig = z.infer<typeof modelSchema>;
export type ProviderConfig = z.infer<typeof providerSchema>;
export type RetryConfig = z.infer<typeof retrySchema>;
export type RoutingConfig = z.infer<typeof routingSchema>;
export type TaskTypeRule = z.infer<typeof taskTypeSchema>;
export type BreakerConfig = z.infer<typeof breakerSchema>;
export type EnsembleConfig = z.infer<typeof ensembleSchema>;
export type JudgeConfig = z.infer<typeof judgeSchema>;
