import { closeSync, openSync, renameSync, writeSync } from 'node:fs';
import type { CsvDelimiter } from '../input/csv-delimiter.ts';
import type { PromptSource } from './compare-prompts.ts';
import { csvRecord, type CsvCell } from './csv-safe.ts';
import { readJsonl } from './read-jsonl.ts';
import type { RowResult } from './records.ts';
import type { LongCells } from './report-json.ts';
import { EXCEL_CELL_MAX_CHARS, withLongCell } from './report.ts';
import { formatUsdDecimal, metadataHeaders } from './results-csv.ts';

/** Lines written at a time. */
const FLUSH_LINES = 1000;

/** The code a compared model's error cell gives when a fallback answered its row. */
export const ANSWERED_BY_FALLBACK = 'answered_by_fallback';

/** The route_reason of a row --compare put to `model` (route-plan.ts). */
const comparedReason = (model: string): string => `compared model "${model}"`;

/** A compared model's cells on a line: its answer (or why it has none), its score with a judge, cost and latency. */
function modelHeaders(model: string, judged: boolean): string[] {
  return [model, ...(judged ? [`${model} score`] : []), `${model} cost_usd`, `${model} latency_ms`, `${model} error`];
}

function modelCells(result: RowResult | undefined, model: string, judged: boolean, separator: CsvDelimiter): CsvCell[] {
  if (!result) return [null, ...(judged ? [null] : []), null, null, null];
  // A fallback answered in the model's place: not its answer (nor its cost or time), as the report's pairs leave it out; only why it has none.
  if (result.status === 'succeeded' && !result.ensemble && result.model !== model) {
    const why = result.fallback_reason === null ? '' : ` (${result.fallback_reason})`;
    return [null, ...(judged ? [null] : []), null, null, `${ANSWERED_BY_FALLBACK}: ${result.model} answered in its place${why}`];
  }
  const error = result.error ? `${result.error.code}: ${result.error.message}` : null;
  return [result.output, ...(judged ? [result.judge?.score ?? null] : []), formatUsdDecimal(result.cost_usd, separator === ';' ? ',' : '.'), result.latency_ms, error];
}

/**
 * compare.csv, for a `--compare` batch: one line per record, its id and prompt (`prompts`, read
 * again from the input file: compare-prompts.ts), each compared model's answer beside the others'
 * (with its judge's score, cost, latency and error), then the record's metadata, so a spreadsheet
 * reads what was asked and the models' answers side by side without regrouping results.csv. Made from results.jsonl,
 * which is in row order: record r's rows are (r-1)*N+1 to r*N (compare-fan-out.ts), so one record's
 * rows are held at a time. A row goes under the model of its number when it is that model's answer
 * (an ensemble's by its name), or the model was called for it first: a row that failed on a
 * fallback shows its error, one a fallback answered only that it did (ANSWERED_BY_FALLBACK); a
 * record that named another model has no line. Returns the lines written, and the prompts longer
 * than an Excel cell holds, which Excel cuts when it opens the file (null when none): the report
 * says so, as it does of such answers (long_outputs).
 */
export async function writeCompareCsv(
  resultsPath: string,
  comparePath: string,
  models: readonly string[],
  judged: boolean,
  metadataKeys: readonly string[],
  format: { separator: CsvDelimiter; bom: boolean },
  prompts: PromptSource,
): Promise<{ lines: number; longPrompts: LongCells | null }> {
  const { separator } = format;
  const fixed = ['id', 'prompt', ...models.flatMap((model) => modelHeaders(model, judged))];
  const temporary = `${comparePath}.tmp`;
  const fd = openSync(temporary, 'w');
  let pending = [`${format.bom ? '\ufeff' : ''}${csvRecord([...fixed, ...metadataHeaders(metadataKeys, fixed)], separator)}`];
  let lines = 0;
  let longPrompts: LongCells | null = null;
  const flush = () => {
    writeSync(fd, pending.join(''));
    pending = [];
  };
  let record: number | null = null;
  let placed: (RowResult | undefined)[] = [];
  const writeRecord = async () => {
    const first = placed.find((result) => result !== undefined);
    if (!first || record === null) return;
    const metadata = first.metadata ?? {};
    const prompt = await prompts.promptOf(record + 1, { row: first.row, model: models[placed.indexOf(first)]! });
    // Lines go in the file's order: the first long one is the file's first.
    if (prompt !== null && prompt.length > EXCEL_CELL_MAX_CHARS) longPrompts = withLongCell(longPrompts, first.id, prompt.length);
    pending.push(csvRecord([first.id, prompt, ...placed.flatMap((result, k) => modelCells(result, models[k]!, judged, separator)), ...metadataKeys.map((key) => metadata[key] as CsvCell)], separator));
    lines++;
    if (pending.length >= FLUSH_LINES) flush();
  };
  try {
    for await (const result of readJsonl<RowResult>(resultsPath)) {
      const recordOf = Math.floor((result.row - 1) / models.length);
      if (recordOf !== record) {
        await writeRecord();
        record = recordOf;
        placed = models.map(() => undefined);
      }
      const k = (result.row - 1) % models.length;
      // The model's own answer (an ensemble's by its name), or its row failed or answered on a fallback: the first model called
      // is it, or, passed over unsent (circuit open, limited past max_wait_ms, context window), the row was put to it.
      if ((result.ensemble?.name ?? result.model) === models[k] || (!result.ensemble && (result.models_tried?.[0] === models[k] || result.route_reason === comparedReason(models[k]!)))) placed[k] = result;
    }
    await writeRecord();
    flush();
  } finally {
    closeSync(fd);
    await prompts.close();
  }
  renameSync(temporary, comparePath);
  return { lines, longPrompts };
}
