import { meantHint } from '../config/closest-name.ts';
import { listedModels, notAmongModels } from '../config/unknown-model-text.ts';
import { UsageError } from '../errors.ts';

/** The word for routing each row by its task type: `--route auto`, and an `--ab` arm (ab-split.ts). */
export const AUTO_ROUTE = 'auto';

/**
 * The model every row that names none goes to, from `--model` or `--route <model>` (the same thing
 * said two ways); `--route auto` pins none. Both given, and not the same, is refused.
 */
export function pinnedModel(options: { model?: string | undefined; route?: string | undefined }): string | undefined {
  if (options.model && options.route && options.route !== options.model) throw new UsageError('give either --model or --route, not both');
  if (options.route && options.route !== AUTO_ROUTE) return options.route;
  return options.model;
}

/**
 * Refuses a pinned model that is not among `names` (the config's models and ensembles, or the
 * built-in ones when `builtIn`: no --config), with the one meant.
 */
export function refuseUnknownPinned(pinned: string | undefined, names: readonly string[], builtIn = false): void {
  if (pinned && !names.includes(pinned)) {
    throw new UsageError(
      `--model/--route "${pinned}" ${notAmongModels(builtIn)}${meantHint(pinned, [...names, AUTO_ROUTE])}; ${listedModels(builtIn, 'models and ensembles')}: ${names.join(', ')} (or --route ${AUTO_ROUTE}, to route each row by its task type)`,
    );
  }
}
