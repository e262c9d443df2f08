import { UsageError } from '../errors.ts';
import { meantHint } from '../config/closest-name.ts';
import { listedModels, notAmongModels } from '../config/unknown-model-text.ts';
import { AUTO_ROUTE } from './pinned-model.ts';

/** One arm of an A/B split: a model, an ensemble or the routing (AUTO_ROUTE), and its share of the rows (the shares sum to 1). */
export interface AbArm {
  model: string;
  weight: number;
}

/**
 * The model or ensemble an arm pins its rows to; none for the arm `auto`, whose rows are routed by
 * task type as a batch without `--ab` routes them (the config's `routing`, its classifier
 * included), so that a routing strategy can be tested against one model.
 */
export function armTarget(arm: string | undefined): string | undefined {
  return arm === AUTO_ROUTE ? undefined : arm;
}

/** Why `--ab` is refused beside `--model` or `--route <model>`. */
export const AB_BESIDE_PINNED = 'give either --ab or --model <model> (or --route <model>), not both (an arm of --ab may be auto, routed by task type)';

/**
 * `--ab a,b,c` (equal shares) or `--ab a=0.8,b=0.2` (weights, any positive numbers: they are
 * scaled to sum to 1). `names` are the models and ensembles a row may go to (the built-in ones when
 * `builtIn`: no --config).
 */
export function parseAbSplit(text: string, names: readonly string[], builtIn = false): AbArm[] {
  const arms = listedNames(text).map((part) => {
    const [model = '', weightText] = part.split('=').map((piece) => piece.trim());
    if (model !== AUTO_ROUTE) refuseUnknownName('--ab', model, names, builtIn, { names: [AUTO_ROUTE], text: ` (or ${AUTO_ROUTE}, to route the arm's rows by task type)` });
    const weight = weightText === undefined ? 1 : Number(weightText);
    if (!(weight > 0) || !Number.isFinite(weight)) throw new UsageError(`--ab: the weight of "${model}" must be a positive number, not "${weightText}"`);
    return { model, weight, weighted: weightText !== undefined };
  });
  refuseRepeatedName('--ab', arms.map((arm) => arm.model), 'each arm may appear once');
  if (arms.length < 2) {
    const alone = arms[0]?.model;
    const instead = alone === AUTO_ROUTE ? ' (to route every row by task type, give --route auto; to test the routing against a model, auto,<model>)' : alone ? ` (to send every row to ${alone}, give --model ${alone})` : '';
    throw new UsageError(`--ab needs two arms or more (models, ensembles, or auto for the routing), e.g. deepseek-v4-flash,glm-4, auto,deepseek-v4-pro, or with weights a=0.8,b=0.2${instead}`);
  }
  if (arms.some((arm) => arm.weighted) && !arms.every((arm) => arm.weighted)) throw new UsageError('--ab: give every model a weight (a=0.8,b=0.2) or none (equal shares)');
  const total = arms.reduce((sum, arm) => sum + arm.weight, 0);
  return arms.map((arm) => ({ model: arm.model, weight: arm.weight / total }));
}

/** The comma-separated names of a flag's list (`--ab`, `--compare`), blanks dropped. */
export function listedNames(text: string): string[] {
  return text.split(',').map((part) => part.trim()).filter((part) => part.length > 0);
}

/**
 * Refuses a name a list flag (`--ab`, `--compare`) gives that is not among `names` (the config's
 * models and ensembles, the built-in ones when `builtIn`), with the one meant; `more`: the other
 * words the flag takes (offered as meant too) and the text that ends the list of names with them.
 */
export function refuseUnknownName(flag: string, model: string, names: readonly string[], builtIn: boolean, more: { names: readonly string[]; text: string } = { names: [], text: '' }): void {
  if (names.includes(model)) return;
  throw new UsageError(`${flag}: "${model}" ${notAmongModels(builtIn)}${meantHint(model, [...names, ...more.names])}; ${listedModels(builtIn, 'models and ensembles')}: ${names.join(', ')}${more.text}`);
}

/** Refuses a list flag's name given twice (`rule`: what the flag allows instead). */
export function refuseRepeatedName(flag: string, models: readonly string[], rule: string): void {
  const repeated = models.find((model, i) => models.indexOf(model) !== i);
  if (repeated !== undefined) throw new UsageError(`${flag}: "${repeated}" is named twice; ${rule}`);
}

/**
 * The arm of a row, from a hash of its id: the same id goes to the same arm in every run and every
 * batch (a resume, tomorrow's batch), and ids spread over the arms by their weights.
 */
export function abArmFor(rowId: string, arms: readonly AbArm[]): string {
  let hash = 0x811c9dc5;
  for (let i = 0; i < rowId.length; i++) {
    hash ^= rowId.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  // FNV's low bits mix poorly for short ids: fold the high half in before scaling to [0, 1).
  hash ^= hash >>> 16;
  hash = Math.imul(hash, 0x45d9f3b);
  hash ^= hash >>> 16;
  const point = (hash >>> 0) / 2 ** 32;
  let reach = 0;
  for (const arm of arms) {
    reach += arm.weight;
    if (point < reach) return arm.model;
  }
  return arms.at(-1)!.model;
}

/** "deepseek-v4-flash 80%, glm-4 20%"; the routed arm "auto (routed by task type) 50%". */
export function formatAbSplit(arms: readonly AbArm[]): string {
  return arms.map((arm) => `${arm.model}${arm.model === AUTO_ROUTE ? ' (routed by task type)' : ''} ${Math.round(arm.weight * 1000) / 10}%`).join(', ');
}

/** The split as `--ab` (or the API's `ab=`) takes it: "deepseek-v4-flash=0.8,glm-4=0.2". */
export function abSplitParameter(arms: readonly AbArm[]): string {
  return arms.map((arm) => `${arm.model}=${Math.round(arm.weight * 1000) / 1000}`).join(',');
}

/** Said by a run and a dry run alike when an arm is `auto` but the config routes nothing: the arm is default_model. */
export function autoArmUnroutedNote(arms: readonly AbArm[] | undefined, config: { routing?: unknown; default_model: string }): string | null {
  if (!arms?.some((arm) => arm.model === AUTO_ROUTE) || config.routing) return null;
  return `Note: the config has no routing, so the arm "${AUTO_ROUTE}" sends its rows to default_model ${config.default_model}, as a batch without --ab would.`;
}
