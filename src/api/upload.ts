import { createWriteStream } from 'node:fs';
import { open, rename, rm } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { Transform, Writable } from 'node:stream';
import { TextDecoder } from 'node:util';
import { pipeline } from 'node:stream/promises';
import { createBrotliDecompress, createGunzip, createInflate } from 'node:zlib';
import { FILE_TROUBLE } from '../errors.ts';
import { cutTooDeep, nestedTooDeep } from '../input/json-depth.ts';
import { ApiError } from './api-error.ts';
import { formatCount } from '../figure-text.ts';

/** The Content-Encodings an upload may come in (a large CSV or JSONL file compresses several times over). */
const DECODERS: Record<string, () => Transform> = { gzip: createGunzip, 'x-gzip': createGunzip, deflate: createInflate, br: createBrotliDecompress };

/**
 * How a body came: its Content-Encoding (null: uncompressed) and the character set its
 * Content-Type names when that is not UTF-8 (null: UTF-8, or none said; the readers take UTF-8,
 * and UTF-16 told by its byte order mark).
 */
export interface BodyCoding {
  encoding: string | null;
  charset: string | null;
}

const PLAIN_BODY: BodyCoding = { encoding: null, charset: null };

/**
 * The body's coding from its headers, or a 415 naming what this server reads; checked before
 * anything is saved, so a wrong one leaves no batch behind.
 */
export function uploadCoding(contentEncoding: string | undefined, charset: string | null): BodyCoding {
  return { encoding: uploadEncoding(contentEncoding), charset: uploadCharset(charset) };
}

function uploadEncoding(header: string | undefined): string | null {
  const name = header?.trim().toLowerCase() || null;
  if (name === null || name === 'identity') return null;
  if (!(name in DECODERS)) throw new ApiError(415, 'unsupported_encoding', `Content-Encoding "${header}" is not one this server reads: send the file uncompressed, or compressed with gzip, deflate or br`);
  return name;
}

/**
 * A charset other than UTF-8 (Excel saves "CSV" in the system's code page, windows-1252 say):
 * the body is turned into UTF-8 as it is saved, rather than its accented letters failing rows as
 * bad_encoding. The name as the WHATWG Encoding Standard has it (TextDecoder's), null for UTF-8.
 */
function uploadCharset(label: string | null): string | null {
  if (label === null) return null;
  let name: string;
  try {
    name = new TextDecoder(label).encoding;
  } catch {
    throw new ApiError(415, 'unsupported_charset', `charset "${label}" in the Content-Type is not one this server knows: send the file as UTF-8 (or name its charset as the Encoding Standard does, e.g. windows-1252, iso-8859-2, shift_jis)`);
  }
  return name === 'utf-8' ? null : name;
}

/**
 * UTF-8 from a body in `charset`; a byte that is not of it fails the stream with a 400
 * invalid_charset. A byte order mark at its start says more than the label: "utf-16" is
 * little-endian to TextDecoder, but a file that starts FE FF is big-endian. The UTF-8 starts
 * with a byte order mark, whether the body had one or not: a body in another charset is from a
 * Windows tool (Excel), and the CSV reader gives results.csv the mark then, as it does for a UTF-16
 * file run from the command line, so that Excel reads the results as UTF-8.
 */
function toUtf8(charset: string): Transform {
  let decoder: TextDecoder | null = null;
  let head = Buffer.alloc(0);
  const decode = (chunk: Buffer | undefined, done: (error?: Error | null, data?: Buffer) => void) => {
    let mark = '';
    if (!decoder) {
      head = chunk ? Buffer.concat([head, chunk]) : head;
      // Three bytes tell every mark apart; a body shorter than that has come whole when `chunk` is undefined.
      if (head.length < 3 && chunk) return done();
      // The body's own mark is dropped (TextDecoder's default), so that it is not written twice.
      decoder = new TextDecoder(charsetByMark(head) ?? charset, { fatal: true });
      chunk = head;
      mark = '\ufeff';
    }
    try {
      done(null, Buffer.from(mark + (chunk === undefined ? decoder.decode() : decoder.decode(chunk, { stream: true })), 'utf8'));
    } catch {
      done(new ApiError(400, 'invalid_charset', `the body is not valid ${decoder.encoding}, the charset ${decoder.encoding === charset ? 'its Content-Type names' : 'its byte order mark says'}: send it with the charset it was saved in (or as UTF-8)`));
    }
  };
  return new Transform({ transform: (chunk: Buffer, _encoding, done) => decode(chunk, done), flush: (done) => decode(undefined, done) });
}

/** The charset a byte order mark at the start of `head` says, or null. */
function charsetByMark(head: Buffer): string | null {
  if (head[0] === 0xef && head[1] === 0xbb && head[2] === 0xbf) return 'utf-8';
  if (head[0] === 0xfe && head[1] === 0xff) return 'utf-16be';
  if (head[0] === 0xff && head[1] === 0xfe) return 'utf-16le';
  return null;
}

/**
 * The stream that turns a body back into the file as sent (null: it came uncompressed), and how to
 * tell its failure (the body is not what its Content-Encoding says) from the others.
 */
function decoding(encoding: string | null): { stream: Transform | null; failure(error: unknown): ApiError | null } {
  const create = encoding === null ? undefined : DECODERS[encoding];
  if (!create) return { stream: null, failure: () => null };
  const stream = create();
  let streamError: unknown = null;
  stream.once('error', (error) => (streamError = error));
  return {
    stream,
    failure: (error) =>
      error !== null && error === streamError ? new ApiError(400, 'invalid_encoding', `the body is not valid ${encoding} (${(error as Error).message}): compress the file again, or send it uncompressed`) : null,
  };
}

/**
 * Streams a request body to `path` (never holding it in memory; decompressed as it comes if it was
 * sent compressed), through a `.part` file renamed once complete, so a cut-off upload never looks
 * like a whole input file. Past `maxBytes` of file the upload stops with a 413.
 */
export async function saveUpload(body: Readable, path: string, maxBytes: number, coding: BodyCoding = PLAIN_BODY): Promise<number> {
  const { encoding, charset } = coding;
  const partial = `${path}.part`;
  const decoder = decoding(encoding);
  let bytes = 0;
  const limit = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      bytes += chunk.length;
      if (bytes > maxBytes) return done(new ApiError(413, 'upload_too_large', tooLarge(maxBytes, encoding)));
      done(null, chunk);
    },
  });
  try {
    await pipeline([body, ...(decoder.stream ? [decoder.stream] : []), ...(charset ? [toUtf8(charset)] : []), limit, createWriteStream(partial)]);
  } catch (error) {
    await rm(partial, { force: true });
    if (error instanceof ApiError) throw error;
    const undecodable = decoder.failure(error);
    if (undecodable) throw undecodable;
    // The server's disk, not the client's upload: a 507, not "send the file again" (QA).
    throw storageTrouble(error) ?? brokenOff(bytes, error);
  }
  await rename(partial, path);
  return bytes;
}

function brokenOff(bytes: number, error: unknown): ApiError {
  return new ApiError(400, 'upload_failed', `the upload broke off after ${bytes} bytes (${error instanceof Error ? error.message : String(error)}): send the file again`);
}

function formatMegabytes(bytes: number): string {
  return `${Math.round(bytes / 1024 / 1024)} MB`;
}

/** A JSON body is read whole, so it has a lower limit than a streamed file: past it, send JSONL. */
const JSON_BODY_MAX_BYTES = 64 * 1024 * 1024;

/**
 * The most values (objects, arrays, strings, numbers, ...) a JSON body may hold, for the same
 * reason: parsed whole, a value takes up to about 170 bytes, so 64 MB of `[{},{},...]` took the
 * server to 3.8 GB (QA). A million rows of a prompt alone; a larger batch is sent as JSONL.
 */
const JSON_BODY_MAX_VALUES = 2_000_000;

/**
 * How many values JSON `text` holds, at most (its commas and opening brackets outside strings, and
 * one), counted no further than past `limit`: without parsing it, so without the memory it would take.
 */
function jsonValuesAtMost(text: string, limit: number): number {
  let values = 1;
  let inString = false;
  for (let i = 0; i < text.length && values <= limit; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i += 1; // a backslash: the next character is escaped
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x2c || c === 0x5b || c === 0x7b) values += 1;
  }
  return values;
}

/**
 * A JSON body, `[row, ...]` or `{"rows": [row, ...]}` (each row what a JSONL line holds), saved
 * as the JSONL file the readers take: row N is line N, in errors.jsonl too. `queryParameters`:
 * the batch settings the request takes in its query string, named when the body holds one.
 */
export async function saveJsonRows(body: Readable, path: string, maxBytes: number, coding: BodyCoding = PLAIN_BODY, queryParameters: readonly string[] = []): Promise<number> {
  const { encoding, charset } = coding;
  const limit = Math.min(maxBytes, JSON_BODY_MAX_BYTES);
  const chunks: Buffer[] = [];
  let bytes = 0;
  const collect = new Writable({
    write(chunk: Buffer, _encoding, done) {
      bytes += chunk.length;
      if (bytes > limit) return done(new ApiError(413, 'upload_too_large', limit < maxBytes ? `a JSON body is read whole, and this one is larger than ${formatMegabytes(limit)}${encoding ? ' (uncompressed)' : ''}: send the rows as JSONL (Content-Type application/jsonl, one row per line), which is streamed` : tooLarge(maxBytes, encoding)));
      chunks.push(chunk);
      done();
    },
  });
  const decoder = decoding(encoding);
  try {
    await pipeline([body, ...(decoder.stream ? [decoder.stream] : []), ...(charset ? [toUtf8(charset)] : []), collect]);
  } catch (error) {
    if (error instanceof ApiError) throw error;
    throw decoder.failure(error) ?? brokenOff(bytes, error);
  }
  const parsed = parseJsonBody(chunks);
  const rows = Array.isArray(parsed) ? parsed : typeof parsed === 'object' && parsed !== null && Array.isArray((parsed as { rows?: unknown }).rows) ? (parsed as { rows: unknown[] }).rows : null;
  if (rows === null) throw new ApiError(400, 'invalid_json', 'a JSON body must be an array of rows, [{"prompt": "..."}, ...], or {"rows": [...]}; each row as a JSONL line would hold it');
  refuseKeysBesideRows(parsed, queryParameters);
  // Saved as JSONL, a first row that is an array would read as a JSON array file (jsonl-reader.ts) and get that file's advice.
  if (Array.isArray(rows[0])) throw new ApiError(400, 'invalid_json', 'row 1 is an array: each row is an object, as a JSONL line would hold it, e.g. [{"prompt": "..."}, ...]');
  const partial = `${path}.part`;
  try {
    await writeJsonlRows(partial, rows);
    await rename(partial, path);
  } catch (error) {
    // Left behind, a part file would keep a full disk full (QA).
    await rm(partial, { force: true });
    throw storageTrouble(error) ?? error;
  }
  return bytes;
}

/**
 * The body's value, parsed from its chunks, which are let go of (emptied) on the way: only the
 * parsed rows are left to hold while they are written, not the body in three forms beside them
 * (its chunks, their concatenation, its text).
 */
function parseJsonBody(chunks: Buffer[]): unknown {
  let whole: Buffer | null = Buffer.concat(chunks);
  chunks.length = 0;
  const text = decodeJsonBody(whole);
  whole = null; // free for the garbage collector while the parse below fills the heap
  if (jsonValuesAtMost(text, JSON_BODY_MAX_VALUES) > JSON_BODY_MAX_VALUES) {
    throw new ApiError(413, 'upload_too_large', `a JSON body is read whole, and this one holds more than ${formatCount(JSON_BODY_MAX_VALUES)} values (objects, arrays, strings, numbers): send the rows as JSONL (Content-Type application/jsonl, one row per line), which is streamed`);
  }
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new ApiError(400, 'invalid_json', `the body is not JSON (${(error as Error).message}): send [{"prompt": "..."}, ...] or {"rows": [...]}`);
  }
}

/**
 * A JSON body's text. Decoded strictly: a byte the body's encoding has no character for would be
 * U+FFFD in the saved JSONL, which the reader takes for the character itself, written so, and the
 * row would be sent with its accents mangled (a body without a charset is a file sent as is, one
 * exported as Windows-1252, say). A JSON body's rows are no lines of a file the client can fix, so
 * the body is refused whole, as one with a charset that does not fit is (toUtf8).
 */
function decodeJsonBody(whole: Buffer): string {
  const encoding = charsetByMark(whole) ?? 'utf-8';
  try {
    // As for a CSV or JSONL body, a byte order mark tells UTF-16 (Windows PowerShell's Out-File writes it) without a charset; the mark itself is no JSON.
    return new TextDecoder(encoding, { fatal: true }).decode(whole).replace(/^\uFEFF/, '');
  } catch {
    throw new ApiError(400, 'invalid_charset', `the body is not valid ${encoding}${encoding === 'utf-8' ? '' : ', the charset its byte order mark says'}: name its charset in the Content-Type (application/json; charset=windows-1252, say) and post it again, or send it as UTF-8`);
  }
}

/**
 * How much JSONL text is gathered before it is written: the whole file at once took its size twice
 * more in memory, the rows' lines and their join (QA). Pieces this small are young objects, freed at
 * the next scavenge; 1 MB ones (large objects) left the peak about 25 MB higher.
 */
const JSONL_WRITE_CHUNK_CHARS = 64 * 1024;

/** The rows as JSONL, one a line, written in pieces of about JSONL_WRITE_CHUNK_CHARS. */
async function writeJsonlRows(path: string, rows: readonly unknown[]): Promise<void> {
  const file = await open(path, 'w');
  try {
    let text = '';
    for (const row of rows) {
      // A row nested too deep is written cut short (JSON.stringify would run out of stack), still too deep: the reader refuses it as that row.
      text += `${JSON.stringify(nestedTooDeep(row) ? cutTooDeep(row) : row, keepTooLarge) ?? 'null'}\n`;
      if (text.length < JSONL_WRITE_CHUNK_CHARS) continue;
      await file.writeFile(text);
      text = '';
    }
    if (text !== '') await file.writeFile(text);
  } finally {
    await file.close();
  }
}

/** JSON.rawJSON (Node 21 and later), which the TypeScript library this project builds with does not declare yet. */
const { rawJSON } = JSON as JSON & { rawJSON(text: string): unknown };

/**
 * A number too large for a double (1e999, which JSON.parse reads as Infinity) is written back as
 * 1e999 rather than JSON.stringify's null, "not set": the reader then refuses its row as it does
 * the same JSONL line (QA: max_tokens 1e999 ran with the default).
 */
function keepTooLarge(_key: string, value: unknown): unknown {
  if (typeof value !== 'number' || Number.isFinite(value)) return value;
  return rawJSON(value > 0 ? '1e999' : '-1e999');
}

/**
 * `{"rows": [...], "model": "pro"}`: the batch would run as if "model" were not there (on the
 * default model, say), so a key beside "rows" is refused, with the query parameter it was meant as.
 */
function refuseKeysBesideRows(parsed: unknown, queryParameters: readonly string[]): void {
  if (Array.isArray(parsed) || typeof parsed !== 'object' || parsed === null) return;
  const extra = Object.keys(parsed).filter((key) => key !== 'rows');
  if (extra.length === 0) return;
  const named = extra.map((key) => `"${key}"`).join(', ');
  const asQuery = extra.filter((key) => queryParameters.includes(key));
  const way = asQuery.length > 0 ? `give ${asQuery.join(' and ')} in the query string instead (?${asQuery.map((key) => `${key}=...`).join('&')})` : `batch settings go in the query string (${queryParameters.join(', ')})`;
  throw new ApiError(400, 'invalid_json', `the body's ${extra.length === 1 ? 'key' : 'keys'} ${named} beside "rows" ${extra.length === 1 ? 'is' : 'are'} not read: a JSON body holds its rows alone; ${way}`);
}

/** A 507 for the server's own file trouble (a full disk, no permission), said for an API client; null for other errors. */
export function storageTrouble(error: unknown): ApiError | null {
  const { code, path } = (error ?? {}) as NodeJS.ErrnoException;
  const reason = code === undefined ? undefined : FILE_TROUBLE[code];
  if (!reason) return null;
  return new ApiError(507, 'storage_trouble', `the server could not store this batch's files${path ? ` (${path})` : ''}: ${reason} [${code}]; send the request again once the server's operator has fixed that`);
}

function tooLarge(maxBytes: number, encoding: string | null): string {
  return `the file is larger than the server's limit of ${formatMegabytes(maxBytes)}${encoding ? ' (uncompressed)' : ''}: split it into several batches, or start the server with a higher --max-upload-mb`;
}
