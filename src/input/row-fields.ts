import type { ChatMessage, ReadItem, RowError, RowRules } from './row.ts';
import { meantHint } from '../config/closest-name.ts';
import { isInexactInteger, inexactIntegerText } from './inexact-integer.ts';
import { requestFieldProblem, type NumberWritten } from './request-fields.ts';

/** What a reader found in one record, before the checks every reader shares. */
export interface RawFields {
  /** Id from the record itself; empty or missing means "use the row number". */
  id?: string | undefined;
  /** Set when the record gives a single prompt (CSV, JSONL `prompt`). */
  prompt?: string | undefined;
  /** Set when the record gives a whole conversation (JSONL `messages`, OpenAI Batch body). */
  messages?: ChatMessage[] | undefined;
  system?: string | undefined;
  model?: string | undefined;
  /** A number or numeric text; empty text, null and undefined mean "not set". */
  temperature?: unknown;
  max_tokens?: unknown;
  /** The field `max_tokens` came from, when not `max_tokens` (a JSONL line's max_completion_tokens): messages name the field written. */
  maxTokensKey?: string | undefined;
  /** How the record wrote a field's number (a JSONL line: JSON.parse rounds one past 2^53-1), for a message that shows it as written. */
  numberWritten?: NumberWritten | undefined;
  metadata: Record<string, unknown>;
  custom_id?: string | undefined;
  params?: Record<string, unknown> | undefined;
}

/**
 * A record's token limit from its max_tokens and max_completion_tokens (OpenAI's newer name,
 * which wins, as on an OpenAI Batch line), and the field it came from for messages to name.
 */
export function tokenLimitFields(maxTokens: unknown, maxCompletionTokens: unknown): Pick<RawFields, 'max_tokens' | 'maxTokensKey'> {
  const completion = maxCompletionTokens !== undefined && maxCompletionTokens !== null;
  return { max_tokens: completion ? maxCompletionTokens : maxTokens, maxTokensKey: completion ? 'max_completion_tokens' : undefined };
}

export interface RecordPosition {
  row: number;
  line: number;
}

/** How many known model names an `unknown_model` message lists before "and N more". */
const MAX_LISTED_MODELS = 10;

type Problem = Pick<RowError, 'code' | 'message'>;

/** Builds the row or the row's error from a record's fields: one place for every reader's field rules. */
export function buildRow(fields: RawFields, pos: RecordPosition, rules: RowRules): ReadItem {
  const id = emptyToUndefined(fields.id)?.trim() ?? String(pos.row);
  const fail = (problem: Problem): ReadItem => ({ kind: 'error', value: { ...pos, id, ...(fields.custom_id !== undefined && { custom_id: fields.custom_id }), ...problem } });

  const messages = buildMessages(fields);
  if (messages === undefined) {
    const where = fields.messages === undefined ? '' : ' (no "user" message has any text)';
    return fail({ code: 'missing_prompt', message: `the prompt is empty${where}` });
  }
  const temperature = parseTemperature(fields.temperature, rules.decimalComma === true);
  if (typeof temperature === 'object') return fail(temperature);
  const maxTokens = parseMaxTokens(fields.max_tokens, fields.maxTokensKey ?? 'max_tokens', fields.numberWritten);
  if (typeof maxTokens === 'object') return fail(maxTokens);
  // Sent as written: a wrong type would be refused by the provider on every call of the row.
  const fieldProblem = fields.params === undefined ? null : requestFieldProblem(fields.params, fields.numberWritten);
  if (fieldProblem !== null) return fail({ code: 'bad_field', message: fieldProblem });
  const model = emptyToUndefined(fields.model)?.trim();
  if (model !== undefined && !rules.knownModels.has(model)) {
    return fail(unknownModel(model, rules.knownModels));
  }

  return {
    kind: 'row',
    value: {
      ...pos,
      id,
      messages,
      ...(model !== undefined && { model }),
      ...(temperature !== undefined && { temperature }),
      ...(maxTokens !== undefined && { max_tokens: maxTokens }),
      metadata: fields.metadata,
      ...(fields.custom_id !== undefined && { custom_id: fields.custom_id }),
      ...(fields.params !== undefined && { params: fields.params }),
    },
  };
}

/**
 * The optional system message, then the prompt as the user's message; undefined when there is no
 * prompt. A conversation whose user messages are all blank asks nothing, as a blank prompt does:
 * it would be sent and paid for.
 */
function buildMessages(fields: RawFields): ChatMessage[] | undefined {
  const system = emptyToUndefined(fields.system);
  const head: ChatMessage[] = system === undefined ? [] : [{ role: 'system', content: system }];
  if (fields.messages !== undefined) {
    const asks = fields.messages.some((message) => message.role === 'user' && message.content.trim() !== '');
    return asks ? [...head, ...fields.messages] : undefined;
  }
  if (fields.prompt === undefined || fields.prompt.trim() === '') return undefined;
  return [...head, { role: 'user', content: fields.prompt }];
}

function parseTemperature(value: unknown, decimalComma: boolean): number | undefined | Problem {
  const n = toNumber(decimalComma && typeof value === 'string' && /^\s*[+-]?\d*,\d+\s*$/.test(value) ? value.replace(',', '.') : value);
  if (n === undefined) return undefined;
  if (Number.isFinite(n) && n >= 0 && n <= 2) return n;
  return badField('temperature', 'a number from 0 to 2', value);
}

function parseMaxTokens(value: unknown, key: string, numberWritten: NumberWritten | undefined): number | undefined | Problem {
  const n = toNumber(value);
  if (n === undefined) return undefined;
  if (Number.isSafeInteger(n) && n > 0) return n;
  // Past 2^53-1 the number read is not the one written: said so, as written, rather than shown rounded.
  if (n > 0 && isInexactInteger(n)) {
    const written = typeof value === 'string' ? value.trim() : numberWritten?.(key);
    return { code: 'bad_field', message: `${key} must be a positive integer up to ${Number.MAX_SAFE_INTEGER} (2^53-1), got ${inexactIntegerText(n, written)}` };
  }
  return badField(key, 'a positive integer', value);
}

const DECIMAL = /^[+-]?(\d+\.?\d*|\.\d+)$/;

/**
 * undefined for "not set"; NaN for anything that is not a number, so the range check rejects it.
 * Numeric text is a number in every format, JSONL too: a CSV cell is text, and a JSONL file made
 * from a sheet often quotes its numbers; the number read is what the call sends.
 */
function toNumber(value: unknown): number | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'number') return value;
  if (typeof value === 'string') {
    const text = value.trim();
    if (text === '') return undefined;
    // Number() also reads 0x10, 0b11, 1e3 and Infinity, which a spreadsheet cell holding them did not mean as numbers.
    return DECIMAL.test(text) ? Number(text) : Number.NaN;
  }
  return Number.NaN;
}

function badField(column: string, expected: string, value: unknown): Problem {
  const shown = typeof value === 'number' ? String(value) : JSON.stringify(value);
  return { code: 'bad_field', message: `${column} must be ${expected}, got ${shown}` };
}

function unknownModel(model: string, known: ReadonlySet<string>): Problem {
  const names = [...known];
  const listed = names.slice(0, MAX_LISTED_MODELS).join(', ');
  const more = names.length > MAX_LISTED_MODELS ? ` and ${names.length - MAX_LISTED_MODELS} more` : '';
  const list = names.length === 0 ? '(none configured)' : listed + more;
  return { code: 'unknown_model', message: `unknown model "${model}"${meantHint(model, names)}; known models: ${list}` };
}

/**
 * Readers decode files as UTF-8, which turns bytes that are not UTF-8 (a Windows-1252 or Latin-1
 * export from Excel, say) into U+FFFD. Such a row is refused rather than sent: the model would be
 * paid to answer mangled text. U+FFFD written as such (EF BF BD) is text like any other, and its
 * row is read (undecodable-bytes.ts tells them apart).
 */
export function notUtf8(line: number, format: 'csv' | 'jsonl' = 'csv', file: Pick<RowRules, 'overHttp' | 'utf16'> = {}): Pick<RowError, 'code' | 'message'> {
  const { overHttp = false } = file;
  // A UTF-16 file's: half of a surrogate pair (an export cut a character in two), or an odd last byte (a file cut short).
  // Its encoding is not what is wrong, so saving it as UTF-8 is no way on (UTF-8 cannot hold half a pair either).
  if (file.utf16) {
    const head = `line ${line} is not UTF-16 text (half of a surrogate pair, or a last byte without its pair, cannot be decoded)`;
    return { code: 'bad_encoding', message: `${head}; fix that line (or export the file again) and ${overHttp ? 'post it' : 'run it'} again` };
  }
  const head = `line ${line} is not UTF-8 text (some bytes cannot be decoded)`;
  // A posted file is turned into UTF-8 from the charset its Content-Type names (QA: the advice was to save the file and run it again).
  if (overHttp) {
    const contentType = format === 'csv' ? 'text/csv; charset=windows-1252, as Excel saves "CSV" on Windows' : 'application/jsonl; charset=windows-1252, say';
    return { code: 'bad_encoding', message: `${head}; name the file's charset in the Content-Type (${contentType}) and post it again, or send it as UTF-8` };
  }
  const how = format === 'csv' ? ' (in Excel: "CSV UTF-8")' : '';
  return { code: 'bad_encoding', message: `${head}; save the file as UTF-8${how} and run it again` };
}

export const hasReplacementChar = (text: string): boolean => text.includes('\uFFFD');

function emptyToUndefined(value: string | undefined): string | undefined {
  return value === undefined || value.trim() === '' ? undefined : value;
}
