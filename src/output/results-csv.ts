import { open } from 'node:fs/promises';
import { usdToNanos } from '../models/pricing.ts';
import { csvRecord, type CsvCell } from './csv-safe.ts';
import { readJsonl } from './read-jsonl.ts';
import type { RowResult } from './records.ts';

/** The fixed columns of results.csv; one column per metadata key follows them. */
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
] as const;

/** results.csv is written in blocks of about this many characters. */
const WRITE_BLOCK_CHARS = 1 << 20;

/**
 * Streams results.jsonl into results.csv in one pass, with a column per metadata key
 * (`metadataKeys`: the producer records them, in first-seen order), and hands each result to
 * `onResult` (the report is tallied on the way).
 * Text cells are guarded against formula injection (see csv-safe.ts), the header row included.
 * A metadata key that repeats a fixed column name is written as `metadata.<key>`.
 */
export async function writeResultsCsv(resultsJsonlPath: string, csvPath: string, metadataKeys: readonly string[], onResult?: (result: RowResult) => void): Promise<void> {
  const output = await open(csvPath, 'w');
  try {
    let block = csvRecord([...RESULTS_CSV_COLUMNS, ...metadataHeaders(metadataKeys)]);
    for await (const result of readJsonl<RowResult>(resultsJsonlPath)) {
      onResult?.(result);
      const metadata = result.metadata ?? {};
      block += csvRecord([
        result.id,
        result.row,
        result.status,
        result.model,
        result.output,
        result.usage.input_tokens,
        result.usage.output_tokens,
        formatUsdDecimal(result.cost_usd),
        result.latency_ms,
        result.attempts,
        result.error?.code ?? null,
        result.error?.message ?? null,
        ...metadataKeys.map((key) => metadata[key] as CsvCell),
      ]);
      if (block.length >= WRITE_BLOCK_CHARS) {
        await output.write(block);
        block = '';
      }
    }
    await output.write(block);
  } finally {
    await output.close();
  }
}

function metadataHeaders(keys: readonly string[]): string[] {
  const taken = new Set<string>(RESULTS_CSV_COLUMNS);
  for (const key of keys) taken.add(key);
  return keys.map((key) => {
    if (!(RESULTS_CSV_COLUMNS as readonly string[]).includes(key)) return key;
    let name = `metadata.${key}`;
    for (let n = 2; taken.has(name); n += 1) name = `metadata.${key}.${n}`;
    taken.add(name);
    return name;
  });
}

/** USD as a plain decimal with up to 9 places (exact nano-dollars), never in exponent form. */
function formatUsdDecimal(usd: number | null): string | null {
  if (usd === null) return null;
  const nanos = usdToNanos(usd);
  const sign = nanos < 0 ? '-' : '';
  const abs = Math.abs(nanos);
  const whole = Math.floor(abs / 1e9);
  const fraction = String(abs % 1e9).padStart(9, '0').replace(/0+$/, '');
  return fraction === '' ? `${sign}${whole}` : `${sign}${whole}.${fraction}`;
}
