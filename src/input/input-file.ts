import { open, type FileHandle } from 'node:fs/promises';
import { UsageError } from '../errors.ts';

/**
 * Opens an input file for streaming, or throws a UsageError saying why it cannot be used:
 * missing, unreadable, a directory, or an empty regular file. The caller owns the handle. `bytes`
 * is the file's size (0 for a pipe or device).
 */
export async function openInputFile(path: string): Promise<{ handle: FileHandle; bytes: number }> {
  let handle: FileHandle;
  try {
    handle = await open(path, 'r');
  } catch (error) {
    throw new UsageError(describeOpenError(path, error));
  }
  try {
    const stats = await handle.stat();
    if (stats.isDirectory()) throw new UsageError(`input path is a directory, not a file: ${path}`);
    // Only regular files: a pipe or /dev/stdin reports size 0 yet may hold data (and cannot be read twice).
    if (stats.isFile() && stats.size === 0) throw new UsageError(`input file is empty: ${path}`);
    if (stats.isFile()) {
      const opening = Buffer.alloc(4);
      const { bytesRead } = await handle.read(opening, 0, 4, 0);
      const packed = packedFormat(opening.subarray(0, bytesRead));
      if (packed) throw new UsageError(`input file ${path} is ${packed}, not text: ${PACKED_FIX[packed]}`);
    }
    return { handle, bytes: stats.isFile() ? stats.size : 0 };
  } catch (error) {
    await handle.close();
    throw error;
  }
}

type PackedFormat = 'gzip-compressed' | 'a zip archive (an .xlsx workbook?)' | 'a PDF';

/** What to do about a file that is no text, by what it is. */
const PACKED_FIX: Record<PackedFormat, string> = {
  'gzip-compressed': 'decompress it first (gunzip)',
  'a zip archive (an .xlsx workbook?)': 'save the sheet as "CSV UTF-8" (or unzip the archive) and give that file',
  'a PDF': 'give the prompts as CSV or JSONL',
};

/** A binary container a user may hand over by mistake, by its first bytes; null for anything else. */
function packedFormat(opening: Buffer): PackedFormat | null {
  if (opening[0] === 0x1f && opening[1] === 0x8b) return 'gzip-compressed';
  if (opening.toString('latin1', 0, 4) === 'PK\x03\x04') return 'a zip archive (an .xlsx workbook?)';
  if (opening.toString('latin1', 0, 4) === '%PDF') return 'a PDF';
  return null;
}

function describeOpenError(path: string, error: unknown): string {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ENOENT') return `input file not found: ${path}`;
  if (code === 'EACCES' || code === 'EPERM') return `cannot read input file ${path}: permission denied`;
  if (code === 'EISDIR') return `input path is a directory, not a file: ${path}`;
  return `cannot open input file ${path}: ${error instanceof Error ? error.message : String(error)}`;
}
