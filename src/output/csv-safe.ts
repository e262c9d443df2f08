import type { CsvDelimiter } from '../input/csv-delimiter.ts';

/**
 * CSV formula-injection guard (OWASP "CSV Injection"): a spreadsheet treats a cell that starts
 * with `=`, `+`, `-`, `@`, a tab or a carriage return as a formula, so model output or metadata
 * such as `=HYPERLINK(...)` could run when results.csv is opened. Such text gets a leading `'`,
 * which spreadsheets show as a plain-text marker.
 *
 * Choices:
 * - Only text is guarded. Numbers stay numbers: a JS number (e.g. -3) is never prefixed.
 * - Text that is exactly a plain decimal number (`-5`, `+1.5`, `-2e-3`) is also left alone: it
 *   cannot hold a formula, and CSV inputs hand us numeric metadata as text.
 * - The full-width look-alikes (＝ ＋ － ＠) are guarded too: some spreadsheet apps normalise
 *   them to their ASCII forms.
 */

const FORMULA_TRIGGERS = new Set(['=', '+', '-', '@', '\t', '\r', '\uFF1D', '\uFF0B', '\uFF0D', '\uFF20']);
const PLAIN_NUMBER = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;

/** True when a spreadsheet could read this text as a formula. */
export function looksLikeFormula(text: string): boolean {
  const first = text[0];
  if (first === undefined || !FORMULA_TRIGGERS.has(first)) return false;
  return !PLAIN_NUMBER.test(text);
}

/** The text made safe for a CSV cell: prefixed with `'` when it could be read as a formula. */
export function csvSafe(text: string): string {
  return looksLikeFormula(text) ? `'${text}` : text;
}

/** A cell of results.csv: text, a number, a boolean, an object (written as JSON) or empty. */
export type CsvCell = string | number | boolean | null | undefined | object;

const NEEDS_QUOTES: Record<CsvDelimiter, RegExp> = { ',': /[",\r\n]/, ';': /[";\r\n]/, '\t': /["\t\r\n]/ };

/**
 * A NUL in a cell (a model's answer, a provider's error, JSONL metadata, all of which may hold
 * `\u0000`) is written as U+2400 (␀, the symbol for NUL): Switchyard's CSV reader refuses a
 * record with a NUL (no text holds one), so results.csv fed back in (to run its failed rows again)
 * lost those rows (QA). Not U+FFFD, which says a character was lost in decoding, not that a NUL
 * was there; not `\x00`, which a model may write as text (code). Only in results.csv: results.jsonl keeps
 * the text exact. Other control characters are text the reader takes, and are kept.
 */
function withoutNul(text: string): string {
  return text.includes('\0') ? text.replaceAll('\0', '\u2400') : text;
}

function formatCell(value: CsvCell, needsQuotes: RegExp): string {
  if (value === null || value === undefined) return '';
  const text = typeof value === 'string' ? csvSafe(withoutNul(value)) : typeof value === 'object' ? csvSafe(JSON.stringify(value)) : String(value);
  return needsQuotes.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

/**
 * One CSV record (RFC 4180: a field with a separator, quote or line break is quoted, quotes doubled),
 * with the formula guard on every text cell and its NULs as U+2400, ending in "\n". With the comma, the same bytes as
 * csv-stringify's defaults with the guard as its `cast` (a test holds them to that), but written out
 * here: it is 5-7 times faster, and results.csv is written while the user waits for the summary.
 * `separator` is the input CSV's, so a spreadsheet set up for the one opens the other alike.
 */
export function csvRecord(cells: readonly CsvCell[], separator: CsvDelimiter = ','): string {
  const needsQuotes = NEEDS_QUOTES[separator];
  let line = '';
  for (let i = 0; i < cells.length; i++) line += (i === 0 ? '' : separator) + formatCell(cells[i], needsQuotes);
  return `${line}\n`;
}
