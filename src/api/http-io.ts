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

/** How much of a refused upload's body is read before its error answer: a client sending it whole first hears why, a stalled or endless one does not hold the answer. */
const DRAIN_LIMITS = { bytes: 64 * 1024 * 1024, idleMs: 5_000, totalMs: 30_000 };

/**
 * Reads and drops what is left of a request's body before an error answer goes out: Node closes
 * the connection of a request whose body was not read once its answer ends, and a client that
 * sends its whole body before reading the answer (Python's urllib and requests) then gets a broken
 * pipe instead of the error's message. Bounded (DRAIN_LIMITS): past 64 MB, 5 s without a byte or
 * 30 s in all it stops, and answers false (the answer then closes the connection).
 */
export function drainBody(req: IncomingMessage, limits = DRAIN_LIMITS): Promise<boolean> {
  if (req.complete || req.destroyed) return Promise.resolve(true);
  return new Promise((resolve) => {
    let bytes = 0;
    const stop = (whole: boolean) => {
      clearTimeout(idle);
      clearTimeout(total);
      req.off('data', onData).off('end', ended).off('close', closed).off('error', closed);
      if (!whole) req.pause();
      resolve(whole);
    };
    const ended = () => stop(true);
    const closed = () => stop(false);
    let idle = setTimeout(closed, limits.idleMs);
    const total = setTimeout(closed, limits.totalMs);
    const onData = (chunk: Buffer) => {
      bytes += chunk.length;
      if (bytes > limits.bytes) return stop(false);
      idle.refresh();
    };
    req.on('data', onData).once('end', ended).once('close', closed).once('error', closed);
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
