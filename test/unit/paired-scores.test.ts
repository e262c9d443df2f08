import { describe, expect, it } from 'vitest';
import { marginOfError, PairedScores } from '../../src/output/paired-scores.ts';

describe('scores paired by prompt', () => {
  it('compares each pair of answerers over the ids both answered, and nothing else', () => {
    const paired = new PairedScores();
    for (const [id, who, score] of [['p1', 'b', 7], ['p1', 'a', 9], ['p2', 'a', 4], ['p2', 'b', 6], ['p3', 'a', 5], ['p4', 'c', 3], ['p4', 'a', 3]] as const) paired.add(id, who, score);
    expect(paired.comparisons()).toEqual([
      { a: 'a', b: 'b', prompts: 2, a_better: 1, ties: 0, b_better: 1, mean_difference: 0, difference_margin: 25.41 }, // +2 and -2: sd 2.83, standard error 2, t(1) 12.71
      { a: 'a', b: 'c', prompts: 1, a_better: 0, ties: 1, b_better: 0, mean_difference: 0, difference_margin: null },
    ]);
  });

  it('keeps the last score of an answerer that answered an id twice', () => {
    const paired = new PairedScores();
    paired.add('p1', 'a', 2);
    paired.add('p1', 'b', 5);
    paired.add('p1', 'a', 8);
    expect(paired.comparisons()).toMatchObject([{ a: 'a', b: 'b', prompts: 1, a_better: 1, mean_difference: 3 }]);
  });

  it("gives a 95% margin of error from the sample standard deviation and Student's t", () => {
    expect(marginOfError({ count: 1, sum: 5, sumOfSquares: 25 })).toBeNull();
    // 2 and 4: mean 3, sample sd 1.414, standard error 1: t with 1 degree of freedom, 12.71 (1.96 claimed far too much).
    expect(marginOfError({ count: 2, sum: 6, sumOfSquares: 20 })).toBe(12.71);
    // 31 scores, sd 2 (15 of 4, 16 of 8 gives about that): t(30) 2.042.
    const scores = [...Array(15).fill(4), ...Array(16).fill(8)] as number[];
    const sum = scores.reduce((a, b) => a + b, 0);
    const sumOfSquares = scores.reduce((a, b) => a + b * b, 0);
    const sd = Math.sqrt((sumOfSquares - (sum * sum) / 31) / 30);
    expect(marginOfError({ count: 31, sum, sumOfSquares })).toBe(Math.round(2.042 * (sd / Math.sqrt(31)) * 100) / 100);
  });

  it('never claims a margin of 0: whole-number scores carry their rounding (QA: "8.0 ± 0.0" from two rows)', () => {
    // Three 5s: the variance is taken as 1/12, standard error 0.167, t(2) 4.30.
    expect(marginOfError({ count: 3, sum: 15, sumOfSquares: 75 })).toBe(0.72);
    // A thousand equal scores: a small margin, not none.
    expect(marginOfError({ count: 1000, sum: 7000, sumOfSquares: 49000 })).toBe(0.02);
  });
});
