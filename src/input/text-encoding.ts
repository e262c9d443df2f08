/** How an input file's text is encoded: UTF-8 (the rule), or UTF-16 marked by its byte order mark. */
export type TextEncoding = 'utf-8' | 'utf-16le' | 'utf-16be';

/**
 * The encoding of a file from its opening bytes: UTF-16 by its byte order mark (Excel's "Unicode
 * Text", Windows PowerShell's `>` and Out-File write UTF-16LE with one), else UTF-8. 'utf-16 without
 * bom' when many of the bytes are 0 at alternating positions, as ASCII text in UTF-16 is: UTF-8
 * text has no 0 bytes, and which byte order such a file has cannot be told for sure.
 */
export function textEncoding(opening: Uint8Array): TextEncoding | 'utf-16 without bom' {
  if (opening[0] === 0xff && opening[1] === 0xfe) return 'utf-16le';
  if (opening[0] === 0xfe && opening[1] === 0xff) return 'utf-16be';
  const zeros = [0, 0];
  for (let i = 0; i < opening.length; i++) if (opening[i] === 0) zeros[i % 2]! += 1;
  const pairs = Math.floor(opening.length / 2);
  // A quarter of the pairs: text in UTF-16 that is mostly not ASCII (CJK) has few 0 bytes.
  return pairs >= 2 && Math.max(zeros[0]!, zeros[1]!) >= pairs / 4 && Math.min(zeros[0]!, zeros[1]!) <= pairs / 16 ? 'utf-16 without bom' : 'utf-8';
}
