import { z } from 'zod';
import { describeIssues } from '../config/load.ts';
import { UsageError } from '../errors.ts';

/** How the built-in simulator behaves; every field has a default, so `{}` is a valid input. */

const nonNegative = z.number().nonnegative();
const probability = z.number().min(0).max(1);
const positiveInt = z.number().int().positive();

/**
 * What a request costs against tpm at admission: `requested` = prompt tokens + the max_tokens it
 * asked for (OpenAI-like: the reservation, whatever the answer uses); `usage` = prompt tokens + the
 * answer's actual completion tokens (providers that meter usage). Either way a request without
 * max_tokens counts its answer's tokens. Unset means `requested`.
 */
const tpmCountsSchema = z.enum(['requested', 'usage']);
export type TpmCounts = z.infer<typeof tpmCountsSchema>;

/** Per-model settings; anything unset falls back to the top-level value. */
export const simModelSchema = z.strictObject({
  /** Requests per minute, over a rolling 60 s window (see rate-limit.ts). */
  rpm: positiveInt.optional(),
  /** Tokens per minute: prompt tokens + max_tokens requested (or the answer's tokens when none); see tpm_counts. */
  tpm: positiveInt.optional(),
  tpm_counts: tpmCountsSchema.optional(),
  latency_ms: nonNegative.optional(),
  latency_jitter_ms: nonNegative.optional(),
  tokens_per_second: nonNegative.optional(),
  failure_rate: probability.optional(),
  /** Answer every call to this model with this HTTP status (e.g. 400, 500, 503) and an OpenAI-style error. */
  fail_status: z.number().int().min(400).max(599).optional(),
  /** Prompt tokens + max_tokens above this get a 400 `context_length_exceeded`. */
  context_window: positiveInt.optional(),
  /** Answer without a `usage` object, as some gateways and local servers do. */
  omit_usage: z.boolean().optional(),
});

const outputTokensSchema = z
  .strictObject({ min: positiveInt, max: positiveInt })
  .refine((range) => range.min <= range.max, { message: 'min must not exceed max' });

export const simOptionsSchema = z.strictObject({
  /** Mean delay before an answer (and before a random 500), in ms; 4xx and 429 answers are immediate. */
  latency_ms: nonNegative.default(0),
  /** The delay is uniform in latency_ms ± latency_jitter_ms (never below 0). */
  latency_jitter_ms: nonNegative.default(0),
  /**
   * How fast answers are written after the latency (0: at once, the default). A streamed answer's
   * first token comes after the latency and each next word after 1/tokens_per_second s; a whole
   * answer comes after the latency plus its tokens' writing time.
   */
  tokens_per_second: nonNegative.default(0),
  /** Probability that an accepted call answers 500. */
  failure_rate: probability.default(0),
  /** Seeds the PRNG behind failures and jitter; answers do not depend on it. */
  seed: z.number().int().default(1),
  /** When set, requests need `Authorization: Bearer <api_key>` or get a 401. */
  api_key: z.string().min(1).optional(),
  /** Default per-model limits for every model that sets none of its own. */
  rpm: positiveInt.optional(),
  tpm: positiveInt.optional(),
  /** How tpm counts a request (see TpmCounts); a model's own setting wins. Default `requested`. */
  tpm_counts: tpmCountsSchema.optional(),
  models: z.record(z.string().min(1), simModelSchema).default({}),
  /** When true, a model not in `models` gets a 404 `model_not_found`; by default any name is served. */
  strict_models: z.boolean().default(false),
  /** Answer length range in tokens, picked per prompt by a hash (so the same prompt has the same length). */
  output_tokens: outputTokensSchema.default({ min: 20, max: 120 }),
});

export type SimOptions = z.infer<typeof simOptionsSchema>;
/** What callers pass: every field optional. */
export type SimOptionsInput = z.input<typeof simOptionsSchema>;

/** The settings in force for one model name: its overrides over the top-level values. */
export interface EffectiveModel {
  rpm: number | undefined;
  tpm: number | undefined;
  latency_ms: number;
  latency_jitter_ms: number;
  tokens_per_second: number;
  failure_rate: number;
  fail_status: number | undefined;
  context_window: number | undefined;
  omit_usage: boolean;
}

export function effectiveModel(options: SimOptions, model: string): EffectiveModel {
  const own = Object.hasOwn(options.models, model) ? options.models[model] : undefined;
  return {
    rpm: own?.rpm ?? options.rpm,
    tpm: own?.tpm ?? options.tpm,
    latency_ms: own?.latency_ms ?? options.latency_ms,
    latency_jitter_ms: own?.latency_jitter_ms ?? options.latency_jitter_ms,
    tokens_per_second: own?.tokens_per_second ?? options.tokens_per_second,
    failure_rate: own?.failure_rate ?? options.failure_rate,
    fail_status: own?.fail_status,
    context_window: own?.context_window,
    omit_usage: own?.omit_usage ?? false,
  };
}

/** How tpm counts a request for `model`: its own setting, else the top-level one, else `requested`. */
export function tpmCounting(options: SimOptions, model: string): TpmCounts {
  const own = Object.hasOwn(options.models, model) ? options.models[model] : undefined;
  return own?.tpm_counts ?? options.tpm_counts ?? 'requested';
}

/** Validates simulator options; a mistake names the key path, as config errors do. */
export function parseSimOptions(input: unknown, source = 'simulator options'): SimOptions {
  const result = simOptionsSchema.safeParse(input);
  if (!result.success) throw new UsageError(`Invalid ${source}:\n${describeIssues(result.error)}`);
  return result.data;
}
