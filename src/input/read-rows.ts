import { existsSync, statSync } from 'node:fs';
import { extname } from 'node:path';
import { UsageError } from '../errors.ts';
import { readCsvRows } from './csv-reader.ts';
import { openInputFile, stdinRefusal } from './input-file.ts';
import { readJsonlRows } from './jsonl-reader.ts';
import type { ReadItem, ReadPosition, RowRules } from './row.ts';

type Reader = (path: string, rules: RowRules, position?: ReadPosition) => AsyncGenerator<ReadItem>;

/**
 * Readers by file extension (lower case); `.json` files are read as JSON Lines, `.tsv` and `.txt`
 * as CSV (its tabs are found): Excel saves a sheet as "Unicode Text" in a UTF-16 `.txt` file.
 */
const READERS: Record<string, Reader> = {
  '.csv': readCsvRows,
  '.tsv': readCsvRows,
  '.txt': readCsvRows,
  '.jsonl': readJsonlRows,
  '.ndjson': readJsonlRows,
  '.json': readJsonlRows,
};

/**
 * Streams an input file's rows and row errors with the reader its extension calls for; `position`,
 * when given, follows how far into the file the reader is.
 */
export function readRows(path: string, rules: RowRules, position?: ReadPosition): AsyncGenerator<ReadItem> {
  const extension = extname(path).toLowerCase();
  const reader = READERS[extension];
  if (reader === undefined) {
    const stdin = existsSync(path) ? null : stdinRefusal(path);
    if (stdin) throw stdin;
    if (isDirectory(path)) throw new UsageError(`input path is a directory, not a file: ${path}`);
    const supported = Object.keys(READERS).join(', ');
    const shown = extension === '' ? 'no extension' : `"${extension}"`;
    throw new UsageError(`cannot read ${path}: ${shown} is not a supported input type; use one of ${supported}`);
  }
  return reader(path, rules, position);
}

function isDirectory(path: string): boolean {
  return statSync(path, { throwIfNoEntry: false })?.isDirectory() ?? false;
}

/** Throws a UsageError at once if the file is missing, a directory, empty or unreadable. */
export async function checkInputFile(path: string): Promise<void> {
  const { handle } = await openInputFile(path);
  await handle.close();
}
