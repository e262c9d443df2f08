/**
 * The words for a model name a run refused (--model, --route, --ab, --judge): where it was looked
 * for, and how the names it could have been are listed. Without --config a run uses the built-in
 * models, and "not in the config" would send its user looking for a config they never gave.
 */
export function notAmongModels(builtIn: boolean): string {
  return builtIn ? 'is not a built-in model (no --config was given: to call other models, give a config that names them)' : 'is not in the config';
}

/** "models and ensembles", or "built-in models and ensembles" (`kind`: what the list holds). */
export function listedModels(builtIn: boolean, kind: string): string {
  return builtIn ? `built-in ${kind}` : kind;
}
