import { isUtf8 } from 'node:buffer';
import { z } from 'zod';
import { UsageError } from '../errors.ts';
import { readTextInput, type TextInput } from './text-input.ts';
import { looksLikeOpenAiBatchLine, openAiBatchLineFields, openAiBatchLineSchema, SENT_BODY_FIELDS } from './openai-batch-line.ts';
import { buildRow, hasReplacementChar, notUtf8, tokenLimitFields, type RawFields, type RecordPosition } from './row-fields.ts';
import { chatMessageSchema, type ReadItem, type ReadPosition, type RowError, type RowRules } from './row.ts';
import { issueText } from '../config/issue-text.ts';
import { nestedTooDeep, TOO_DEEP_MESSAGE } from './json-depth.ts';
import { loneSurrogateMessage, loneSurrogatePath } from './lone-surrogate.ts';
import { tooManyKeysMessage, wideLine } from './row-keys.ts';
import { DELIMITER_NAMES, sniffCsvDelimiter } from './csv-delimiter.ts';

/**
 * A prompt line: exactly one of `prompt` or `messages`. Keys not listed here are carried
 * into `metadata` (as CSV columns are), beside the line's own `metadata` object, which wins.
 */
const promptLineSchema = z.looseObject({
  id: z
    .union([z.string(), z.number()], { error: 'must be a string or a number' })
    // JSON.parse has already rounded such a number (12345678901234567891 reads as ...600): the row would carry another id.
    .refine((id) => typeof id === 'string' || Number.isSafeInteger(id) || !Number.isInteger(id), {
      error: 'is a number too large to be read exactly (above 2^53); write it as a string, in quotes',
    })
    .optional(),
  prompt: z.string().optional(),
  messages: z.array(chatMessageSchema).min(1).optional(),
  model: z.string().optional(),
  system: z.string().optional(),
  // Checked by the shared field rules (row-fields.ts).
  temperature: z.unknown().optional(),
  max_tokens: z.unknown().optional(),
  max_completion_tokens: z.unknown().optional(),
  metadata: z.record(z.string(), z.unknown()).optional(),
});

/** What a line should look like, its prompt under `promptKey` (--prompt-column, "prompt" by default). */
const expected = (promptKey: string): string =>
  `expected {"${promptKey}": "..."}${promptKey === 'prompt' ? '' : ' (--prompt-column)'} or {"messages": [{"role", "content"}, ...]}, ` +
  'or an OpenAI Batch request line {"custom_id", "method", "url", "body"}';

/** Streams a JSONL file: one record per non-blank line; `row` and `line` are the 1-based line number. */
export function readJsonlRows(path: string, rules: RowRules, position?: ReadPosition): AsyncGenerator<ReadItem> {
  return readTextInput(path, (input) => readJsonlInput(path, input, input.utf16 ? { ...rules, utf16: true } : rules, position));
}

async function* readJsonlInput(path: string, input: TextInput, rules: RowRules, position: ReadPosition | undefined): AsyncGenerator<ReadItem> {
  const { handle, bytes } = input;
  if (position) position.fileBytes = bytes;
  const source = handle.createReadStream() as AsyncIterable<Buffer>;
  let line = 0;
  let records = 0;
  // OpenAI Batch lines only: custom_id -> the line that used it first, valid or not (an invalid
  // line's id is in batch_errors.jsonl). OpenAI refuses a file that repeats one, and tools reading
  // batch_output.jsonl match answers to requests by it.
  const customIdLines = new Map<string, number>();
  for await (const { raw, undecodable } of splitLines(source)) {
    line += 1;
    if (position) position.bytesRead += Buffer.byteLength(raw) + 1; // + its newline (a CRLF line counts one short: fine for an estimate)
    // A byte order mark starts the file, or a later line where two files were joined.
    const text = raw.charCodeAt(0) === 0xfeff ? raw.slice(1) : raw;
    if (text.trim() === '') continue;
    if (records === 0 && text.trimStart().startsWith('[')) throw jsonArrayFile(path, line, rules);
    if (records === 0) refuseCsvFile(text, path, rules);
    records += 1;
    const item = parseLine(text, { row: line, line }, rules, position, undecodable);
    const customId = item.value.custom_id;
    if (customId !== undefined) {
      const first = customIdLines.get(customId);
      if (first !== undefined) {
        yield rowError({ row: line, line }, 'duplicate_id', `custom_id "${customId}" is already used on line ${first}; OpenAI Batch input needs each custom_id once, as answers are matched to requests by it`, customId, customId);
        continue;
      }
      customIdLines.set(customId, line);
    }
    yield item;
  }
  if (records === 0) throw new UsageError(`input file has no records (only blank lines): ${path}`);
}

/**
 * A file that opens with "[" is a JSON array (often pretty-printed, one element per line, which
 * would otherwise run the lines that happen to be whole objects and fail the rest): refused as a
 * whole, before any row is queued.
 */
function jsonArrayFile(path: string, line: number, rules: RowRules): UsageError {
  const fix = rules.overHttp ? 'send it as JSON, with Content-Type application/json (or ?format=json)' : "convert it, e.g. jq -c '.[]' in.json > in.jsonl, and run that file";
  return new UsageError(`input file ${path} is a JSON array (line ${line} starts with "["), not JSON Lines, which has one object per line; ${fix}`);
}

/**
 * A CSV file read as JSONL (posted as application/jsonl, or saved as .jsonl) would have every line
 * a bad_json row, and a batch "completed" with none run (QA): a first line that is no JSON but
 * reads as a header, several column names or the prompt column alone, refuses the file before any
 * row. A first line that only looks broken (a comment, `key: value` pairs) stays that line's error.
 */
function refuseCsvFile(text: string, path: string, rules: RowRules): void {
  const line = text.trim();
  if (/^([{[]|\/\/|#)/.test(line) || parses(line)) return;
  const separator = sniffCsvDelimiter(line);
  const names = line.split(separator).map((name) => name.trim().replace(/^"(.*)"$/, '$1'));
  const header = names.length > 1 ? names.every((name) => !/[{}:]/.test(name)) : names[0] === (rules.promptColumn || 'prompt');
  if (!header) return;
  const fix = rules.overHttp ? 'send it as CSV, with Content-Type text/csv (or ?format=csv)' : `give it a ${separator === '\t' ? '.tsv' : '.csv'} name and run that file`;
  throw new UsageError(`input file ${path} is CSV, not JSON Lines: its first line, ${line}, is no JSON object but a header of columns separated by ${DELIMITER_NAMES[separator]}; ${fix}`);
}

/**
 * JSON.parse's message without its "(line 1 column 38)": the text it parsed is one line of the
 * file, whose own number the error gives already, so only the column is said.
 */
function parseErrorText(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return message
    .replace(/(?: in JSON)? at position \d+ \(line \d+ column (\d+)\)/, ' at column $1')
    .replace(/(?: in JSON)? at position (\d+)$/, (_, position: string) => ` at column ${Number(position) + 1}`);
}

/** What a line that does not parse most likely got wrong, when it is the usual slip (a comment, a trailing comma, a JSON array's commas, a pretty-printed object). */
function jsonLineHint(text: string): string {
  const trimmed = text.trim();
  if (trimmed.startsWith('//') || trimmed.startsWith('#')) return ' (a comment line: JSON has no comments; delete the line, or leave it blank)';
  if (/,\s*[}\]]/.test(trimmed) && parses(withoutTrailingCommas(trimmed))) return ' (a comma before a } or ]: JSON allows none after the last item; delete it)';
  if (trimmed.endsWith(',') && parses(trimmed.slice(0, -1))) return ' (the line ends with a comma: JSONL has one object per line and nothing between them)';
  if (trimmed === '{' || trimmed === '[' || trimmed === '}' || trimmed === ']') return ' (an object spread over several lines: JSONL needs each one on a single line, e.g. jq -c . file.json)';
  return '';
}

/** The text with each comma that is followed only by spaces and a } or ] dropped, outside strings. */
function withoutTrailingCommas(text: string): string {
  let out = '';
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const char = text[i]!;
    if (inString) {
      if (char === '\\') {
        out += char + (text[i + 1] ?? '');
        i += 1;
        continue;
      }
      if (char === '"') inString = false;
    } else if (char === '"') {
      inString = true;
    } else if (char === ',' && /^\s*[}\]]/.test(text.slice(i + 1))) {
      continue;
    }
    out += char;
  }
  return out;
}

function parses(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

function parseLine(text: string, pos: RecordPosition, rules: RowRules, position: ReadPosition | undefined, undecodable: boolean): ReadItem {
  // Before any JSON.parse, which on a line of 500,000 keys alone held the event loop for half a second.
  const wide = wideLine(text, rules.promptColumn || 'prompt');
  if (wide !== null) {
    const batchLine = looksLikeOpenAiBatchLine(wide.fields, rules.promptColumn || 'prompt');
    return rowError(pos, 'bad_field', tooManyKeysMessage(wide.keys), idOf(wide.fields, batchLine), batchLine ? customIdOf(wide.fields) : undefined);
  }
  if (undecodable) return undecodedLine(text, pos, rules);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    return rowError(pos, 'bad_json', `invalid JSON: ${parseErrorText(error)}${jsonLineHint(text)}`);
  }
  const promptKey = rules.promptColumn || 'prompt';
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return rowError(pos, 'bad_field', `a line must be a JSON object; ${expected(promptKey)}`);
  }
  const object = value as Record<string, unknown>;
  const batchLine = looksLikeOpenAiBatchLine(object, promptKey);
  const id = idOf(object, batchLine);
  if (nestedTooDeep(object)) return rowError(pos, 'bad_field', TOO_DEEP_MESSAGE, id, batchLine ? customIdOf(object) : undefined);
  const halfCharacter = loneSurrogatePath(text, object);
  if (halfCharacter !== null) return rowError(pos, 'bad_encoding', loneSurrogateMessage(halfCharacter), id, batchLine ? customIdOf(object) : undefined);
  const fields = batchLine ? batchFields(object) : promptFields(object, promptKey);
  if (!batchLine && !('code' in fields)) countUnsentRequestFields(object, position);
  if ('code' in fields) return rowError(pos, fields.code, fields.message, id, batchLine ? customIdOf(object) : undefined);
  // A Batch line's request fields are its body's.
  fields.numberWritten = (key) => numberWrittenAs(text, batchLine ? ['body', key] : [key]);
  return buildRow(fields, pos, rules);
}

/**
 * The text `line` wrote the number at `path` as, which JSON.parse's reviver is given beside the
 * number (its source text): one past 2^53-1 has lost digits in the number. Parsed again only for
 * a row refused for such a number, so a file of good rows pays nothing for it. Told apart by the
 * object holding it, not by its value: a metadata field of the same name may round to the same number.
 */
function numberWrittenAs(line: string, path: readonly [...string[], string]): string | undefined {
  const key = path[path.length - 1];
  const written = new Map<unknown, string>();
  const root: unknown = JSON.parse(line, function (this: unknown, name: string, value: unknown, context?: { source?: string }) {
    if (name === key && typeof value === 'number' && context?.source !== undefined) written.set(this, context.source);
    return value;
  });
  const holder = path.slice(0, -1).reduce<unknown>((object, step) => (typeof object === 'object' && object !== null ? (object as Record<string, unknown>)[step] : undefined), root);
  return written.get(holder);
}

type FieldsOrProblem = RawFields | Pick<RowError, 'code' | 'message'>;

function batchFields(object: Record<string, unknown>): FieldsOrProblem {
  const parsed = openAiBatchLineSchema.safeParse(object);
  if (!parsed.success) {
    // A request of another kind (embeddings, GET): what its body lacks for a chat completion is beside the point.
    const kind = parsed.error.issues.filter((issue) => issue.path[0] === 'url' || issue.path[0] === 'method');
    return { code: 'bad_field', message: `OpenAI Batch request line: ${describeIssues(kind.length > 0 ? new z.ZodError(kind) : parsed.error)}` };
  }
  return openAiBatchLineFields(parsed.data);
}

function promptFields(object: Record<string, unknown>, promptKey: string): FieldsOrProblem {
  if (promptKey !== 'prompt' && object[promptKey] !== undefined) {
    if (object['prompt'] !== undefined) return { code: 'bad_field', message: `set either "${promptKey}" (--prompt-column) or "prompt", not both` };
    const { [promptKey]: prompt, ...rest } = object;
    object = { ...rest, prompt };
  }
  const parsed = promptLineSchema.safeParse(object);
  if (!parsed.success) {
    // Only a line whose prompt is wrong needs the reminder of a line's shape; a field's own problem (id, messages[0].role) does not.
    const shapeWrong = parsed.error.issues.some((issue) => issue.path.length === 0 || (issue.path.length === 1 && (issue.path[0] === 'prompt' || issue.path[0] === 'messages')));
    return { code: 'bad_field', message: shapeWrong ? `${describeIssues(parsed.error, promptKey)}; ${expected(promptKey)}` : describeIssues(parsed.error, promptKey) };
  }
  const { id, prompt, messages, model, system, temperature, max_tokens, max_completion_tokens } = parsed.data;
  // Taken from the line as parsed, not from zod's copy, which leaves out a key named __proto__ (QA: it silently disappeared from metadata).
  const { metadata, ...extra } = Object.fromEntries(Object.entries(object).filter(([key]) => !PROMPT_LINE_FIELDS.has(key)));
  if (prompt !== undefined && messages !== undefined) {
    return { code: 'bad_field', message: `set either "${promptKey}" or "messages", not both` };
  }
  if (prompt === undefined && messages === undefined) return { code: 'missing_prompt', message: noPromptMessage(object, promptKey) };
  const common = { id: id === undefined ? undefined : String(id), model, system, temperature, ...tokenLimitFields(max_tokens, max_completion_tokens) };
  let params: Record<string, unknown> | undefined;
  const carried: [string, unknown][] = [];
  for (const [key, value] of Object.entries(extra)) {
    if (PROMPT_LINE_PARAMS.has(key)) (params ??= {})[key] = value;
    else carried.push([key, value]);
  }
  // Spread and made from entries, a __proto__ key is kept as a key; assigned, it would set the object's prototype.
  return { ...common, prompt, messages, metadata: { ...Object.fromEntries(carried), ...(metadata as Record<string, unknown> | undefined) }, ...(params && { params }) };
}

/**
 * Request fields a prompt line may set beside its prompt, sent with the call as an OpenAI Batch
 * line's body sends them (structured output among them); `user`, which those send too, stays
 * metadata here, where it is more likely a column of the user's own.
 */
const PROMPT_LINE_PARAMS: ReadonlySet<string> = new Set([...SENT_BODY_FIELDS].filter((key) => key !== 'user'));

/** The fields promptLineSchema reads; the line's other keys go to its metadata. */
const PROMPT_LINE_FIELDS: ReadonlySet<string> = new Set(Object.keys(promptLineSchema.shape).filter((key) => key !== 'metadata'));

/** Fields of a prompt line that are never its prompt. */
const SETTING_KEYS: ReadonlySet<string> = new Set(['id', 'model', 'system', 'temperature', 'max_tokens', 'max_completion_tokens', 'metadata']);

/**
 * OpenAI request fields that would change what an answer is (several, streamed, tool calls...), as
 * a Batch line's unsent body fields: on a prompt line they are metadata like any other key, and the
 * run says so once, since whoever wrote them meant them for the model.
 */
const UNSENT_REQUEST_FIELDS: ReadonlySet<string> = new Set(['n', 'stream', 'stream_options', 'tools', 'tool_choice', 'functions', 'function_call', 'parallel_tool_calls', 'logprobs', 'top_logprobs', 'service_tier', 'store', 'modalities', 'audio', 'prediction', 'web_search_options']);

function countUnsentRequestFields(object: Record<string, unknown>, position: ReadPosition | undefined): void {
  if (!position) return;
  for (const key of Object.keys(object)) {
    if (!UNSENT_REQUEST_FIELDS.has(key)) continue;
    const counts = (position.unsentRequestFields ??= {});
    counts[key] = (counts[key] ?? 0) + 1;
  }
}

/** How many of a line's field names a missing_prompt message lists before "and N more". */
const MAX_LISTED_FIELDS = 10;

/**
 * A line with neither prompt nor messages: its fields, and, when one of them holds text (the
 * longest, when several do), the --prompt-column that would take the prompt from it.
 */
function noPromptMessage(object: Record<string, unknown>, promptKey: string): string {
  const sought = promptKey === 'prompt' ? '"prompt" or "messages"' : `"${promptKey}" (--prompt-column), "prompt" or "messages"`;
  const names = Object.keys(object);
  if (names.length === 0) return `the line is an empty object; ${expected(promptKey)}`;
  const more = names.length > MAX_LISTED_FIELDS ? ` and ${names.length - MAX_LISTED_FIELDS} more` : '';
  const has = `no ${sought} field; the line's fields are ${names.slice(0, MAX_LISTED_FIELDS).join(', ')}${more}`;
  let text: string | undefined;
  for (const name of names) {
    const value = object[name];
    if (SETTING_KEYS.has(name) || typeof value !== 'string' || value.trim() === '') continue;
    if (text === undefined || value.length > (object[text] as string).length) text = name;
  }
  if (text === undefined) return `${has}; ${expected(promptKey)}`;
  return `${has}: if "${text}" holds the prompt, name it with --prompt-column ${text} (prompt_column=${text} in the HTTP API)`;
}

/** The id a line's error is given: a Batch line's custom_id, a prompt line's id (its custom_id, if any, is metadata). */
function idOf(object: Record<string, unknown>, batchLine: boolean): string | undefined {
  const id = (batchLine ? object['custom_id'] : undefined) ?? object['id'];
  // A rounded integer would name another row.
  return typeof id === 'string' || (typeof id === 'number' && (Number.isSafeInteger(id) || !Number.isInteger(id))) ? String(id) : undefined;
}

/**
 * A Batch API line's custom_id, for its error line in batch_errors.jsonl: a number is given as text
 * (a number is what is wrong with such a line, and its error still needs an id to be matched by).
 */
function customIdOf(object: Record<string, unknown>): string | undefined {
  const customId = object['custom_id'];
  if (typeof customId === 'number' && Number.isFinite(customId)) return String(customId);
  return typeof customId === 'string' && customId !== '' ? customId : undefined;
}

/** A line with bytes that are not UTF-8, refused with its id (and custom_id) when they are readable whole: errors are matched to rows by them. */
function undecodedLine(text: string, pos: RecordPosition, rules: RowRules): ReadItem {
  const { message } = notUtf8(pos.line, 'jsonl', rules);
  let object: unknown = null;
  try {
    object = JSON.parse(text);
  } catch {
    // Not JSON either: refused for its bytes all the same.
  }
  const fields = typeof object === 'object' && object !== null && !Array.isArray(object) ? (object as Record<string, unknown>) : {};
  const batchLine = looksLikeOpenAiBatchLine(fields, rules.promptColumn || 'prompt');
  const readable = (value: string | undefined) => (value !== undefined && !hasReplacementChar(value) ? value : undefined);
  return rowError(pos, 'bad_encoding', message, readable(idOf(fields, batchLine)), batchLine ? readable(customIdOf(fields)) : undefined);
}

function rowError(pos: RecordPosition, code: RowError['code'], message: string, id?: string, customId?: string): ReadItem {
  return { kind: 'error', value: { ...pos, ...(id !== undefined && { id }), ...(customId !== undefined && { custom_id: customId }), code, message } };
}

/** Zod issues on one line: `messages[0].role: Invalid option ...; temperature: ...` (first three), the prompt under its own key. */
function describeIssues(error: z.ZodError, promptKey = 'prompt'): string {
  return error.issues
    .slice(0, 3)
    .map((issue) => {
      const path = issue.path.map((key) => (typeof key === 'number' ? `[${key}]` : `.${key === 'prompt' ? promptKey : String(key)}`)).join('');
      return path === '' ? issueText(issue) : `${path.replace(/^\./, '')}: ${issueText(issue)}`;
    })
    .join('; ');
}

/** A line's text, and whether it holds U+FFFD for bytes that are not UTF-8 (not only U+FFFD written as such). */
interface Line {
  raw: string;
  undecodable: boolean;
}

/**
 * Splits a byte stream on "\n", dropping a "\r" before it; a last line without "\n" is kept. The
 * lines a chunk ends are decoded at once, as a text stream would; only when their text holds U+FFFD
 * are they split as bytes too, to tell each one's by its bytes (undecodable-bytes.ts). A "\n" is
 * never part of a multi-byte character, nor taken into a U+FFFD, so text and bytes split alike.
 */
async function* splitLines(source: AsyncIterable<Buffer>): AsyncGenerator<Line> {
  let pending: Buffer[] = [];
  for await (const chunk of source) {
    const last = chunk.lastIndexOf(0x0a);
    if (last === -1) {
      pending.push(chunk);
      continue;
    }
    const lines = pending.length === 0 ? chunk.subarray(0, last) : Buffer.concat([...pending, chunk.subarray(0, last)]);
    pending = last + 1 < chunk.length ? [chunk.subarray(last + 1)] : [];
    yield* linesOf(lines);
  }
  if (pending.length > 0) yield* linesOf(Buffer.concat(pending));
}

function* linesOf(bytes: Buffer): Generator<Line> {
  const text = bytes.toString('utf8');
  const checked = text.includes('\uFFFD');
  let start = 0;
  let byteStart = 0;
  for (;;) {
    const nl = text.indexOf('\n', start);
    const raw = text.slice(start, nl === -1 ? undefined : nl);
    let undecodable = false;
    if (checked) {
      const byteEnd = nl === -1 ? bytes.length : bytes.indexOf(0x0a, byteStart);
      undecodable = raw.includes('\uFFFD') && !isUtf8(bytes.subarray(byteStart, byteEnd));
      byteStart = byteEnd + 1;
    }
    yield { raw: raw.endsWith('\r') ? raw.slice(0, -1) : raw, undecodable };
    if (nl === -1) return;
    start = nl + 1;
  }
}
