/**
 * A cheap, deterministic token estimate for the simulator's `usage`: one token per CJK character
 * (Han, kana, Hangul), one per four other UTF-16 code units, rounded up, and never below 1.
 * It is not any real tokenizer; it only has to be stable and roughly the right size.
 */

/** Extra prompt tokens per message (role and separators) and per request (reply priming). */
export const MESSAGE_OVERHEAD_TOKENS = 4;
export const REQUEST_OVERHEAD_TOKENS = 3;

function isCjk(code: number): boolean {
  return (
    (code >= 0x3040 && code <= 0x30ff) || // hiragana, katakana
    (code >= 0x3400 && code <= 0x4dbf) || // CJK extension A
    (code >= 0x4e00 && code <= 0x9fff) || // CJK unified ideographs
    (code >= 0xac00 && code <= 0xd7af) || // Hangul syllables
    (code >= 0xf900 && code <= 0xfaff) // CJK compatibility ideographs
  );
}

function isHighSurrogate(code: number): boolean {
  return code >= 0xd800 && code <= 0xdbff;
}

function tokensOf(cjk: number, other: number): number {
  return cjk + Math.ceil(other / 4);
}

export function countCjk(text: string): number {
  let cjk = 0;
  for (let i = 0; i < text.length; i++) {
    if (isCjk(text.charCodeAt(i))) cjk++;
  }
  return cjk;
}

export function estimateTokens(text: string): number {
  const cjk = countCjk(text);
  return Math.max(1, tokensOf(cjk, text.length - cjk));
}

/** Prompt tokens for a chat request from its messages' text contents. */
export function promptTokens(contents: readonly string[]): number {
  let total = REQUEST_OVERHEAD_TOKENS;
  for (const content of contents) total += estimateTokens(content) + MESSAGE_OVERHEAD_TOKENS;
  return total;
}

/** The longest prefix of `text` whose estimate is at most `maxTokens` (at least one character). */
export function truncateToTokens(text: string, maxTokens: number): string {
  let cjk = 0;
  let other = 0;
  for (let i = 0; i < text.length; i++) {
    if (isCjk(text.charCodeAt(i))) cjk++;
    else other++;
    if (tokensOf(cjk, other) > maxTokens) {
      // Do not split a surrogate pair.
      const end = i > 1 && isHighSurrogate(text.charCodeAt(i - 1)) ? i - 1 : i;
      return text.slice(0, Math.max(1, end));
    }
  }
  return text;
}
