import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { formatCsvJournalEntry, formatJournalLine, writeOrderedCsv, writeOrderedResults } from '../../src/output/ordered-results.ts';
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
    // A line longer than any of the reader's buffers.
    journal += formatJournalLine(rows + 1, JSON.stringify({ row: rows + 1, text: 'x'.repeat(2_500_000), round: 1 }));
    await writeFile(join(dir, 'journal'), journal);

    expect(writeOrderedResults(join(dir, 'journal'), join(dir, 'results.jsonl'))).toBe(rows + 1);
    const lines = (await readFile(join(dir, 'results.jsonl'), 'utf8')).trimEnd().split('\n').map((line) => JSON.parse(line) as { row: number; round: number });
    expect(lines.map((l) => l.row)).toEqual(Array.from({ length: rows + 1 }, (_, i) => i + 1));
    expect(lines.filter((l) => l.round === 2).map((l) => l.row)).toEqual(Array.from({ length: Math.ceil((rows - 2) / 11) }, (_, i) => 3 + i * 11));
  });
});

describe('writeOrderedCsv', () => {
  it('keeps the newest record of each row in row order, pads metadata cells, and ignores a cut-off last entry', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'switchyard-ordered-csv-'));
    const random = mulberry32(9);
    const rows = 5_000;
    const order = Array.from({ length: rows }, (_, i) => i + 1).sort(() => random() - 0.5);
    // Records hold quoted line breaks and multi-byte text; the first half knew one metadata key, the rest two.
    const recordOf = (row: number, round: number, keys: number) => `${row},"line one\nline 二 ${'語'.repeat(row % 300)}",r${round}${keys === 2 ? ',a,b' : ',a'}\n`;
    let journal = '';
    const expected = new Map<number, string>();
    order.forEach((row, i) => {
      const keys = i < rows / 2 ? 1 : 2;
      journal += formatCsvJournalEntry(row, keys, recordOf(row, 1, keys));
      expected.set(row, keys === 1 ? recordOf(row, 1, 1).replace(/\n$/, ',') : recordOf(row, 1, 2).slice(0, -1));
    });
    for (let row = 7; row <= rows; row += 13) {
      journal += formatCsvJournalEntry(row, 2, recordOf(row, 2, 2));
      expected.set(row, recordOf(row, 2, 2).slice(0, -1));
    }
    const huge = `${rows + 1},"${'x'.repeat(1_500_000)}",r1,a,b\n`;
    journal += formatCsvJournalEntry(rows + 1, 2, huge);
    journal += formatCsvJournalEntry(rows + 2, 2, 'cut off in the middle\n').slice(0, -5);
    await writeFile(join(dir, 'journal'), journal);

    expect(writeOrderedCsv(join(dir, 'journal'), join(dir, 'results.csv'), 'row,text,round,k1,k2\n', 2)).toBe(rows + 1);
    const text = await readFile(join(dir, 'results.csv'), 'utf8');
    expect(text.startsWith('row,text,round,k1,k2\n1,"line one\nline 二 ')).toBe(true);
    expect(text.endsWith(huge)).toBe(true);
    const records = text.slice(0, -huge.length - 1).split(/\n(?=\d+,")/).slice(1);
    expect(records.map((r) => Number(r.slice(0, r.indexOf(','))))).toEqual(Array.from({ length: rows }, (_, i) => i + 1));
    for (const record of records) expect(record).toBe(expected.get(Number(record.slice(0, record.indexOf(',')))));
  });
});
