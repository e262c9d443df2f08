import { describe, expect, it } from 'vitest';
import { marginOfError, PairedScores } from '../../src/output/paired-scores.ts';

describe('scores paired by prompt', () => {
  it('compares each pair of answerers over the ids both answered, and nothing else', () => {
    const paired = new PairedScores();
    for (const [id, who, score] of [['p1', 'b', 7], ['p1', 'a', 9], ['p2', 'a', 4], ['p2', 'b', 6], ['p3', 'a', 5], ['p4', 'c', 3], ['p4', 'a', 3]] as const) paired.add(id, who, score);
    expect(paired.comparisons()).toEqual([
      { a: 'a', b: 'b', prompts: 2, a_better: 1, ties: 0, b_better: 1, mean_difference: 0, difference_margin: 3.92 },
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

  it('gives a 95% margin of error from the sample standard deviation', () => {
    expect(marginOfError({ count: 1, sum: 5, sumOfSquares: 25 })).toBeNull();
    // 2 and 4: mean 3, sample sd 1.414, standard error 1: margin 1.96.
    expect(marginOfError({ count: 2, sum: 6, sumOfSquares: 20 })).toBe(1.96);
    expect(marginOfError({ count: 3, sum: 15, sumOfSquares: 75 })).toBe(0);
  });
});
