import { Transform } from 'node:stream';
import type { TextEncoding } from './text-encoding.ts';

/**
 * What a UTF-16 code unit that is no character (half of a surrogate pair, an odd last byte) becomes
 * in the UTF-8 copy: a byte that is never part of UTF-8. The readers then tell it from a U+FFFD the
 * file holds, written in the copy as the character (EF BF BD), by the bytes, as they do for a UTF-8
 * file (undecodable-bytes.ts); TextDecoder wrote U+FFFD for both, and every U+FFFD was refused.
 */
const NOT_UTF8 = Buffer.from([0xff]);

/**
 * UTF-16 bytes to UTF-8 bytes, a byte order mark at the start dropped. A surrogate pair split
 * between chunks, or a code unit's two bytes, is carried over to the next chunk.
 */
export function utf16ToUtf8(encoding: Exclude<TextEncoding, 'utf-8'>): Transform {
  let oddByte: Buffer | null = null;
  let highSurrogate = '';
  let atStart = true;
  return new Transform({
    transform(chunk: Buffer, _encoding, done) {
      const bytes = oddByte ? Buffer.concat([oddByte, chunk]) : chunk;
      const even = bytes.length - (bytes.length % 2);
      oddByte = even < bytes.length ? Buffer.from(bytes.subarray(even)) : null;
      let text = highSurrogate + codeUnits(bytes.subarray(0, even), encoding);
      if (atStart && text.length > 0) {
        atStart = false;
        if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
      }
      // A high surrogate last may be the first half of a pair the next chunk ends.
      const last = text.charCodeAt(text.length - 1);
      highSurrogate = last >= 0xd800 && last <= 0xdbff ? text.slice(-1) : '';
      done(null, utf8Of(highSurrogate ? text.slice(0, -1) : text));
    },
    flush(done) {
      done(null, Buffer.concat([utf8Of(highSurrogate), oddByte ? NOT_UTF8 : Buffer.alloc(0)]));
    },
  });
}

/** The code units of an even number of UTF-16 bytes as a string, half surrogate pairs kept as they are. */
function codeUnits(bytes: Buffer, encoding: Exclude<TextEncoding, 'utf-8'>): string {
  if (encoding === 'utf-16le') return bytes.toString('utf16le');
  return Buffer.from(bytes).swap16().toString('utf16le');
}

/** `text` in UTF-8, each half of a surrogate pair in it as NOT_UTF8. */
function utf8Of(text: string): Buffer {
  if (text.isWellFormed()) return Buffer.from(text, 'utf8');
  const parts: Buffer[] = [];
  let from = 0;
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    if (unit < 0xd800 || unit > 0xdfff) continue;
    const next = text.charCodeAt(i + 1);
    if (unit <= 0xdbff && next >= 0xdc00 && next <= 0xdfff) {
      i += 1; // a whole pair
      continue;
    }
    parts.push(Buffer.from(text.slice(from, i), 'utf8'), NOT_UTF8);
    from = i + 1;
  }
  parts.push(Buffer.from(text.slice(from), 'utf8'));
  return Buffer.concat(parts);
}
