import { formatCount } from '../figure-text.ts';

/**
 * The most keys a JSONL row may have, its fields and its `metadata` object's together (a Batch
 * line's fields and its request `body`'s): a prompt line's become metadata keys, each a results.csv
 * column, as a CSV header's columns are, and have their limit (a spreadsheet's, 16,384). A line of
 * 500,000 keys (8 MB) held `run` for 17-20 s and `serve`'s event loop, its health check too, for up
 * to 12 s at a time (QA).
 */
export const MAX_ROW_KEYS = 16_384;

/** Each key takes at least 5 characters of a line (`"":0,`): a shorter line cannot have too many, and is not scanned. */
const MIN_KEY_CHARS = 5;

/** A line of too many keys, and what is known of it without parsing it. */
export interface WideLine {
  keys: number;
  /**
   * Which of the top-level fields that tell what the line is (SHAPE_FIELDS and the prompt field)
   * it has: `id` and `custom_id` with their value when that is text, the others as true. Enough to
   * name the line's id, and its custom_id in batch_errors.jsonl, as a parsed line's error would.
   */
  fields: Record<string, string | true>;
}

/** The top-level fields a refused line's error is told by (jsonl-reader.ts: looksLikeOpenAiBatchLine, idOf). */
const SHAPE_FIELDS = ['id', 'custom_id', 'prompt', 'messages', 'body', 'url'];
const VALUE_FIELDS: ReadonlySet<string> = new Set(['id', 'custom_id']);

/**
 * How many keys a JSONL line has at its top level (but `metadata` and `body` themselves) and in
 * its `metadata` and `body` objects, when that is more than MAX_ROW_KEYS; null otherwise. Counted
 * on the text, before JSON.parse: parsing such a line alone took half a second (V8 builds an
 * object of that many keys key by key), and counting the parsed object's keys another 0.2 s. A
 * key written twice counts twice. Text that is no JSON gets some count, and then fails
 * JSON.parse if it passes here.
 */
export function wideLine(text: string, promptKey: string): WideLine | null {
  if (text.length < (MAX_ROW_KEYS + 1) * MIN_KEY_CHARS) return null;
  const shapeFields = new Set([...SHAPE_FIELDS, promptKey]);
  const longestShapeField = Math.max(...[...shapeFields].map((name) => name.length));
  const fields: Record<string, string | true> = {};
  let keys = 0;
  let depth = 0;
  // Where the last string started and ended; whether the top-level value being read is one whose keys count too.
  let stringStart = -1;
  let stringEnd = -1;
  let within = false;
  // A top-level field whose text value is wanted, and where its colon is.
  let wanted: string | null = null;
  let colon = -1;
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
      if (wanted !== null && depth === 1 && text.slice(colon + 1, stringStart).trim() === '') fields[wanted] = keyText(text, stringStart, stringEnd);
      wanted = null;
    } else if (c === 0x3a) {
      // A colon outside strings follows a key.
      if (depth === 1) {
        // In JSON the key is the string just before.
        within = countsWithin(text, stringStart, stringEnd);
        if (!within) keys += 1;
        if (stringEnd - stringStart - 1 <= longestShapeField || hasBackslash(text, stringStart, stringEnd)) {
          const key = keyText(text, stringStart, stringEnd);
          if (shapeFields.has(key)) {
            fields[key] = true;
            if (VALUE_FIELDS.has(key)) [wanted, colon] = [key, i];
          }
        }
      } else if (depth === 2 && within) keys += 1;
    } else if (c === 0x7b || c === 0x5b) depth += 1;
    else if (c === 0x7d || c === 0x5d) depth -= 1;
  }
  return keys > MAX_ROW_KEYS ? { keys, fields } : null;
}

/**
 * Whether the key between these quotes holds an object whose keys count as the line's own: its
 * `metadata`, or an OpenAI Batch line's request `body`, whose fields go to the call or, kept in
 * metadata.body_extra, take as long to handle (500,000 of them: 11 s of CPU for one run). Compared
 * without slicing the key, unless it is long enough to be one of them written with escapes.
 */
function countsWithin(text: string, start: number, end: number): boolean {
  const length = end - start - 1;
  if (length === 8) return text.startsWith('metadata', start + 1);
  if (length === 4) return text.startsWith('body', start + 1);
  return length > 8 && COUNTED_WITHIN.has(keyText(text, start, end));
}

const COUNTED_WITHIN: ReadonlySet<string> = new Set(['metadata', 'body']);

function hasBackslash(text: string, start: number, end: number): boolean {
  for (let j = start + 1; j < end; j++) if (text.charCodeAt(j) === 0x5c) return true;
  return false;
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
    `the row has ${formatCount(keys)} keys (its fields and those of its metadata or body object), more than the ${formatCount(MAX_ROW_KEYS)} a row may have (a CSV header's limit too: each becomes a results.csv column): ` +
    'keep the fields you want beside the answers, and leave the rest out of the row, or nest them under one key, which is one column'
  );
}
