import { createWriteStream } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { ApiError } from './api-error.ts';

/**
 * Streams a request body to `path` (never holding it in memory), through a `.part` file renamed
 * once complete, so a cut-off upload never looks like a whole input file. Past `maxBytes` the
 * upload stops with a 413.
 */
export async function saveUpload(body: Readable, path: string, maxBytes: number): Promise<number> {
  const partial = `${path}.part`;
  let bytes = 0;
  const limit = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      bytes += chunk.length;
      if (bytes > maxBytes) return done(new ApiError(413, 'upload_too_large', `the file is larger than the server's limit of ${formatMegabytes(maxBytes)}: split it into several batches, or start the server with a higher --max-upload-mb`));
      done(null, chunk);
    },
  });
  try {
    await pipeline(body, limit, createWriteStream(partial));
  } catch (error) {
    await rm(partial, { force: true });
    if (error instanceof ApiError) throw error;
    throw new ApiError(400, 'upload_failed', `the upload broke off after ${bytes} bytes (${error instanceof Error ? error.message : String(error)}): send the file again`);
  }
  await rename(partial, path);
  return bytes;
}

function formatMegabytes(bytes: number): string {
  return `${Math.round(bytes / 1024 / 1024)} MB`;
}
