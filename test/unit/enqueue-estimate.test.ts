import { describe, expect, it } from 'vitest';
import { readCsvRows } from '../../src/input/csv-reader.ts';
import { readJsonlRows } from '../../src/input/jsonl-reader.ts';
import type { ReadPosition } from '../../src/input/row.ts';
import { estimatedTotal } from '../../src/queue/producer.ts';
import { rules, useTempFiles } from '../helpers/reader-fixtures.ts';

const temp = useTempFiles('estimate');

/** Reads `stopAfter` items and returns the estimate the producer would record then. */
async function estimateAfter(items: AsyncGenerator<unknown>, position: ReadPosition, stopAfter: number): Promise<number | null> {
  let read = 0;
  for await (const _item of items) {
    read += 1;
    if (read === stopAfter) break;
  }
  return estimatedTotal(read, position);
}

describe('row count estimate while reading', () => {
  it('CSV: rows read so far scaled by the bytes they took', async () => {
    const body = Array.from({ length: 10_000 }, (_, i) => `r${i},"Question ${i}: explain item ${i % 997}, briefly",topic-${i % 7}\n`).join('');
    const path = await temp.file('rows.csv', `id,prompt,topic\n${body}`);
    const position: ReadPosition = { bytesRead: 0, fileBytes: 0 };
    const estimate = await estimateAfter(readCsvRows(path, rules, position), position, 1000);
    expect(position.fileBytes).toBe(Buffer.byteLength(`id,prompt,topic\n${body}`));
    expect(estimate).toBeGreaterThan(9_500);
    expect(estimate).toBeLessThan(10_500);
  });

  it('JSONL: the same, line by line, with multi-byte text', async () => {
    const body = Array.from({ length: 5_000 }, (_, i) => `${JSON.stringify({ id: `r${i}`, prompt: `${'説明してください'.repeat(1 + (i % 3))} ${i}` })}\n`).join('');
    const path = await temp.file('rows.jsonl', body);
    const position: ReadPosition = { bytesRead: 0, fileBytes: 0 };
    const estimate = await estimateAfter(readJsonlRows(path, rules, position), position, 600);
    expect(estimate).toBeGreaterThan(4_700);
    expect(estimate).toBeLessThan(5_300);
  });

  it('is exact at the end of the file, never below the rows read, and unknown before any byte', () => {
    expect(estimatedTotal(10, { bytesRead: 100, fileBytes: 100 })).toBe(10);
    expect(estimatedTotal(10, { bytesRead: 100, fileBytes: 50 })).toBe(10);
    expect(estimatedTotal(0, { bytesRead: 0, fileBytes: 100 })).toBeNull();
    expect(estimatedTotal(5, { bytesRead: 10, fileBytes: 0 })).toBeNull();
    expect(estimatedTotal(5, undefined)).toBeNull();
  });
});
