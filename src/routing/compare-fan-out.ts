/**
 * `--compare`'s rows: each record of the file that names no model becomes one row per compared
 * model, that model in its model field, as if the file held the record once per model. Rows are
 * numbered as in that file: record r's k-th of N models is row (r-1)*N+k, so a record's rows keep
 * their numbers (and their job ids, their results' places, their fingerprints) whatever the records
 * around it do, and a resume finds each where it left it. The copies keep the record's id and its
 * line in the file: the id pairs the models' answers (paired-scores.ts), the line finds the record.
 * Done after the reader, so the reader's checks (an OpenAI Batch file's duplicate_id) see each
 * record once.
 */
import { UsageError } from '../errors.ts';
import type { QueueItem, ReadItem } from '../input/row.ts';
import { counted, formatCount } from '../figure-text.ts';

/** The row number of record `record`'s `model`-th (1-based) of `models` compared models. */
export function compareRowNumber(record: number, model: number, models: number): number {
  return (record - 1) * models + model;
}

/** What the fan-out met in the file so far, for what the run says once it is read. */
export interface CompareTally {
  /** Records put to every model. */
  prompts: number;
  /** Records that name their own model: answered by it alone, once, not compared. */
  ownModel: number;
  /** The line of the first of those. */
  firstOwnModelLine: number | null;
}

export const noneCompared = (): CompareTally => ({ prompts: 0, ownModel: 0, firstOwnModelLine: null });

/**
 * A reader's item as the rows it stands for under `--compare models`. A record that names its own
 * model keeps it, as under --model and --ab: it is one row, at its first number; so is an invalid
 * record's error (errors.jsonl has it once). Their other numbers are vacant. An OpenAI Batch
 * request line (custom_id) is refused: its output file answers each custom_id once.
 */
export function fanOutItem(item: ReadItem, models: readonly string[], tally: CompareTally): QueueItem[] {
  const record = item.value;
  if (record.custom_id !== undefined) {
    throw new UsageError(
      `--compare cannot run OpenAI Batch request lines (line ${record.line} has custom_id "${record.custom_id}"): batch_output.jsonl answers each custom_id once. ` +
        'To compare models on them, give each line as {"id": ..., "messages": [...]}, or run the file once per model with --model',
    );
  }
  const at = (k: number) => compareRowNumber(record.row, k, models.length);
  // The record as one row at its k-th number, the others vacant.
  const alone = (k: number, one: QueueItem): QueueItem[] => models.map((_model, i) => (i + 1 === k ? one : { kind: 'vacant', value: { row: at(i + 1) } }));
  if (item.kind === 'error') return alone(1, { kind: 'error', value: { ...item.value, row: at(1) } });
  const row = item.value;
  if (row.model !== undefined) {
    tally.ownModel++;
    tally.firstOwnModelLine ??= row.line;
    // A compared model's own number, so its answer is kept should the model column be cleared later.
    const k = models.indexOf(row.model) + 1 || 1;
    return alone(k, { kind: 'row', value: { ...row, row: at(k) } });
  }
  tally.prompts++;
  return models.map((model, i) => ({ kind: 'row', value: { ...row, row: at(i + 1), model, compared: true } }));
}

/** Said once the file is read: how many prompts went to every model, and the records left to their own model. */
export function comparedText(models: readonly string[], tally: CompareTally): string[] {
  const lines = [`Comparison: ${counted(tally.prompts, 'prompt')}, each put to all ${models.length} models (${models.join(', ')}): ${counted(tally.prompts * models.length, 'row')}, one per prompt and model (numbered as if the file held each record once per model).`];
  if (tally.ownModel > 0) {
    lines.push(
      `Note: ${formatCount(tally.ownModel)} record${tally.ownModel === 1 ? ' names its' : 's name their'} own model (the first on line ${tally.firstOwnModelLine}): ` +
        `answered by it alone, once, and not compared, as --model and --ab leave such rows. Clear the model column (or field) to put ${tally.ownModel === 1 ? 'it' : 'them'} to every compared model.`,
    );
  }
  return lines;
}
