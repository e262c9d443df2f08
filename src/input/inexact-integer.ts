/**
 * Integers past 2^53-1, which JSON.parse (and Number(), for a CSV cell) can only round:
 * 12345678901234567890 reads as 12345678901234567000. A request field given one would be sent as
 * another number (another seed), so its row is refused instead, saying what was written and what
 * range is taken.
 */

/** The range of integers read exactly, as a message says it. */
export const EXACT_INTEGER_RANGE = `-${Number.MAX_SAFE_INTEGER} to ${Number.MAX_SAFE_INTEGER} (2^53-1)`;

/** A whole number that is not read exactly: past 2^53-1 either way (a finite one: 1e999 is Infinity). */
export function isInexactInteger(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && !Number.isSafeInteger(value);
}

/**
 * What "got" in a message says of such a number: the text written when known (a JSONL line's, a
 * CSV cell's), beside what it reads as; when only the read number is known (a JSON body's rows
 * were parsed before they were saved), that number, said to have lost digits.
 */
export function inexactIntegerText(value: number, written: string | undefined): string {
  // As JSON.stringify writes it: the number a call would send.
  const read = String(value);
  if (written !== undefined && written !== read) return `${written}, which is too large to be read exactly (it reads as ${read})`;
  return `an integer too large to be read exactly (it reads as ${read}, which may have lost digits already)`;
}
