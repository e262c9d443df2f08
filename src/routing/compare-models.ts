/**
 * `--compare a,b[,c...]` (the API's `compare=`): the models every row that names no model is put
 * to, one row per model (compare-fan-out.ts). Read with --ab's checks (ab-split.ts), and kept by
 * the batch: its rows' numbers say which model answers each, so a resume cannot change the list.
 */
import { UsageError } from '../errors.ts';
import { listedNames, refuseRepeatedName, refuseUnknownName } from './ab-split.ts';
import { AUTO_ROUTE } from './pinned-model.ts';

/** What a resume whose config lacks one of the batch's compared models is told (api-terms.ts words it for a client, who has no --config). */
export const COMPARED_MODEL_NOT_IN_CONFIG = "is not in this run's config: give a config that has it (or leave --config off to use the batch's)";

/** Why `--compare` is refused beside the flags that choose one model per row. */
const COMPARE_BESIDE_ONE_MODEL = 'give --compare alone, without --ab, --model or --route: those send each row to one model, --compare puts each row to every model it names';

/** The models `--compare` names, each a model or ensemble among `names` (the built-in ones when `builtIn`: no --config). */
export function parseCompareModels(text: string, names: readonly string[], builtIn = false): string[] {
  const models = listedNames(text);
  for (const model of models) {
    // A routed row is answered by one of the config's models, maybe one compared here too: its answers would count as that model's, and be paired with themselves.
    if (model === AUTO_ROUTE) throw new UsageError(`--compare: ${AUTO_ROUTE} (routing by task type) is not a model to compare: its rows are answered by the config's models, and would count as theirs. To test the routing against a model, give --ab ${AUTO_ROUTE},<model>`);
    if (model.includes('=')) throw new UsageError(`--compare: "${model}" has a weight, which --compare does not take: every row goes to every model (weights share the rows out, with --ab)`);
    refuseUnknownName('--compare', model, names, builtIn);
  }
  refuseRepeatedName('--compare', models, 'each model is compared once');
  if (models.length < 2) {
    const alone = models[0] === undefined ? '' : ` (to send every row to ${models[0]}, give --model ${models[0]})`;
    throw new UsageError(`--compare needs two models or more (models or ensembles), e.g. deepseek-v4-flash,deepseek-v4-pro${alone}`);
  }
  return models;
}

/** What chooses where a batch's rows go, from a run's options. */
interface RowModelOptions {
  compare?: string | undefined;
  ab?: string | undefined;
  model?: string | undefined;
  route?: string | undefined;
}

/** Refuses `--compare` beside --ab, --model or --route (any: `--route auto` routes each row to one model too). */
export function refuseCompareBesideOneModel(options: RowModelOptions): void {
  if (options.compare !== undefined && (options.ab !== undefined || options.model !== undefined || options.route !== undefined)) throw new UsageError(COMPARE_BESIDE_ONE_MODEL);
}

/**
 * The models a run compares: its --compare, or on a resume the batch's list (`before`), which it
 * must keep as it is; a batch run without --compare cannot take it up, nor one run with it
 * another way of choosing models. `names`: the models and ensembles of this run's config.
 */
export function chooseCompareModels(options: RowModelOptions, batch: { id: string; compare: readonly string[] | undefined } | null, names: readonly string[], builtIn: boolean): string[] | undefined {
  refuseCompareBesideOneModel(options);
  const given = options.compare === undefined ? undefined : parseCompareModels(options.compare, names, builtIn);
  if (!batch) return given;
  const before = batch.compare;
  const newBatch = 'compare in a new batch (another --batch-id, or none)';
  if (before === undefined) {
    if (given) throw new UsageError(`batch ${batch.id} was run without --compare, one row for each record of its file: it cannot go on as a comparison, which has one row for each record and model; ${newBatch}`);
    return undefined;
  }
  const list = before.join(',');
  if (options.ab !== undefined || options.model !== undefined || options.route !== undefined) {
    throw new UsageError(`batch ${batch.id} compares ${list} (--compare): --ab, --model and --route cannot go on with it. Leave them off to go on with the comparison, or run them in a new batch (another --batch-id, or none)`);
  }
  if (given && given.join(',') !== list) {
    throw new UsageError(`batch ${batch.id} compares ${list}, not ${given.join(',')}: its rows' numbers say which model answers each, so the list stays as it began. Leave --compare off (or give the same list) to go on with it, or ${newBatch}`);
  }
  const gone = before.find((model) => !names.includes(model));
  if (gone !== undefined) throw new UsageError(`batch ${batch.id} compares ${list} (--compare), but "${gone}" ${COMPARED_MODEL_NOT_IN_CONFIG}`);
  return [...before];
}

/**
 * Said of a comparison run with the answer cache on (`noCache`: how to turn it off, the flag or the
 * API's parameter): a prompt the models were asked before comes back free and at once, so a rerun
 * compares no cost or latency, and its judge (`judged`) is paid to score the same answers again.
 */
export function comparedFromCacheText(noCache: string, judged: boolean): string {
  const judge = judged ? ', and the judge scores the same answers again' : '';
  return `Note: this comparison runs with the answer cache on: a prompt a model answered before gets that answer back at $0 and in no time, so the models' costs and latencies compare only over the prompts new to them${judge}. To compare the models afresh, give ${noCache}.`;
}
