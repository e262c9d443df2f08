import pino, { type Logger } from 'pino';
import { jsonWithControlsEscaped } from './control-characters.ts';
import { writeLines } from './progress/terminal-lines.ts';

/**
 * Structured logs go to stderr, so stdout stays for the summary (they are few: the default level is warn). API keys never reach a log line:
 * anything that looks like a key or an auth header is redacted wherever it is nested.
 * Each entry is one readable line ("warning: ... (batch b1, row 36)"), on a terminal and in a
 * file alike (a nightly job's log is read by a person, among the summary's lines); with
 * LOG_FORMAT=json it stays pino's JSON line, for log collectors.
 */
const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/** What is wrong with a LOG_LEVEL value, or null when pino takes it. */
export function logLevelProblem(level: string | undefined): string | null {
  if (level === undefined || LOG_LEVELS.includes(level)) return null;
  return `LOG_LEVEL "${level}" is not a log level: use one of ${LOG_LEVELS.join(', ')} (or leave it unset for warn)`;
}

/** What is wrong with a LOG_FORMAT value (json, or readable lines), or null; any case is taken. */
export function logFormatProblem(format: string | undefined): string | null {
  if (format === undefined || ['json', 'text', ''].includes(format.toLowerCase())) return null;
  return `LOG_FORMAT "${format}" is not a log format: use json (one JSON object a line, for log collectors), or leave it unset for readable lines`;
}

export function createLogger(level = process.env.LOG_LEVEL ?? 'warn', options: { readable?: boolean } = {}): Logger {
  const readable = options.readable ?? process.env.LOG_FORMAT?.toLowerCase() !== 'json';
  return pino(
    {
      level,
      base: undefined,
      redact: {
        paths: ['apiKey', '*.apiKey', 'api_key', '*.api_key', 'authorization', '*.authorization', 'headers.authorization', '*.headers.authorization', 'config.providers.*.api_key'],
        censor: '[redacted]',
      },
    },
    // Through writeLines, so a warning printed while run's progress bar is up lands above the bar.
    { write: (line: string) => writeLines(process.stderr, readable ? readableLogLine(line) : jsonWithControlsEscaped(line)) },
  );
}

const LEVEL_NAMES: Record<number, string> = { 10: 'trace', 20: 'debug', 30: 'info', 40: 'warning', 50: 'error', 60: 'fatal' };

/** One pino JSON line as a person reads it: "warning: <msg> (batch b1, row 36, code x)". */
export function readableLogLine(jsonLine: string): string {
  let entry: Record<string, unknown>;
  try {
    entry = JSON.parse(jsonLine) as Record<string, unknown>;
  } catch {
    return jsonLine;
  }
  const { level, time: _time, msg, err, ...fields } = entry;
  const name = (typeof level === 'number' && LEVEL_NAMES[level]) || String(level ?? 'log');
  const message = String(msg ?? '');
  // A detail the message says already ("batch b1: rows wait ..." with batch b1) is not said again (QA).
  const details = Object.entries(fields)
    .map(([key, value]) => `${key} ${typeof value === 'string' ? value : JSON.stringify(value)}`)
    .filter((detail) => !mentions(message, detail));
  const errorText = err && typeof err === 'object' && 'message' in err ? `: ${String(err.message)}` : '';
  return `${name}: ${message}${errorText}${details.length > 0 ? ` (${details.join(', ')})` : ''}\n`;
}

/** Whether `text` holds `phrase` as words of its own: "batch b1" is in "batch b1: ..." and "... batch b1.", not in "batch b12" or "batch b1.2". */
function mentions(text: string, phrase: string): boolean {
  const word = /[\p{L}\p{N}_-]/u;
  const joins = (char: string | undefined) => char !== undefined && (word.test(char) || char === '.');
  for (let at = text.indexOf(phrase); at !== -1; at = text.indexOf(phrase, at + 1)) {
    const after = text[at + phrase.length];
    // A full stop ends the phrase unless a word goes on after it (an id with a dot).
    const endsThere = !joins(after) || (after === '.' && !joins(text[at + phrase.length + 1]));
    if (!joins(text[at - 1]) && endsThere) return true;
  }
  return false;
}
