import { usdToNanos } from '../models/pricing.ts';
import type { CsvDelimiter } from '../input/csv-delimiter.ts';
import { csvRecord, type CsvCell } from './csv-safe.ts';
import { writeOrderedCsv, type RowFilter } from './ordered-results.ts';
import type { RowResult } from './records.ts';
import { unusedName } from '../unused-name.ts';

/**
 * The fixed columns of results.csv: results.jsonl's fields, flattened (usage and error split into
 * cells, models_tried as `a > b`, an ensemble by its name; its members' answers are only in
 * results.jsonl; the judge's score, and its reason or why it gave none; for an answer from the
 * cache, the batch and row whose call gave it). One column per metadata
 * key follows them.
 */
export const RESULTS_CSV_COLUMNS = [
  'id',
  'row',
  'status',
  'model',
  'output',
  'input_tokens',
  'output_tokens',
  'cost_usd',
  'latency_ms',
  'attempts',
  'error_code',
  'error_message',
  'finish_reason',
  'refusal',
  'task_type',
  'route_reason',
  'ab_arm',
  'models_tried',
  'fallback_reason',
  'ensemble',
  'judge_score',
  'judge_reason',
  'request_id',
  'cached_from',
  'completed_at',
] as const;

/**
 * One result as a results.csv record: the fixed columns, then a cell per key of `metadataKeys`.
 * With `;` between fields (Excel's choice where the comma is the decimal mark) cost_usd gets a
 * decimal comma too, so such a spreadsheet reads it as a number.
 */
export function resultCsvRecord(result: RowResult, metadataKeys: readonly string[], separator: CsvDelimiter = ','): string {
  const metadata = result.metadata ?? {};
  return csvRecord([
    result.id,
    result.row,
    result.status,
    result.model,
    result.output,
    result.usage.input_tokens,
    result.usage.output_tokens,
    formatUsdDecimal(result.cost_usd, separator === ';' ? ',' : '.'),
    result.latency_ms,
    result.attempts,
    result.error?.code ?? null,
    result.error?.message ?? null,
    result.finish_reason ?? null,
    result.refusal ?? null,
    result.task_type,
    result.route_reason,
    result.ab_arm ?? null,
    // An ensemble's models answered side by side: a list, not a chain.
    result.models_tried.join(result.ensemble ? ', ' : ' > '),
    result.fallback_reason,
    result.ensemble?.name ?? null,
    result.judge?.score ?? null,
    result.judge ? (result.judge.reason ?? result.judge.error?.message ?? null) : null,
    result.request_id ?? null,
    result.cached ? `${result.cached.batch_id} row ${result.cached.row}` : null,
    result.completed_at,
    ...metadataKeys.map((key) => metadata[key] as CsvCell),
  ], separator);
}

/**
 * Writes results.csv from the collector's CSV journal (records made as the rows came in, see
 * ordered-results.ts), with a column per metadata key (`metadataKeys`: the producer records them,
 * in first-seen order). Text cells are guarded against formula injection (see csv-safe.ts), the
 * header row included. A metadata key that repeats a fixed column name is written as
 * `metadata.<key>`, one with no name as `column_<n>`, its position. Returns how many rows it holds.
 */
export function writeResultsCsv(csvJournalPath: string, csvPath: string, metadataKeys: readonly string[], format: { separator: CsvDelimiter; bom: boolean } = { separator: ',', bom: false }, keep?: RowFilter): number {
  const { separator } = format;
  const header = `${format.bom ? '\ufeff' : ''}${csvRecord([...RESULTS_CSV_COLUMNS, ...metadataHeaders(metadataKeys)], separator)}`;
  return writeOrderedCsv(csvJournalPath, csvPath, header, metadataKeys.length, separator, keep);
}

/** The metadata keys' column names after the `fixed` columns (results.csv's unless given). */
export function metadataHeaders(keys: readonly string[], fixed: readonly string[] = RESULTS_CSV_COLUMNS): string[] {
  const taken = new Set<string>(fixed);
  for (const key of keys) taken.add(key);
  return keys.map((key, i) => {
    // A key with no name (a JSONL line's "", from a CSV whose header cell was empty, say) would be an empty header
    // cell no spreadsheet or script can pick: it is named for its column, as the CSV reader names such a cell.
    if (key.trim() === '') return unusedName(`column_${fixed.length + i + 1}`, taken);
    if (!fixed.includes(key)) return key;
    return unusedName(`metadata.${key}`, taken);
  });
}

/** USD as a plain decimal with up to 9 places (exact nano-dollars), never in exponent form. */
export function formatUsdDecimal(usd: number | null, decimalMark: '.' | ','): string | null {
  if (usd === null) return null;
  const nanos = usdToNanos(usd);
  const sign = nanos < 0 ? '-' : '';
  const abs = Math.abs(nanos);
  const whole = Math.floor(abs / 1e9);
  const fraction = String(abs % 1e9).padStart(9, '0').replace(/0+$/, '');
  return fraction === '' ? `${sign}${whole}` : `${sign}${whole}${decimalMark}${fraction}`;
}
