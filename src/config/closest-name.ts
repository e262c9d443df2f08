/**
 * The known name an unknown one was most likely meant to be (a config key, a task type): the same
 * with its unit ("timeout" for "timeout_ms"), or a typo of up to 2 edits; null when none is close.
 */
export function closestName(unknown: string, known: readonly string[]): string | null {
  const withUnit = known.find((key) => key.toLowerCase() === `${unknown.toLowerCase()}_ms`);
  if (withUnit) return withUnit;
  // Short keys get fewer edits: "rpm" is not a typo of "tpm".
  const allowed = Math.min(2, Math.floor(unknown.length / 3));
  let best: string | null = null;
  let bestDistance = Number.POSITIVE_INFINITY;
  for (const key of known) {
    const distance = editDistance(unknown.toLowerCase(), key.toLowerCase());
    if (distance < bestDistance) [best, bestDistance] = [key, distance];
  }
  return bestDistance <= allowed ? best : null;
}

/** Levenshtein distance, with a swap of two neighbouring letters counted as one edit. */
function editDistance(a: string, b: string): number {
  const rows = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) rows[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let best = Math.min(rows[i - 1]![j]! + 1, rows[i]![j - 1]! + 1, rows[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) best = Math.min(best, rows[i - 2]![j - 2]! + 1);
      rows[i]![j] = best;
    }
  }
  return rows[a.length]![b.length]!;
}

/**
 * ` (did you mean "x"?)` for the closest known model name, or nothing when none is close. Names
 * whose digits differ are other versions ("gpt-5", "qwen2.5-7b"), not typos, so they are not offered.
 */
export function meantHint(unknown: string, known: readonly string[]): string {
  const digits = (name: string) => name.replace(/\D/g, '');
  const meant = closestName(unknown, known.filter((name) => digits(name) === digits(unknown)));
  return meant ? ` (did you mean "${meant}"?)` : '';
}
