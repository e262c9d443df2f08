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
    // Only regular files: a pipe or /dev/stdin reports size 0 yet may hold data.
    if (stats.isFile() && stats.size === 0) throw new UsageError(`input file is empty: ${path}`);
    return { handle, bytes: stats.isFile() ? stats.size : 0 };
  } catch (error) {
    await handle.close();
    throw error;
  }
}

/** Throws what openInputFile would for a file that cannot be read; checked before anything else is done with it. */
export async function checkInputFile(path: string): Promise<void> {
  const { handle } = await openInputFile(path);
  await handle.close();
}

function describeOpenError(path: string, error: unknown): string {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ENOENT') return `input file not found: ${path}`;
  if (code === 'EACCES' || code === 'EPERM') return `cannot read input file ${path}: permission denied`;
  if (code === 'EISDIR') return `input path is a directory, not a file: ${path}`;
  return `cannot open input file ${path}: ${error instanceof Error ? error.message : String(error)}`;
}
