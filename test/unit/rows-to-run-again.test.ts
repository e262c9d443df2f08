import { describe, expect, it } from 'vitest';
import type { InputRow } from '../../src/input/row.ts';
import { keepInvalidRowsFingerprints, sortRowsToRunAgain, type RowsBefore } from '../../src/queue/rows-to-run-again.ts';
import { promptJobId } from '../../src/queue/keys.ts';

const row = (n: number): InputRow => ({ row: n, line: n + 1, id: String(n), messages: [{ role: 'user', content: `prompt ${n}` }], metadata: {} });
const words = (...values: number[]): Buffer => {
  const buffer = Buffer.alloc(values.length * 4);
  values.forEach((value, i) => buffer.writeUInt32BE(value, i * 4));
  return buffer;
};

/** Rows 1..6 of a resumed chunk, fingerprints now 11..16; `recorded` is what the earlier run kept. */
function before(overrides: Partial<RowsBefore>): RowsBefore {
  return {
    batchId: 'b1',
    first: 1,
    fingerprints: words(11, 12, 13, 14, 15, 16),
    recorded: words(11, 12, 13, 14, 15, 16),
    succeeded: new Set(),
    finished: new Set(),
    setAside: new Set(),
    unscored: () => false,
    ...overrides,
  };
}

describe('sortRowsToRunAgain', () => {
  it('leaves out what succeeded unchanged and runs again what failed, never finished or changed', () => {
    const counts = { backInFile: 0, changedSinceSucceeded: 0 };
    const sorted = sortRowsToRunAgain([1, 2, 3, 4, 5, 6].map(row), before({
      recorded: words(11, 12, 13, 99, 98, 16), // rows 4 and 5 were edited since
      succeeded: new Set([1, 4, 6]),
      finished: new Set([1, 2, 4, 6]),
      unscored: (r) => r.row === 6,
    }), counts);
    expect(sorted.candidates.map((r) => r.row)).toEqual([2, 3, 4, 5, 6]);
    expect(sorted.failed).toEqual([2]);
    expect(sorted.unfinished).toEqual([3]);
    // 4 succeeded and was edited; 5 was still queued when edited (its old job is superseded); 6 is scored again.
    expect(sorted.changed).toEqual([4, 5, 6]);
    expect(sorted.supersededJobs).toEqual([promptJobId('b1', 5, 98)]);
    expect([...sorted.rescored]).toEqual([6]);
    expect(sorted.restored).toEqual([]);
    expect(counts).toEqual({ backInFile: 0, changedSinceSucceeded: 1 });
  });

  it('puts back a withdrawn row given back as it was, and runs one given back edited', () => {
    const counts = { backInFile: 0, changedSinceSucceeded: 0 };
    const sorted = sortRowsToRunAgain([row(1), row(2)], before({ recorded: words(11, 77), setAside: new Set([1, 2]) }), counts);
    expect(sorted.restored).toEqual([1]);
    expect(sorted.candidates.map((r) => r.row)).toEqual([2]);
    expect(sorted.changed).toEqual([2]);
    expect(counts.backInFile).toBe(1);
  });

  it('counts the rows of a batch from before fingerprints were kept (0) as unchanged', () => {
    const counts = { backInFile: 0, changedSinceSucceeded: 0 };
    const sorted = sortRowsToRunAgain([row(1), row(2)], before({ recorded: Buffer.alloc(0), succeeded: new Set([1]), finished: new Set([1]) }), counts);
    expect(sorted.candidates.map((r) => r.row)).toEqual([2]);
    expect(sorted.unfinished).toEqual([2]);
    expect(sorted.supersededJobs).toEqual([]);
  });
});

describe('keepInvalidRowsFingerprints', () => {
  it('gives an invalid row between valid ones (0) the fingerprint recorded for it', () => {
    const current = words(11, 0, 13);
    keepInvalidRowsFingerprints(current, words(11, 42, 99));
    expect(current).toEqual(words(11, 42, 13));
  });
});
