import { formatCount } from '../figure-text.ts';

/**
 * The most keys a JSONL row may have, its fields and its `metadata` object's together: each
 * becomes a metadata key carried into results.csv as a column, as a CSV header's columns are, and
 * with their limit (a spreadsheet's, 16,384). A line of 500,000 keys (8 MB) held `run` for 15 s and
 * `serve`'s event loop, its health check too, for up to 8 s at a time (QA).
 */
export const MAX_ROW_KEYS = 16_384;

/** Each key takes at least 5 characters of a line (`"":0,`): a shorter line cannot have too many, and is not scanned. */
const MIN_KEY_CHARS = 5;

/**
 * How many keys a JSONL line has at its top level (but `metadata` itself) and in its `metadata`
 * object, when that is more than MAX_ROW_KEYS; null otherwise. Counted on the text, before
 * JSON.parse: parsing such a line alone took half a second (V8 builds an object of that many keys
 * key by key), and counting the parsed object's keys another 0.2 s. A key written twice counts
 * twice. Text that is no JSON gets some count, and then fails JSON.parse if it passes here.
 */
export function rowKeysOverLimit(text: string): number | null {
  if (text.length < (MAX_ROW_KEYS + 1) * MIN_KEY_CHARS) return null;
  let keys = 0;
  let depth = 0;
  // Where the last string started and ended; whether the top-level value being read is `metadata`'s.
  let stringStart = -1;
  let stringEnd = -1;
  let inMetadata = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22) {
      // A string: jump to its closing quote, one not escaped by an odd run of backslashes.
      stringStart = i;
      let end = text.indexOf('"', i + 1);
      while (end !== -1 && escaped(text, end)) end = text.indexOf('"', end + 1);
      if (end === -1) break;
      stringEnd = end;
      i = end;
    } else if (c === 0x3a) {
      // A colon outside strings follows a key.
      if (depth === 1) {
        // In JSON the key is the string just before; compared without slicing it, but for one long enough to be "metadata" written with escapes.
        const length = stringEnd - stringStart - 1;
        inMetadata = length === 8 ? text.startsWith('metadata', stringStart + 1) : length > 8 && keyText(text, stringStart, stringEnd) === 'metadata';
        if (!inMetadata) keys += 1;
      } else if (depth === 2 && inMetadata) keys += 1;
    } else if (c === 0x7b || c === 0x5b) depth += 1;
    else if (c === 0x7d || c === 0x5d) depth -= 1;
  }
  return keys > MAX_ROW_KEYS ? keys : null;
}

function escaped(text: string, quote: number): boolean {
  let backslashes = 0;
  for (let j = quote - 1; text.charCodeAt(j) === 0x5c; j--) backslashes += 1;
  return backslashes % 2 === 1;
}

/** A key as JSON.parse reads it: `"metad\u0061ta"` is "metadata" too. */
function keyText(text: string, start: number, end: number): string {
  const raw = text.slice(start + 1, end);
  if (!raw.includes('\\')) return raw;
  try {
    return JSON.parse(`"${raw}"`) as string;
  } catch {
    return raw;
  }
}

/** Why a row of `keys` keys is refused, and what to do. */
export function tooManyKeysMessage(keys: number): string {
  return (
    `the row has ${formatCount(keys)} keys (its fields and its metadata object's), more than the ${formatCount(MAX_ROW_KEYS)} a row may have (a CSV header's limit too: each becomes a results.csv column): ` +
    'keep the fields you want beside the answers, and leave the rest out of the row, or nest them under one key, which is one column'
  );
}
