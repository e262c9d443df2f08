import { isUtf8 } from 'node:buffer';

/**
 * Decoded as UTF-8, bytes that are not UTF-8 (a Latin-1 or Windows-1252 export) become U+FFFD,
 * but so is U+FFFD itself, a character real text holds (scraped pages, an earlier tool's or a
 * model's answer fed back in): only the bytes tell them apart. Readers look at the bytes only for
 * text that holds U+FFFD, so text without one costs nothing more.
 *
 * Returns null when `bytes` are UTF-8 (every U+FFFD in them was written as such), else how many
 * U+FFFD they hold, written as such, before their first byte that is not UTF-8: the reader finds
 * that byte's U+FFFD in the decoded text by it (its line, in a record that spans lines).
 */
export function undecodableAt(bytes: Uint8Array): number | null {
  if (isUtf8(bytes)) return null;
  const before = Buffer.from(bytes.buffer, bytes.byteOffset, firstInvalidByte(bytes)).toString('utf8');
  let count = 0;
  for (let at = before.indexOf('\uFFFD'); at !== -1; at = before.indexOf('\uFFFD', at + 1)) count += 1;
  return count;
}

/** The offset of the first byte that starts no well-formed UTF-8 sequence (Unicode's table 3-7), or the length when there is none. */
function firstInvalidByte(bytes: Uint8Array): number {
  let i = 0;
  while (i < bytes.length) {
    const lead = bytes[i]!;
    const length = lead < 0x80 ? 1 : lead >= 0xc2 && lead <= 0xdf ? 2 : lead >= 0xe0 && lead <= 0xef ? 3 : lead >= 0xf0 && lead <= 0xf4 ? 4 : 0;
    if (length === 0 || i + length > bytes.length) return i;
    // The second byte's range rules out overlong forms, surrogates and code points past U+10FFFF.
    const low = lead === 0xe0 ? 0xa0 : lead === 0xf0 ? 0x90 : 0x80;
    const high = lead === 0xed ? 0x9f : lead === 0xf4 ? 0x8f : 0xbf;
    if (length > 1 && (bytes[i + 1]! < low || bytes[i + 1]! > high)) return i;
    for (let k = 2; k < length; k++) if (bytes[i + k]! < 0x80 || bytes[i + k]! > 0xbf) return i;
    i += length;
  }
  return i;
}
