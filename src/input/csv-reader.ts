import { open, type FileHandle } from 'node:fs/promises';
import { pipeline } from 'node:stream';
import { CsvError, parse, type Options } from 'csv-parse';
import { parse as parseStrictly } from 'csv-parse/sync';
import { UsageError } from '../errors.ts';
import { DELIMITER_NAMES, excelSeparator, headerLine, sniffCsvDelimiter, type CsvDelimiter } from './csv-delimiter.ts';
import { readTextInput, type TextInput } from './text-input.ts';
import { lookalikeColumns, requestFieldColumns } from './row-field-lookalikes.ts';
import { recordsBeforeError } from './records-before-error.ts';
import { unusedName } from '../unused-name.ts';
import { formatCount } from '../figure-text.ts';
import { MAX_ROW_KEYS } from './row-keys.ts';
import { buildRow, hasReplacementChar, notUtf8, type RawFields, type RecordPosition } from './row-fields.ts';
import { undecodableAt } from './undecodable-bytes.ts';
import type { ReadItem, ReadPosition, RowRules } from './row.ts';

/** Guards against a runaway unclosed quote while still allowing long prompts (csv-parse's default is 128k). */
const MAX_RECORD_CHARS = 8 * 1024 * 1024;

/** A record as the parser hands it over: its fields, the line it starts on, and its bytes in the file. */
interface ParsedRecord {
  fields: string[];
  line: number;
  startByte: number;
  endByte: number;
}

interface Header {
  names: string[];
  promptColumn: string;
  /** Columns whose header is empty (named column_<n>): a row's empty field there is no metadata (a header that ends with a separator). */
  unnamed: ReadonlySet<string>;
}

/**
 * Streams a CSV file with a header row, its fields separated by commas, semicolons or tabs (as its
 * header line shows: csv-delimiter.ts). The prompt column is `rules.promptColumn`; `id`, `model`,
 * `system`, `temperature` and `max_tokens` are optional; every other column goes into metadata as text.
 * A record with the wrong number of fields becomes a `bad_csv` item; an unclosed quote stops the file,
 * also when a later stray quote would have ended it (runOnQuote).
 */
export function readCsvRows(path: string, rules: RowRules, position?: ReadPosition): AsyncGenerator<ReadItem> {
  return readTextInput(path, (input) => readCsvInput(path, input, input.utf16 ? { ...rules, utf16: true } : rules, position));
}

async function* readCsvInput(path: string, input: TextInput, rules: RowRules, position: ReadPosition | undefined): AsyncGenerator<ReadItem> {
  const { handle, bytes, readPath } = input;
  if (position) position.fileBytes = bytes;
  const { delimiter, bom, sepLine } = await headerDelimiter(handle, bytes, path);
  // A UTF-16 file is from Windows tools (Excel's "Unicode Text"): results.csv gets the byte order mark Excel needs to read UTF-8.
  if (position) Object.assign(position, { csvDelimiter: delimiter, csvBom: bom || input.utf16 });
  const lines = lineCounter();
  let endOfLast = 0;
  const options: Options<ParsedRecord, string[]> = {
    delimiter,
    bom: true,
    relax_column_count: true, // checked per record below, so one bad record does not stop the file
    relax_quotes: true, // a stray quote inside an unquoted field is kept as text
    skip_empty_lines: true,
    record_delimiter: ['\r\n', '\n'], // also copes with files whose line endings are mixed
    max_record_size: MAX_RECORD_CHARS,
    // Lines are counted as the parser goes (it runs ahead of the rows taken), so an error it stops on has its exact line.
    on_record: (fields, info) => {
      const parsed = { fields, line: lines.start(fields, info.empty_lines), startByte: endOfLast, endByte: info.bytes };
      endOfLast = info.bytes;
      return parsed;
    },
  };
  // Its typings tie what on_record returns to the record type unless columns are named.
  const parser = parse(options as unknown as Options);
  // Errors from either stream surface through the parser's iteration below. csv-parse parses a whole
  // chunk before the first of its records comes out: with 16 KB chunks (not 64) a batch's first
  // record is read in 14-18 ms instead of 24-29 ms, and enqueueing 20,000 rows takes no longer.
  pipeline(handle.createReadStream({ highWaterMark: 16 * 1024 }), parser, () => {});
  let header: Header | undefined;
  let row = 0;
  // Excel writes a decimal comma where it separates fields with semicolons.
  const rowRules: RowRules = { ...rules, decimalComma: delimiter === ';' };
  // Excel's `sep=;` line is a record of its own (its line is counted), before the header.
  let skipSepLine = sepLine;
  const bytesOf = recordBytes(readPath);
  // The bytes of a record holding U+FFFD tell whether it is the character, written in the file, or bytes that are not UTF-8;
  // only such a record's are read again, and a record without one is not awaited for it (callers check first).
  // A UTF-16 file's UTF-8 copy has such bytes where the file was not UTF-16 (text-input.ts).
  const undecodable = async (record: ParsedRecord): Promise<number | null> => undecodableAt(await bytesOf.read(record.startByte, record.endByte));
  try {
    for await (const record of recordsBeforeError<ParsedRecord>(parser)) {
      const { fields, line } = record;
      if (position) position.bytesRead = record.endByte;
      if (header === undefined && isBlank(fields)) {
        // Before the header as after it, a line of spaces or separators is no record (headerLine skips it too).
      } else if (skipSepLine) {
        skipSepLine = false;
      } else if (header === undefined) {
        header = readHeader(fields, rules, path, delimiter, fields.some(hasReplacementChar) ? await undecodable(record) : null);
        if (position) {
          position.csvLookalikeColumns = lookalikeColumns(header.names, header.promptColumn);
          position.csvRequestFieldColumns = requestFieldColumns(header.names);
        }
      } else if (!isBlank(fields)) {
        if (fields.some(mayHaveRunOn) && (await quoteRunsOn(readPath, record, delimiter))) throw runOnQuote(path, record);
        row += 1;
        yield toItem(fields, header, { row, line }, rowRules, delimiter, fields.some(hasReplacementChar) ? await undecodable(record) : null);
      }
    }
  } catch (error) {
    if (error instanceof CsvError && error.code === 'CSV_MAX_RECORD_SIZE') throw await tooLargeRecord(path, readPath, { startByte: endOfLast, line: lines.peek(emptyLinesOf(error)) }, delimiter, header);
    throw describeAbort(error, path, lines);
  } finally {
    parser.destroy();
    await bytesOf.close();
  }
  if (header === undefined) throw new UsageError(`input file ${path} is empty (no header row): nothing to run`);
  if (row === 0) throw new UsageError(`input file has a header but no data rows: ${path}`);
}

/** How much of the file's start is read to find the header line's separator. */
const SNIFF_BYTES = 64 * 1024;

/**
 * The separator the file uses: the one its Excel `sep=` first line names (`sepLine`: that line is
 * skipped), else the header line's (csv-delimiter.ts); and whether the file starts with a UTF-8
 * byte order mark.
 */
async function headerDelimiter(handle: FileHandle, bytes: number, path: string): Promise<{ delimiter: CsvDelimiter; bom: boolean; sepLine: boolean }> {
  if (bytes === 0) return { delimiter: ',', bom: false, sepLine: false };
  const opening = Buffer.alloc(Math.min(bytes, SNIFF_BYTES));
  const { bytesRead } = await handle.read(opening, 0, opening.length, 0);
  const text = opening.toString('utf8', 0, bytesRead);
  const bom = text.charCodeAt(0) === 0xfeff;
  const header = headerLine(text);
  const named = excelSeparator(header);
  if (named !== null && typeof named === 'object') {
    throw new UsageError(`input file ${path}: its first line, sep=${named.unsupported}, names a separator that is not read; separate the fields with commas, semicolons or tabs (e.g. sep=;)`);
  }
  if (named !== null) return { delimiter: named, bom, sepLine: true };
  return { delimiter: sniffCsvDelimiter(header), bom, sepLine: false };
}


/** The "no prompt column" message lists this many columns at most, each cut to NAME_SHOWN characters: a file that is no CSV would print a screenful. */
const COLUMNS_LISTED = 30;
const NAME_SHOWN = 40;
/**
 * The most columns a header may have: a spreadsheet's (Excel's and LibreOffice's 16,384). Each
 * column is a metadata key carried by every row into results.csv; a header of a million columns
 * (a 14 MB upload, QA) held `serve`'s event loop for half a minute on the rows after it.
 */
export const MAX_CSV_COLUMNS = MAX_ROW_KEYS;

function readHeader(record: string[], rules: RowRules, path: string, delimiter: CsvDelimiter, undecodable: number | null): Header {
  const promptColumn = rules.promptColumn || 'prompt';
  if (record.length > MAX_CSV_COLUMNS) {
    throw new UsageError(
      `input file ${path}: its header has ${formatCount(record.length)} columns (separated by ${DELIMITER_NAMES[delimiter]}), more than the ${formatCount(MAX_CSV_COLUMNS)} Switchyard reads (a spreadsheet's limit too): ` +
        'keep the prompt column and the columns you want beside the answers in results.csv.',
    );
  }
  // Column names become results.csv's columns and metadata keys: mangled ones would be carried through every row.
  if (undecodable !== null) throw new UsageError(`input file ${path}: its header ${notUtf8(1, 'csv', rules).message.replace(/^line 1 /, '')}`);
  // An unnamed column is column_<n>, or column_<n>.2 (.3, ...) when a named column has that name: the
  // header's own names win, and two columns are never refused as one name twice that the file does not hold.
  const given = new Set(record.map((name) => name.trim()).filter((name) => name !== ''));
  const names = record.map((name, i) => name.trim() || unusedName(`column_${i + 1}`, given));
  const unnamed = new Set(names.filter((_, i) => record[i]!.trim() === ''));
  // Looked up in a set: indexOf for each column took hours for a header of a million columns, the server answering nothing meanwhile (QA).
  const seen = new Set<string>();
  const duplicate = names.find((name) => seen.has(name) || !seen.add(name));
  if (duplicate !== undefined) {
    throw new UsageError(`input file ${path}: column "${duplicate}" appears twice in the header`);
  }
  if (!names.includes(promptColumn)) {
    const near = names.find((name) => name.toLowerCase() === promptColumn.toLowerCase());
    const hint = near === undefined ? '' : ` (did you mean "${near}"?)`;
    throw new UsageError(
      `input file ${path} has no "${promptColumn}" column${hint}; its columns (separated by ${DELIMITER_NAMES[delimiter]}) are: ${listedColumns(names)}. ` +
        'Choose the prompt column with --prompt-column <name>.',
    );
  }
  return { names, promptColumn, unnamed };
}

function listedColumns(names: readonly string[]): string {
  const shown = names.slice(0, COLUMNS_LISTED).map((name) => (name.length > NAME_SHOWN ? `${name.slice(0, NAME_SHOWN)}…` : name));
  return shown.join(', ') + (names.length > COLUMNS_LISTED ? ` and ${names.length - COLUMNS_LISTED} more` : '');
}

/** `undecodable`: undecodableAt of the record's bytes (null: they are UTF-8, any U+FFFD in it is the character itself). */
function toItem(record: string[], header: Header, pos: RecordPosition, rules: RowRules, delimiter: CsvDelimiter, undecodable: number | null): ReadItem {
  // A refused row's id, as a valid row's would be (its row number when it has none), unless its own bytes are unreadable:
  // errors.jsonl lines are matched to rows by it.
  const id = record[header.names.indexOf('id')]?.trim() || String(pos.row);
  const readableId = undecodable !== null && hasReplacementChar(id) ? {} : { id };
  // Separators at the end of a line (a spreadsheet's export of empty columns) add no field worth refusing the row for.
  if (record.length > header.names.length && record.slice(header.names.length).every((field) => field.trim() === '')) record = record.slice(0, header.names.length);
  if (record.length !== header.names.length) {
    return { kind: 'error', value: { ...pos, ...readableId, code: 'bad_csv', message: fieldCountMessage(pos.line, header.names.length, record.length, delimiter) } };
  }
  if (undecodable !== null) return { kind: 'error', value: { ...pos, ...readableId, ...notUtf8(undecodedLine(record, pos.line, undecodable), 'csv', rules) } };
  // No text holds a NUL: a field with one is a binary file's bytes, or a file cut and pasted wrong; a model would be paid to answer it.
  if (record.some((field) => field.includes('\0'))) {
    return { kind: 'error', value: { ...pos, ...readableId, code: 'bad_encoding', message: `line ${pos.line} holds a NUL byte (0x00), which no text has: remove it, or check that the file is the CSV meant` } };
  }
  const fields: RawFields = { metadata: {} };
  const metadata: [string, string][] = [];
  header.names.forEach((name, i) => {
    const value = record[i] ?? '';
    if (name === header.promptColumn) fields.prompt = value;
    else if (name === 'id') fields.id = value;
    else if (name === 'model') fields.model = value;
    else if (name === 'system') fields.system = value;
    else if (name === 'temperature') fields.temperature = value;
    else if (name === 'max_tokens') fields.max_tokens = value;
    else if (value !== '' || !header.unnamed.has(name)) metadata.push([name, value]);
  });
  // Made from entries, a column named __proto__ is a key like any other; assigned, it would set the object's prototype and vanish (QA).
  fields.metadata = Object.fromEntries(metadata);
  return buildRow(fields, pos, rules);
}

const SEPARATOR_NAMES: Record<CsvDelimiter, string> = { ',': 'comma', ';': 'semicolon', '\t': 'tab' };

/**
 * A record whose field count is not the header's, with what usually causes it: too many, an
 * unquoted field holding the separator; too few, a missing field or an unquoted line break.
 */
function fieldCountMessage(line: number, expected: number, got: number, delimiter: CsvDelimiter): string {
  const fields = (n: number): string => `${n} ${n === 1 ? 'field' : 'fields'}`;
  const head = `line ${line}: expected ${fields(expected)} as in the header, got ${got}`;
  if (got > expected) {
    const example = delimiter === '\t' ? '' : `, e.g. "a${delimiter} b"`;
    return `${head}; quote a field that contains a ${SEPARATOR_NAMES[delimiter]}${example}`;
  }
  return `${head}; give each column a field (an empty one is fine: a${delimiter}${delimiter}c), and quote a field that holds a line break`;
}

/**
 * The file line of a record's first undecodable byte, its U+FFFD after the `written` ones the file
 * holds as such (undecodableAt): a record's quoted fields may span lines.
 */
function undecodedLine(record: string[], startLine: number, written: number): number {
  let line = startLine;
  let skip = written;
  for (const field of record) {
    let at = field.indexOf('\uFFFD');
    for (; at !== -1 && skip > 0; skip -= 1) at = field.indexOf('\uFFFD', at + 1);
    line += countNewlines(at === -1 ? field : field.slice(0, at));
    if (at !== -1) break;
  }
  return line;
}

/** How much of the file is read at once for records' bytes: a Latin-1 export has U+FFFD in every record, and a read for each took 10 times as long. */
const RECORD_BYTES_WINDOW = 64 * 1024;

/**
 * Reads records' bytes again from the file, opened on the first read and kept open for the next
 * ones. Records are read in file order, so a window of the file read for one serves those after it.
 */
function recordBytes(path: string): { read(start: number, end: number): Promise<Buffer>; close(): Promise<void> } {
  let file: Promise<FileHandle> | undefined;
  let window = Buffer.alloc(0);
  let windowStart = 0;
  return {
    async read(start, end) {
      if (start < windowStart || end > windowStart + window.length) {
        const handle = await (file ??= open(path, 'r'));
        const bytes = Buffer.alloc(Math.max(end - start, RECORD_BYTES_WINDOW));
        const { bytesRead } = await handle.read(bytes, 0, bytes.length, start);
        window = bytes.subarray(0, bytesRead);
        windowStart = start;
      }
      return window.subarray(start - windowStart, Math.min(end, windowStart + window.length) - windowStart);
    },
    async close() {
      // One that failed to open has its error thrown by the read already.
      await file?.then((handle) => handle.close(), () => {});
    },
  };
}

/**
 * A line holding only spaces, or only separators (spreadsheet exports often end with `,,` lines),
 * has no field with text: skip it like an empty line.
 */
function isBlank(record: string[]): boolean {
  return record.every((field) => field.trim() === '');
}

/**
 * Start lines of records. csv-parse's `info.lines` is the line where a record ends and counts a CRLF
 * inside a quoted field twice, so lines are counted here: the next record starts after the previous
 * one's last line plus any empty lines the parser skipped (`info.empty_lines`); a record spans one
 * line plus one per "\n" inside its (quoted) fields.
 */
interface LineCounter {
  /** The start line of a record just parsed; `emptyLines` is the parser's running count. */
  start(record: string[], emptyLines: number): number;
  /** Where the record being parsed now starts. */
  peek(emptyLines: number): number;
}

function lineCounter(): LineCounter {
  let next = 1;
  let emptySeen = 0;
  const peek = (emptyLines: number): number => next + (emptyLines - emptySeen);
  const start = (record: string[], emptyLines: number): number => {
    const line = peek(emptyLines);
    emptySeen = emptyLines;
    next = line + 1 + record.reduce((sum, field) => sum + countNewlines(field), 0);
    return line;
  };
  return { start, peek };
}

function countNewlines(text: string): number {
  let count = 0;
  for (let i = text.indexOf('\n'); i !== -1; i = text.indexOf('\n', i + 1)) count += 1;
  return count;
}

/**
 * With relax_quotes, a quoted field whose closing quote is missing runs on over the lines after it
 * until a quote that is not followed by a separator, and csv-parse then keeps it as text, with its
 * opening quote, instead of failing: the rows it ran over would silently become part of its
 * prompt. Such a field starts with a quote and holds a line break; the rare well-formed field that
 * does too (its text starts with a doubled quote) is told apart by reading the record strictly.
 */
function mayHaveRunOn(field: string): boolean {
  return field.charCodeAt(0) === 34 && field.includes('\n');
}

async function quoteRunsOn(path: string, record: ParsedRecord, delimiter: CsvDelimiter): Promise<boolean> {
  const file = await open(path, 'r');
  try {
    const raw = Buffer.alloc(record.endByte - record.startByte);
    await file.read(raw, 0, raw.length, record.startByte);
    parseStrictly(raw, { delimiter, relax_column_count: true, skip_empty_lines: true, record_delimiter: ['\r\n', '\n'], max_record_size: MAX_RECORD_CHARS });
    return false;
  } catch (error) {
    if (error instanceof CsvError) return error.code === 'CSV_INVALID_CLOSING_QUOTE';
    throw error;
  } finally {
    await file.close();
  }
}

function runOnQuote(path: string, record: ParsedRecord): UsageError {
  const lastLine = record.line + record.fields.reduce((sum, field) => sum + countNewlines(field), 0);
  return new UsageError(
    `input file ${path}: the quoted field at line ${record.line} is never closed, so it takes the lines after it, up to line ${lastLine}, into its text ` +
      '(close it; a quote inside a quoted field is written twice, "")',
  );
}

const emptyLinesOf = (error: CsvError): number => (typeof error['empty_lines'] === 'number' ? error['empty_lines'] : 0);

function describeAbort(error: unknown, path: string, lines: LineCounter): unknown {
  if (!(error instanceof CsvError)) return error;
  const where = `at line ${lines.peek(emptyLinesOf(error))}`;
  if (error.code === 'CSV_QUOTE_NOT_CLOSED') {
    return new UsageError(`input file ${path}: the quoted field ${where} is never closed (close it; a quote inside a quoted field is written twice, "")`);
  }
  return new UsageError(`input file ${path}: unreadable CSV ${where}: ${error.message}`);
}

/** How far from its start a record over MAX_RECORD_CHARS is read again, to tell a field that large from a quote never closed. */
const RECHECK_BYTES = 4 * MAX_RECORD_CHARS;

/** The limit as said: csv-parse counts a record's characters (UTF-16 units), not its bytes. */
const LIMIT_TEXT = `${formatCount(MAX_RECORD_CHARS)} characters`;

/**
 * A record over MAX_RECORD_CHARS stops the parser wherever it is. Read again strictly from its
 * start (up to RECHECK_BYTES), it is either whole, a field that large (a document pasted into a
 * cell), or a quoted field never closed that took the lines after it.
 */
async function tooLargeRecord(path: string, readPath: string, record: { startByte: number; line: number }, delimiter: CsvDelimiter, header: Header | undefined): Promise<UsageError> {
  const unclosed = () =>
    new UsageError(`input file ${path}: the quoted field at line ${record.line} is never closed, so it takes the lines after it into its text, past the ${LIMIT_TEXT} a record may hold (close it; a quote inside a quoted field is written twice, "")`);
  const file = await open(readPath, 'r');
  let fields: string[] | undefined;
  let cut = false;
  try {
    const length = Math.min((await file.stat()).size - record.startByte, RECHECK_BYTES);
    cut = length === RECHECK_BYTES;
    const raw = Buffer.alloc(Math.max(length, 0));
    await file.read(raw, 0, raw.length, record.startByte);
    const firstRecord = (relaxQuotes: boolean) =>
      (parseStrictly(raw, { delimiter, bom: true, relax_quotes: relaxQuotes, relax_column_count: true, skip_empty_lines: true, record_delimiter: ['\r\n', '\n'], max_record_size: 0, to: 1 }) as string[][])[0];
    try {
      fields = firstRecord(false);
    } catch (error) {
      // A quote inside an unquoted field (a 27" screen) is text to the reader (relax_quotes): read so, the record is whole, and only that large.
      if (!(error instanceof CsvError && error.code === 'INVALID_OPENING_QUOTE')) throw error;
      fields = firstRecord(true);
    }
  } catch (error) {
    if (!(error instanceof CsvError)) throw error;
    // Read only in part, an open quote is either one never closed or a field larger than the part read: it says both.
    if (error.code === 'CSV_QUOTE_NOT_CLOSED' && cut) {
      return new UsageError(
        `input file ${path}: the record at line ${record.line} is larger than the ${LIMIT_TEXT} a record may hold, and its quoted field does not close within the ${RECHECK_BYTES / (1024 * 1024)} MiB after its start: ` +
          'if its closing quote is missing, close it (a quote inside a quoted field is written twice, ""); if the field is that large, shorten it or take that row out of the file',
      );
    }
    if (error.code === 'CSV_QUOTE_NOT_CLOSED' || error.code === 'CSV_INVALID_CLOSING_QUOTE') return unclosed();
  } finally {
    await file.close();
  }
  const limit = `larger than the ${LIMIT_TEXT} a record may hold`;
  if (!fields) return new UsageError(`input file ${path}: the record at line ${record.line} is ${limit}; if a quoted field in it is never closed, close it (a quote inside a quoted field is written twice, "")`);
  if (!header) return new UsageError(`input file ${path}: its header, at line ${record.line}, is ${limit}: is the file a CSV with a header row?`);
  const whole = fields;
  const largest = whole.reduce((at, field, i) => (field.length > whole[at]!.length ? i : at), 0);
  const name = header.names[largest] ?? `field ${largest + 1}`;
  const size = `its "${name}" field alone holds ${formatCount(whole[largest]!.length)} characters`;
  // The limit is no model's: a prompt that large is beyond their context windows anyway.
  const why = name === header.promptColumn ? `: no model's context window takes a prompt that large (that much text is some 2 million tokens)` : '';
  return new UsageError(`input file ${path}: the record at line ${record.line} is ${limit}; ${size}. Shorten it or take that row out of the file${why}`);
}
