import { judgeSchema, type SwitchyardConfig } from '../config/schema.ts';
import { UsageError } from '../errors.ts';
import { meantHint } from '../config/closest-name.ts';

/**
 * The config with `model` as its judge (`--judge`, the API's `judge=`): the config's other judge
 * keys are kept, or their defaults taken. An ensemble cannot judge: a judge is one model's call.
 */
export function withJudge(config: SwitchyardConfig, model: string): SwitchyardConfig {
  if (!Object.hasOwn(config.models, model)) {
    throw new UsageError(`--judge "${model}" is not a model in the config${meantHint(model, Object.keys(config.models))}; models: ${Object.keys(config.models).join(', ')}`);
  }
  return { ...config, judge: { ...judgeSchema.parse({ model }), ...config.judge, model } };
}
