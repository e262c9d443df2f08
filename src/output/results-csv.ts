import { open } from 'node:fs/promises';
import { stringify } from 'csv-stringify/sync';
import { usdToNanos } from '../models/pricing.ts';
import { csvSafeCast } from './csv-safe.ts';
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

const CSV_BLOCK_ROWS = 512;

type Cell = string | number | boolean | null | object;

/**
 * Streams results.jsonl into results.csv in two passes: the first collects the union of metadata
 * keys (in first-seen order), the second writes the rows. Only the key set is held in memory.
 * Text cells are guarded against formula injection (see csv-safe.ts), the header row included.
 * A metadata key that repeats a fixed column name is written as `metadata.<key>`.
 */
export async function writeResultsCsv(resultsJsonlPath: string, csvPath: string): Promise<void> {
  const metadataKeys = await collectMetadataKeys(resultsJsonlPath);
  const columns = [...RESULTS_CSV_COLUMNS, ...metadataHeaders(metadataKeys)];
  const output = await open(csvPath, 'w');
  try {
    // csv-stringify's synchronous API over blocks of rows: several times faster than its stream
    // fed one row at a time, with the same output (header first, even for no rows).
    let block: Cell[][] = [];
    let header = true;
    const flush = async () => {
      await output.write(stringify(block, { header, columns, cast: csvSafeCast() }));
      header = false;
      block = [];
    };
    for await (const result of readJsonl<RowResult>(resultsJsonlPath)) {
      const metadata = result.metadata ?? {};
      block.push([
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
        ...metadataKeys.map((key) => (metadata[key] ?? null) as Cell),
      ]);
      if (block.length >= CSV_BLOCK_ROWS) await flush();
    }
    if (block.length > 0 || header) await flush();
  } finally {
    await output.close();
  }
}

async function collectMetadataKeys(resultsJsonlPath: string): Promise<string[]> {
  const keys = new Set<string>();
  for await (const result of readJsonl<RowResult>(resultsJsonlPath)) {
    for (const key of Object.keys(result.metadata ?? {})) keys.add(key);
  }
  return [...keys];
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
