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
  /** Its 95% margin of error (marginOfError); null under two prompts. */
  difference_margin: number | null;
}

/** Student's t for a two-sided 95% interval, by degrees of freedom 1-30 (past 30: 1.96 + 2.4 / df, within 0.01). */
const T_95 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.16, 2.145, 2.131, 2.12, 2.11, 2.101, 2.093, 2.086, 2.08, 2.074, 2.069, 2.064, 2.06, 2.056, 2.052, 2.048, 2.045, 2.042];
const t95 = (degrees: number): number => T_95[degrees - 1] ?? 1.96 + 2.4 / degrees;

/**
 * The judge's scores are whole numbers: each carries up to half a point of rounding, a variance of
 * 1/12 (a difference of two scores 2/12). A sample's variance is taken as at least that, or a few
 * equal scores would claim a margin of 0 (QA: "8.0 ± 0.0" from two rows).
 */
const SCORE_ROUNDING_VARIANCE = 1 / 12;

/**
 * A mean's 95% margin of error, to two decimals: t standard errors (Student's t, not 1.96, so that a
 * handful of scores gets the wide margin it has), the variance at least `minVariance`; null under 2 values.
 */
export function marginOfError({ count, sum, sumOfSquares }: { count: number; sum: number; sumOfSquares: number }, minVariance = SCORE_ROUNDING_VARIANCE): number | null {
  if (count < 2) return null;
  const variance = Math.max(minVariance, (sumOfSquares - (sum * sum) / count) / (count - 1));
  return Math.round(t95(count - 1) * Math.sqrt(variance / count) * 100) / 100;
}

/** An answerer's score of an id; null for an answer left out of the pairs (a fallback gave it: leaveOut). */
type Scored = [string, number | null];
/** An id's scores: one answerer's as a pair, more as a list of pairs (most ids have one). */
type IdScores = Scored | Scored[];

export class PairedScores {
  readonly #byId = new Map<string, IdScores>();

  /** The judge's score of `answerer`'s answer to row `id`; a second score for the same pair replaces the first. */
  add(id: string, answerer: string, score: number): void {
    this.#hold(id, answerer, score);
  }

  /**
   * A scored answer to row `id` that a fallback gave in place of `answerer` (the model or ensemble
   * the row was put to): not `answerer`'s answer, so in none of its pairs, but counted by leftOut.
   */
  leaveOut(id: string, answerer: string): void {
    this.#hold(id, answerer, null);
  }

  #hold(id: string, answerer: string, score: number | null): void {
    const held = this.#byId.get(id);
    if (held === undefined) {
      this.#byId.set(id, [answerer, score]);
      return;
    }
    const list: Scored[] = typeof held[0] === 'string' ? [held as Scored] : (held as Scored[]);
    const same = list.find(([name]) => name === answerer);
    if (same) same[1] = score;
    else list.push([answerer, score]);
    this.#byId.set(id, list);
  }

  /**
   * The answers left out of the pairs (leaveOut) whose prompt another answerer was scored on too,
   * so that they would have made pairs, by the answerer they were put to, the most first.
   */
  leftOut(): Record<string, number> {
    const byAnswerer = new Map<string, number>();
    for (const held of this.#byId.values()) {
      if (typeof held[0] === 'string') continue;
      for (const [name, score] of held as Scored[]) if (score === null) byAnswerer.set(name, (byAnswerer.get(name) ?? 0) + 1);
    }
    return Object.fromEntries([...byAnswerer].sort(([x, m], [y, n]) => n - m || (x < y ? -1 : x > y ? 1 : 0)));
  }

  /** Every pair of answerers with a prompt in common, the most prompts first (names in code-point order within a pair). */
  comparisons(): PairedComparison[] {
    const tallies = new Map<string, { a: string; b: string; n: number; aBetter: number; ties: number; sum: number; sumOfSquares: number }>();
    for (const held of this.#byId.values()) {
      if (typeof held[0] === 'string') continue;
      const list = (held as Scored[]).filter((scored): scored is [string, number] => scored[1] !== null).sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0));
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
        difference_margin: marginOfError({ count: t.n, sum: t.sum, sumOfSquares: t.sumOfSquares }, 2 * SCORE_ROUNDING_VARIANCE),
      }));
  }
}
