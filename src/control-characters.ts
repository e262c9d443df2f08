/**
 * Control characters but tab and line feed: C0, DEL and C1. What the CLI says and report.md quote
 * text from input files (a model name, a column) and from providers (an error's message), which a
 * terminal would run as commands (colours, a window title, a cleared screen) when it is printed or
 * the file is `cat`.
 */
const CONTROL_CHARACTERS = /[\x00-\x08\x0b-\x1f\x7f-\x9f]/g;

/** The text with each control character written out as `\x1b`, so that it is seen, not run. */
export function withControlsShown(text: string): string {
  return text.replace(CONTROL_CHARACTERS, (char) => `\\x${char.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

/** The control characters JSON.stringify leaves as they are (it escapes C0 itself): DEL and C1. */
const UNESCAPED_IN_JSON = /[\x7f-\x9f]/g;

/**
 * JSON text (a LOG_FORMAT=json line, `status --json`) with DEL and the C1 controls escaped as JSON
 * does (`\u009b`): still the same JSON, and nothing a terminal runs. withControlsShown's `\x9b`
 * would make it invalid JSON, which a log collector or `jq` refuses.
 */
export function jsonWithControlsEscaped(json: string): string {
  return json.replace(UNESCAPED_IN_JSON, (char) => `\\u${char.charCodeAt(0).toString(16).padStart(4, '0')}`);
}
