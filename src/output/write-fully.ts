import type { FileHandle } from 'node:fs/promises';

/**
 * Writes all of `buffer` at `position`, however many writes that takes. One write may take only
 * part of it (a disk filling up does that before it fails with ENOSPC): counting the whole buffer
 * as written then would checkpoint bytes that are not in the file, and the batch could not resume.
 */
export async function writeFully(handle: FileHandle, buffer: Buffer, position: number): Promise<void> {
  let written = 0;
  while (written < buffer.length) {
    const { bytesWritten } = await handle.write(buffer, written, buffer.length - written, position + written);
    if (bytesWritten === 0) throw new Error('an output file took none of the bytes written to it');
    written += bytesWritten;
  }
}
