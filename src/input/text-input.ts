import { createWriteStream } from 'node:fs';
import { mkdtemp, open, rm, stat, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { openInputFile } from './input-file.ts';
import { utf16ToUtf8 } from './utf16-to-utf8.ts';

/** An input file opened as UTF-8 text for a reader, and what it must do when done with it. */
export interface TextInput {
  handle: FileHandle;
  /** The size of what `handle` reads. */
  bytes: number;
  /** The file `handle` reads, to open again (a CSV record re-read by its bytes): the input, or its UTF-8 copy. */
  readPath: string;
  /** The input was UTF-16 (a byte order mark said so): read from a UTF-8 copy. */
  utf16: boolean;
  /** Removes the UTF-8 copy, if one was made. */
  dispose(): Promise<void>;
}

/**
 * Opens an input file for a reader (openInputFile's checks). A UTF-16 file is copied to a temporary
 * UTF-8 file first, and the copy is read: the readers count and re-read records by their UTF-8
 * bytes, so every offset stays the file's own. A code unit that is not UTF-16 text (half of a
 * surrogate pair) becomes a byte that is not UTF-8 in the copy, and a U+FFFD the file holds stays
 * the character: the readers tell them apart by the bytes, as in a UTF-8 file (utf16-to-utf8.ts).
 */
async function openTextInput(path: string): Promise<TextInput> {
  const { handle, bytes, encoding } = await openInputFile(path);
  if (encoding === 'utf-8') return { handle, bytes, readPath: path, utf16: false, dispose: async () => {} };
  const dir = await mkdtemp(join(tmpdir(), 'switchyard-utf8-'));
  const dispose = () => rm(dir, { recursive: true, force: true });
  try {
    const copy = join(dir, 'input');
    await pipeline(handle.createReadStream(), utf16ToUtf8(encoding), createWriteStream(copy));
    return { handle: await open(copy, 'r'), bytes: (await stat(copy)).size, readPath: copy, utf16: true, dispose };
  } catch (error) {
    await handle.close().catch(() => {});
    await dispose();
    throw error;
  }
}

/**
 * Reads an input file with `read` (a reader's own generator), then closes it and removes any UTF-8
 * copy. Closed here, not only by the reader's stream: a reader that refuses the file before it
 * streams it (a `sep=` line it cannot use) would leave the descriptor to the garbage collector.
 */
export async function* readTextInput<T>(path: string, read: (input: TextInput) => AsyncGenerator<T>): AsyncGenerator<T> {
  const input = await openTextInput(path);
  try {
    yield* read(input);
  } finally {
    await input.handle.close();
    await input.dispose();
  }
}
