import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { formatJournalLine, writeOrderedResults } from '../../src/output/ordered-results.ts';
import { mulberry32 } from '../../src/sim/prng.ts';

describe('writeOrderedResults', () => {
  it('writes each row once, in row order, keeping the newest line of a re-run row, whatever the line sizes', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'switchyard-ordered-'));
    const random = mulberry32(5);
    const rows = 20_000;
    const order = Array.from({ length: rows }, (_, i) => i + 1).sort(() => random() - 0.5);
    let journal = '';
    for (const row of order) journal += formatJournalLine(row, JSON.stringify({ row, text: '日本'.repeat(row % 500), round: 1 }));
    for (let row = 3; row <= rows; row += 11) journal += formatJournalLine(row, JSON.stringify({ row, round: 2 }));
    // A line longer than the reader's 1 MiB buffer.
    journal += formatJournalLine(rows + 1, JSON.stringify({ row: rows + 1, text: 'x'.repeat(2_500_000), round: 1 }));
    await writeFile(join(dir, 'journal'), journal);

    expect(writeOrderedResults(join(dir, 'journal'), join(dir, 'results.jsonl'))).toBe(rows + 1);
    const lines = (await readFile(join(dir, 'results.jsonl'), 'utf8')).trimEnd().split('\n').map((line) => JSON.parse(line) as { row: number; round: number });
    expect(lines.map((l) => l.row)).toEqual(Array.from({ length: rows + 1 }, (_, i) => i + 1));
    expect(lines.filter((l) => l.round === 2).map((l) => l.row)).toEqual(Array.from({ length: Math.ceil((rows - 2) / 11) }, (_, i) => 3 + i * 11));
  });
});
