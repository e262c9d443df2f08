import { z } from 'zod';

/** Everything a batch needs to know about its models, checked at the edge (DESIGN principle 7). */

const positiveInt = z.number().int().positive();

export const providerSchema = z.strictObject({
  base_url: z.url({ message: 'expected an http(s) URL such as http://127.0.0.1:8787/v1' }),
  /** Name of the environment variable holding the key; the key itself never enters config. */
  api_key_env: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'expected an environment variable name').optional(),
  timeout_ms: positiveInt.default(60_000),
});

export const priceSchema = z.strictObject({
  input_per_mtok: z.number().nonnegative(),
  output_per_mtok: z.number().nonnegative(),
});

export const modelSchema = z.strictObject({
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
});

export const retrySchema = z.strictObject({
  /** Calls to one model for one row before the row fails (or falls back). */
  max_attempts: positiveInt.default(4),
  base_delay_ms: z.number().int().nonnegative().default(500),
  max_delay_ms: z.number().int().nonnegative().default(20_000),
});

export const queueSchema = z.strictObject({
  /** How long a worker's claim on a job lasts without renewal; a dead worker's rows re-run after it. */
  lock_ms: positiveInt.default(30_000),
  /** Rows per addBulk call. */
  enqueue_chunk: positiveInt.default(500),
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
  })
  .superRefine((config, ctx) => {
    for (const [name, model] of Object.entries(config.models)) {
      if (!(model.provider in config.providers)) {
        ctx.addIssue({
          code: 'custom',
          path: ['models', name, 'provider'],
          message: `unknown provider "${model.provider}"; known providers: ${Object.keys(config.providers).join(', ')}`,
        });
      }
    }
    if (!(config.default_model in config.models)) {
      ctx.addIssue({
        code: 'custom',
        path: ['default_model'],
        message: `"${config.default_model}" is not one of the models: ${Object.keys(config.models).join(', ')}`,
      });
    }
  });

export type SwitchyardConfig = z.infer<typeof configSchema>;
export type ModelConfig = z.infer<typeof modelSchema>;
export type ProviderConfig = z.infer<typeof providerSchema>;
export type RetryConfig = z.infer<typeof retrySchema>;
