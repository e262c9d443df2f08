/**
 * A JSONL line may write half of a UTF-16 surrogate pair as an escape (`"\ud800"` with no
 * `\udc00`-`\udfff` after it: a string cut in the middle of an emoji by another tool). JSON.parse
 * takes it, and the request would carry it on as the same escape, but it is no character: strict
 * JSON readers refuse the whole request (DeepSeek: "lone leading surrogate in hex escape", a 400 on
 * every model of the chain), and results.csv could only write it as U+FFFD. Such a line is refused
 * as the reader refuses bytes that are not UTF-8, naming the field.
 */

/** An escape of a surrogate in a line's raw text: the only way one gets into a decoded line. */
const SURROGATE_ESCAPE = /\\u[dD][89a-fA-F]/;

/** Where `value` (a parsed line) holds a lone surrogate, as `messages[0].content`, or null when nowhere (or its text has no such escape). */
export function loneSurrogatePath(rawLine: string, value: unknown): string | null {
  return SURROGATE_ESCAPE.test(rawLine) ? pathIn(value, '') : null;
}

function pathIn(value: unknown, path: string): string | null {
  if (typeof value === 'string') return value.isWellFormed() ? null : path || 'the line';
  if (typeof value !== 'object' || value === null) return null;
  for (const [key, inner] of Object.entries(value)) {
    const at = Array.isArray(value) ? `${path}[${key}]` : path === '' ? key : `${path}.${key}`;
    if (!key.isWellFormed()) return `the key ${JSON.stringify(key)}${path === '' ? '' : ` in ${path}`}`;
    const found = pathIn(inner, at);
    if (found !== null) return found;
  }
  return null;
}

/** Why such a line is refused, and what to do. */
export function loneSurrogateMessage(path: string): string {
  return `${path} holds half of a UTF-16 surrogate pair (a \\ud800-\\udfff escape with no partner), which is no character: providers refuse such a request (400); remove it, or write the whole character (both halves, e.g. \\ud83d\\ude00)`;
}
