/**
 * Judge scores paired by prompt: when the same row id was answered by two models (or ensembles),
 * the fair comparison of the two is over those prompts alone, answer against answer, rather than
 * the two means over different prompts. Memory: one small entry per scored id while the report is
 * tallied (only batches with a judge keep any).
 */

/** Two answerers compared over the prompts (row ids) both were scored on. */
export interface PairedComparison {
  a: string;
  b: string;
  /** Prompts both answered and the judge scored. */
  prompts: number;
  a_better: number;
  ties: number;
  b_better: number;
  /** Mean of a's score minus b's, to two decimals. */
  mean_difference: number;
  /** Its 95% margin of error (1.96 standard errors); null under two prompts. */
  difference_margin: number | null;
}

/** 1.96 sample standard errors of a mean, to two decimals: its 95% margin of error; null under 2 values. */
export function marginOfError({ count, sum, sumOfSquares }: { count: number; sum: number; sumOfSquares: number }): number | null {
  if (count < 2) return null;
  const variance = Math.max(0, (sumOfSquares - (sum * sum) / count) / (count - 1));
  return Math.round(1.96 * Math.sqrt(variance / count) * 100) / 100;
}

/** An id's scores: one answerer's as a pair, more as a list of pairs (most ids have one). */
type IdScores = [string, number] | Array<[string, number]>;

export class PairedScores {
  readonly #byId = new Map<string, IdScores>();

  /** The judge's score of `answerer`'s answer to row `id`; a second score for the same pair replaces the first. */
  add(id: string, answerer: string, score: number): void {
    const held = this.#byId.get(id);
    if (held === undefined) {
      this.#byId.set(id, [answerer, score]);
      return;
    }
    const list: Array<[string, number]> = typeof held[0] === 'string' ? [held as [string, number]] : (held as Array<[string, number]>);
    const same = list.find(([name]) => name === answerer);
    if (same) same[1] = score;
    else list.push([answerer, score]);
    this.#byId.set(id, list);
  }

  /** Every pair of answerers with a prompt in common, the most prompts first (names in code-point order within a pair). */
  comparisons(): PairedComparison[] {
    const tallies = new Map<string, { a: string; b: string; n: number; aBetter: number; ties: number; sum: number; sumOfSquares: number }>();
    for (const held of this.#byId.values()) {
      if (typeof held[0] === 'string') continue;
      const list = [...(held as Array<[string, number]>)].sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0));
      for (let i = 0; i < list.length; i++) {
        for (let j = i + 1; j < list.length; j++) {
          const [a, scoreA] = list[i]!;
          const [b, scoreB] = list[j]!;
          const key = `${a}\u0000${b}`;
          const tally = tallies.get(key) ?? { a, b, n: 0, aBetter: 0, ties: 0, sum: 0, sumOfSquares: 0 };
          const difference = scoreA - scoreB;
          tally.n += 1;
          if (difference > 0) tally.aBetter += 1;
          else if (difference === 0) tally.ties += 1;
          tally.sum += difference;
          tally.sumOfSquares += difference * difference;
          tallies.set(key, tally);
        }
      }
    }
    return [...tallies.values()]
      .sort((x, y) => y.n - x.n || (x.a < y.a ? -1 : x.a > y.a ? 1 : x.b < y.b ? -1 : x.b > y.b ? 1 : 0))
      .map((t) => ({
        a: t.a,
        b: t.b,
        prompts: t.n,
        a_better: t.aBetter,
        ties: t.ties,
        b_better: t.n - t.aBetter - t.ties,
        mean_difference: Math.round((t.sum / t.n) * 100) / 100,
        difference_margin: marginOfError({ count: t.n, sum: t.sum, sumOfSquares: t.sumOfSquares }),
      }));
  }
}
