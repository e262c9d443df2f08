import type { SwitchyardConfig } from '../config/schema.ts';
import { counted } from '../figure-text.ts';

/**
 * Rows whose own max_tokens is above their model's max_output_tokens, which caps it at the call
 * (model-request.ts) with no word in the results: counted per model, and said in one note, once per
 * model (QA: a row's max_tokens of 5000 went out as 30, unsaid, and its answer stopped there).
 */
export class CappedMaxTokens {
  readonly #models: SwitchyardConfig['models'];
  readonly #byModel = new Map<string, { cap: number; rows: number; most: number }>();

  constructor(config: Pick<SwitchyardConfig, 'models'>) {
    this.#models = config.models;
  }

  /** A row going to `model` (undefined: known only once it is routed) with its own `maxTokens` (undefined: the config's). */
  add(model: string | undefined, maxTokens: number | undefined): void {
    if (model === undefined || maxTokens === undefined || !Object.hasOwn(this.#models, model)) return;
    const cap = this.#models[model]!.max_output_tokens;
    if (cap === undefined || maxTokens <= cap) return;
    const entry = this.#byModel.get(model) ?? { cap, rows: 0, most: 0 };
    entry.rows += 1;
    entry.most = Math.max(entry.most, maxTokens);
    this.#byModel.set(model, entry);
  }

  /** The note, or null when no row asked for more than its model's cap. */
  text(): string | null {
    const entries = [...this.#byModel.entries()];
    if (entries.length === 0) return null;
    const models = entries.map(([model, { cap, rows, most }]) => `${model} ${cap} (${counted(rows, 'row')} asking up to ${most})`).join(', ');
    const raise = entries.length === 1 ? `models.${entries[0]![0]}.max_output_tokens if ${entries[0]![0]} can write more` : 'models.<name>.max_output_tokens where the model can write more';
    return `Note: rows ask for a max_tokens above their model's max_output_tokens, which caps it: ${models}. Their answers stop there at most; raise ${raise}.`;
  }
}
