import { createWriteStream } from 'node:fs';
import { rename, rm, writeFile } from 'node:fs/promises';
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

/** A JSON body is read whole, so it has a lower limit than a streamed file: past it, send JSONL. */
const JSON_BODY_MAX_BYTES = 64 * 1024 * 1024;

/**
 * A JSON body, `[row, ...]` or `{"rows": [row, ...]}` (each row what a JSONL line holds), saved
 * as the JSONL file the readers take: row N is line N, in errors.jsonl too.
 */
export async function saveJsonRows(body: Readable, path: string, maxBytes: number): Promise<number> {
  const limit = Math.min(maxBytes, JSON_BODY_MAX_BYTES);
  const chunks: Buffer[] = [];
  let bytes = 0;
  for await (const chunk of body as AsyncIterable<Buffer>) {
    bytes += chunk.length;
    if (bytes > limit) throw new ApiError(413, 'upload_too_large', `a JSON body is read whole, and this one is larger than ${formatMegabytes(limit)}: send the rows as JSONL (Content-Type application/jsonl, one row per line), which is streamed`);
    chunks.push(chunk);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch (error) {
    throw new ApiError(400, 'invalid_json', `the body is not JSON (${(error as Error).message}): send [{"prompt": "..."}, ...] or {"rows": [...]}`);
  }
  const rows = Array.isArray(parsed) ? parsed : typeof parsed === 'object' && parsed !== null && Array.isArray((parsed as { rows?: unknown }).rows) ? (parsed as { rows: unknown[] }).rows : null;
  if (rows === null) throw new ApiError(400, 'invalid_json', 'a JSON body must be an array of rows, [{"prompt": "..."}, ...], or {"rows": [...]}; each row as a JSONL line would hold it');
  const partial = `${path}.part`;
  await writeFile(partial, rows.map((row) => `${JSON.stringify(row) ?? 'null'}\n`).join(''));
  await rename(partial, path);
  return bytes;
}
