import type { SwitchyardConfig } from '../config/schema.ts';
import { AUTO_ROUTE } from './pinned-model.ts';

/** Every model a row sent to one of `answering` (a model, an ensemble, or routing) may be answered by, fallbacks included. */
export function mayAnswer(config: SwitchyardConfig, answering: readonly string[]): Set<string> {
  const routed = [config.default_model, ...Object.values(config.routing?.routes ?? {}).flat()];
  const first = (answering.length === 0 ? [AUTO_ROUTE] : answering).flatMap((name) => {
    if (name === AUTO_ROUTE) return routed;
    const ensemble = config.ensembles[name];
    return ensemble ? [...ensemble.members, ensemble.synthesizer] : [name];
  });
  const models = new Set<string>();
  const add = (model: string) => {
    if (models.has(model)) return;
    models.add(model);
    for (const fallback of config.models[model]?.fallbacks ?? []) add(fallback);
  };
  first.forEach(add);
  return models;
}
