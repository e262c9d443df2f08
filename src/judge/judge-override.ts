import { judgeSchema, type SwitchyardConfig } from '../config/schema.ts';
import { UsageError } from '../errors.ts';
import { meantHint } from '../config/closest-name.ts';
import { listedModels, notAmongModels } from '../config/unknown-model-text.ts';

/**
 * The config with `model` as its judge (`--judge`, the API's `judge=`): the config's other judge
 * keys are kept, or their defaults taken. An ensemble cannot judge: a judge is one model's call.
 * `builtIn`: the config is the built-in one (no --config), and the refusal says so.
 */
export function withJudge(config: SwitchyardConfig, model: string, builtIn = false): SwitchyardConfig {
  if (!Object.hasOwn(config.models, model)) {
    const notAmong = builtIn ? notAmongModels(true) : 'is not a model in the config';
    throw new UsageError(`--judge "${model}" ${notAmong}${meantHint(model, Object.keys(config.models))}; ${listedModels(builtIn, 'models')}: ${Object.keys(config.models).join(', ')}`);
  }
  return { ...config, judge: { ...judgeSchema.parse({ model }), ...config.judge, model } };
}
