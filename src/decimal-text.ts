/**
 * A number as a person writes one: digits, maybe a decimal point. Number() alone also takes "0x10"
 * (16), "1e3", "Infinity" and "" (0), which given as a budget or a limit are typos, not amounts.
 */
export function parseDecimal(text: string): number | null {
  const trimmed = text.trim();
  return /^(\d+(\.\d*)?|\.\d+)$/.test(trimmed) ? Number(trimmed) : null;
}
