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
import type { Options } from 'csv-stringify';

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

/** The `cast` option for csv-stringify that applies the guard (to the header row too). */
export type CsvCast = NonNullable<Options['cast']>;

/**
 * A fresh `cast` option for csv-stringify: text is guarded, numbers are written as they are,
 * booleans as `true`/`false`, objects and arrays as guarded JSON. A new object on each call,
 * because csv-stringify fills the missing casts into the object it is given.
 */
export function csvSafeCast(): CsvCast {
  return {
    string: (value) => csvSafe(value),
    boolean: (value) => String(value),
    object: (value) => csvSafe(JSON.stringify(value)),
  };
}
