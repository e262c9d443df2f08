import { parseConfig } from './load.ts';
import type { SwitchyardConfig } from './schema.ts';

/**
 * The built-in configuration: the simulator stands in for three providers' models, priced and
 * routed as the design source lists them, so a batch runs end to end with no API key.
 */
export function builtInConfig(simulatorBaseUrl: string): SwitchyardConfig {
  return parseConfig(
    {
      providers: { sim: { base_url: simulatorBaseUrl, timeout_ms: 30_000 } },
      models: {
        'deepseek-v4-flash': {
          provider: 'sim',
          price: { input_per_mtok: 0.14, output_per_mtok: 0.28 },
          context_window: 128_000,
          max_output_tokens: 8192,
        },
        'deepseek-v4-pro': {
          provider: 'sim',
          price: { input_per_mtok: 0.435, output_per_mtok: 0.87 },
          context_window: 128_000,
          max_output_tokens: 8192,
        },
        'qwen2.5-72b-instruct': {
          provider: 'sim',
          price: { input_per_mtok: 0.8, output_per_mtok: 1.6 },
          context_window: 32_000,
          max_output_tokens: 8192,
        },
        'glm-4': {
          provider: 'sim',
          price: { input_per_mtok: 0.5, output_per_mtok: 1.0 },
          context_window: 128_000,
          max_output_tokens: 4096,
        },
      },
      default_model: 'deepseek-v4-flash',
      // The design source's routing table, each route with a fallback on another provider's model.
      routing: {
        routes: {
          simple: ['deepseek-v4-flash', 'glm-4'],
          moderate: ['deepseek-v4-flash', 'glm-4'],
          coding: ['deepseek-v4-flash', 'glm-4'],
          complex: ['deepseek-v4-pro', 'qwen2.5-72b-instruct'],
          creative: ['qwen2.5-72b-instruct', 'deepseek-v4-flash'],
        },
      },
      report: { baseline_model: 'deepseek-v4-pro' },
      // `--model council`: three cheaper models answer, the strong one writes the answer from theirs.
      ensembles: { council: { members: ['deepseek-v4-flash', 'qwen2.5-72b-instruct', 'glm-4'], synthesizer: 'deepseek-v4-pro' } },
    },
    'built-in defaults',
  );
}
