import { createHash, timingSafeEqual } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { pipeline } from 'node:stream/promises';
import { ApiError, errorBody } from './api-error.ts';

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const payload = `${JSON.stringify(body, null, 2)}\n`;
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': String(Buffer.byteLength(payload)), ...headers });
  res.end(payload);
}

export function sendError(res: ServerResponse, error: ApiError): void {
  // An answer already under way (a file half sent) can only be cut off.
  if (res.headersSent) return void res.destroy(error);
  sendJson(res, error.status, errorBody(error), error.headers);
}

/**
 * Reads and drops what is left of a request's body, up to `maxBytes`, before an error answer goes
 * out: Node closes the connection of a request whose body was not read once its answer ends, and a
 * client that sends its whole body before reading the answer (Python's urllib and requests) then
 * gets a broken pipe instead of the error's message. Past `maxBytes` the connection closes as before.
 */
export function drainBody(req: IncomingMessage, maxBytes: number): Promise<void> {
  if (req.complete || req.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    let bytes = 0;
    const done = () => {
      req.off('data', onData).off('end', done).off('close', done).off('error', done);
      resolve();
    };
    const onData = (chunk: Buffer) => {
      bytes += chunk.length;
      if (bytes <= maxBytes) return;
      req.pause();
      done();
    };
    req.on('data', onData).once('end', done).once('close', done).once('error', done);
  });
}

/** Streams a file as the answer; a file that is not there is a 404 naming it. */
export async function sendFile(res: ServerResponse, path: string, contentType: string, missing: string): Promise<void> {
  const info = await stat(path).catch(() => null);
  if (!info?.isFile()) throw new ApiError(404, 'file_not_found', missing);
  res.writeHead(200, { 'content-type': contentType, 'content-length': String(info.size) });
  await pipeline(createReadStream(path), res).catch((error: unknown) => {
    // A client that hangs up mid-download is not the server's failure.
    if ((error as NodeJS.ErrnoException).code !== 'ERR_STREAM_PREMATURE_CLOSE') throw error;
  });
}

/** Whether a request carries `token` as its bearer token, compared in constant time (no timing hints about the token). */
export function hasBearerToken(req: IncomingMessage, token: string): boolean {
  const given = bearerToken(req);
  if (given === null) return false;
  const [a, b] = [createHash('sha256').update(given).digest(), createHash('sha256').update(token).digest()];
  return timingSafeEqual(a, b);
}

/** The bearer token of a request, or null. */
export function bearerToken(req: IncomingMessage): string | null {
  const match = /^Bearer\s+(.+)$/i.exec(req.headers.authorization ?? '');
  return match?.[1]?.trim() ?? null;
}

/** The media type of a request body, lower-cased, without parameters ("text/csv; charset=utf-8" -> "text/csv"). */
export function mediaType(req: IncomingMessage): string | null {
  const value = req.headers['content-type'];
  return value ? (value.split(';', 1)[0] ?? '').trim().toLowerCase() || null : null;
}

/** The charset parameter of a request's Content-Type, lower-cased and unquoted ("text/csv; charset=\"UTF-8\"" -> "utf-8"), or null. */
export function bodyCharset(req: IncomingMessage): string | null {
  const match = /;\s*charset\s*=\s*"?([^";\s]+)"?/i.exec(req.headers['content-type'] ?? '');
  return match?.[1]?.toLowerCase() ?? null;
}
