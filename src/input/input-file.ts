import type { Stats } from 'node:fs';
import { open, stat, type FileHandle } from 'node:fs/promises';
import { basename } from 'node:path';
import { UsageError } from '../errors.ts';
import { textEncoding, type TextEncoding } from './text-encoding.ts';

/** How much of a file's start is looked at for what it is (a packed format, UTF-16). */
const OPENING_BYTES = 1024;

/**
 * Opens an input file for streaming, or throws a UsageError saying why it cannot be used:
 * missing, unreadable, a directory, a pipe or device, empty, or UTF-16 without a byte order mark.
 * The caller owns the handle. `bytes` is the file's size; `encoding` is UTF-8 unless a UTF-16
 * byte order mark starts the file.
 */
export async function openInputFile(path: string): Promise<{ handle: FileHandle; bytes: number; encoding: TextEncoding }> {
  // Looked at before opening: opening a named pipe waits for a writer, and a run reads its file more than once.
  try {
    refuseUnlessRegular(path, await stat(path));
  } catch (error) {
    if (error instanceof UsageError) throw error;
    throw new UsageError(describeOpenError(path, error));
  }
  let handle: FileHandle;
  try {
    handle = await open(path, 'r');
  } catch (error) {
    throw new UsageError(describeOpenError(path, error));
  }
  try {
    const stats = await handle.stat();
    refuseUnlessRegular(path, stats);
    if (stats.size === 0) throw new UsageError(`input file ${path} is empty: nothing to run`);
    const buffer = Buffer.alloc(Math.min(stats.size, OPENING_BYTES));
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, 0);
    const opening = buffer.subarray(0, bytesRead);
    const packed = packedFormat(opening);
    if (packed) throw new UsageError(`input file ${path} is ${packed}, not text: ${PACKED_FIX[packed]}`);
    const encoding = textEncoding(opening);
    if (encoding === 'utf-16 without bom') {
      throw new UsageError(`input file ${path} looks like UTF-16 text without a byte order mark (every other byte is 0): ${SAVE_AS_UTF8}`);
    }
    if (encoding === 'utf-8' && crOnlyLineEnds(opening)) {
      const sheet = /\.(csv|tsv|txt)$/i.test(path);
      throw new UsageError(
        `input file ${path} ends its lines with a carriage return alone (old Mac line endings${sheet ? ', as Excel for Mac\'s "CSV (Macintosh)" writes' : ''}), so it reads as one line: ` +
          `${sheet ? 'save it as "CSV UTF-8", or ' : ''}convert it: ${lineEndsCommand(path)}`,
      );
    }
    return { handle, bytes: stats.size, encoding };
  } catch (error) {
    await handle.close();
    throw error;
  }
}

/**
 * Only regular files are read: a run reads its file more than once (and again on --resume), which
 * a pipe, a socket or a device cannot give it.
 */
function refuseUnlessRegular(path: string, stats: Stats): void {
  if (stats.isFile()) return;
  if (stats.isDirectory()) throw new UsageError(`input path is a directory, not a file: ${path}`);
  const kind = stats.isFIFO() ? 'a pipe' : stats.isSocket() ? 'a socket' : 'a device';
  throw new UsageError(`input ${path} is ${kind}, not a regular file: the input is read more than once (and again on --resume), so save it to a file first and give that file`);
}

/** A UsageError for "-" (stdin, as other tools take it) when no file is named so: stdin cannot be read more than once. */
export function stdinRefusal(path: string): UsageError | null {
  if (basename(path) !== '-') return null;
  return new UsageError('reading the input from stdin ("-") is not supported: save it to a file first (e.g. ... > prompts.csv) and give that file\'s path');
}

/** Advice the HTTP API gives its own way (api-terms.ts): a client fixes the request, not a file on the server. */
export const SAVE_AS_UTF8 = 'save it as UTF-8 (in Excel: "CSV UTF-8") and give that file';
export const GUNZIP = 'decompress it first (gunzip)';

/** The command that gives a copy of a file with carriage-return line ends "\n" ones. */
export function lineEndsCommand(path: string): string {
  return `tr '\\r' '\\n' < ${path} > fixed.${path.split('.').pop() ?? 'csv'}`;
}

type PackedFormat = 'gzip-compressed' | 'a zip archive (an .xlsx workbook?)' | 'a PDF';

/** What to do about a file that is no text, by what it is. */
const PACKED_FIX: Record<PackedFormat, string> = {
  'gzip-compressed': GUNZIP,
  'a zip archive (an .xlsx workbook?)': 'save the sheet as "CSV UTF-8" (or unzip the archive) and give that file',
  'a PDF': 'give the prompts as CSV or JSONL',
};

/** Lines that end in "\r" alone: a carriage return not before a "\n", and no "\n" at all in the file's opening. */
function crOnlyLineEnds(opening: Buffer): boolean {
  const cr = opening.indexOf(0x0d);
  return cr !== -1 && cr < opening.length - 1 && opening.indexOf(0x0a) === -1;
}

/** A binary container a user may hand over by mistake, by its first bytes; null for anything else. */
function packedFormat(opening: Buffer): PackedFormat | null {
  if (opening[0] === 0x1f && opening[1] === 0x8b) return 'gzip-compressed';
  if (opening.toString('latin1', 0, 4) === 'PK\x03\x04') return 'a zip archive (an .xlsx workbook?)';
  if (opening.toString('latin1', 0, 4) === '%PDF') return 'a PDF';
  return null;
}

function describeOpenError(path: string, error: unknown): string {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ENOENT') return stdinRefusal(path)?.message ?? `input file not found: ${path}`;
  if (code === 'EACCES' || code === 'EPERM') return `cannot read input file ${path}: permission denied`;
  if (code === 'EISDIR') return `input path is a directory, not a file: ${path}`;
  return `cannot open input file ${path}: ${error instanceof Error ? error.message : String(error)}`;
}
