import type { Transform } from 'node:stream';
import zlib from 'node:zlib';

/** Content codings (RFC 9110 §8.4) of an HTTP answer, undone as fetch undoes them. */
export type ContentCoding = 'gzip' | 'deflate' | 'br' | 'zstd';

/** The codings to undo, last applied first; `identity` and unknown ones are left as they are (as fetch does). */
export function contentCodings(header: string | null): ContentCoding[] {
  if (!header) return [];
  const known = new Set<string>(['gzip', 'deflate', 'br', 'zstd']);
  return header
    .split(',')
    .map((coding) => coding.trim().toLowerCase().replace(/^x-gzip$/, 'gzip'))
    .filter((coding): coding is ContentCoding => known.has(coding))
    .reverse();
}

export function decodeBytes(bytes: Buffer, coding: ContentCoding): Buffer {
  switch (coding) {
    case 'gzip':
      return zlib.gunzipSync(bytes, { finishFlush: zlib.constants.Z_SYNC_FLUSH });
    case 'deflate':
      // Servers send "deflate" both with the zlib wrapper (the standard) and without it.
      return (bytes[0]! & 0x0f) === 0x08 ? zlib.inflateSync(bytes, { finishFlush: zlib.constants.Z_SYNC_FLUSH }) : zlib.inflateRawSync(bytes, { finishFlush: zlib.constants.Z_SYNC_FLUSH });
    case 'br':
      return zlib.brotliDecompressSync(bytes);
    case 'zstd':
      return zlib.zstdDecompressSync(bytes);
  }
}

export function decoderStream(coding: ContentCoding): Transform {
  const flush = { finishFlush: zlib.constants.Z_SYNC_FLUSH };
  switch (coding) {
    case 'gzip':
      return zlib.createGunzip(flush);
    case 'deflate':
      return zlib.createInflate(flush);
    case 'br':
      return zlib.createBrotliDecompress();
    case 'zstd':
      return zlib.createZstdDecompress();
  }
}
