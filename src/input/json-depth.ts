/**
 * How deep a row's objects and arrays may nest, the row itself being level 1. Real rows nest a few
 * levels (messages, content parts), a response_format's JSON schema a few dozen at most; 100 leaves
 * room for any of those, and is far below the thousands of levels at which JSON.stringify (the
 * row's fingerprint, its job data) runs out of stack and would stop the whole run.
 */
const MAX_ROW_DEPTH = 100;

/** Whether `value` nests objects or arrays deeper than MAX_ROW_DEPTH; looks no deeper than that. */
export function nestedTooDeep(value: unknown, depth = 1): boolean {
  if (typeof value !== 'object' || value === null) return false;
  if (depth > MAX_ROW_DEPTH) return true;
  return Object.values(value).some((inner) => nestedTooDeep(inner, depth + 1));
}

/**
 * `value` with whatever nests below MAX_ROW_DEPTH + 1 levels emptied: still too deep, so the reader
 * refuses it as it would the whole, and short enough to write out with JSON.stringify.
 */
export function cutTooDeep(value: unknown, depth = 1): unknown {
  if (typeof value !== 'object' || value === null) return value;
  if (depth > MAX_ROW_DEPTH) return Array.isArray(value) ? [] : {};
  if (Array.isArray(value)) return value.map((inner: unknown) => cutTooDeep(inner, depth + 1));
  return Object.fromEntries(Object.entries(value).map(([key, inner]) => [key, cutTooDeep(inner, depth + 1)]));
}

/** Why a row that nests too deep is refused, and what to do. */
export const TOO_DEEP_MESSAGE = `the row nests objects or arrays more than ${MAX_ROW_DEPTH} levels deep, which no prompt needs: flatten its fields (or leave the deep data out of the row)`;
