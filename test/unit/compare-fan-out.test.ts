import { describe, expect, it } from 'vitest';
import { compareRowNumber, comparedText, fanOutItem, noneCompared } from '../../src/routing/compare-fan-out.ts';
import type { InputRow, QueueItem, ReadItem } from '../../src/input/row.ts';

const MODELS = ['flash', 'pro', 'glm'];

const row = (record: number, extra: Partial<InputRow> = {}): ReadItem => ({
  kind: 'row',
  value: { row: record, line: record + 1, id: `q${record}`, messages: [{ role: 'user', content: `prompt ${record}` }], metadata: { topic: 't' }, ...extra },
});

/** [kind, row, model] of each item, to read the fan-out at a glance. */
const shape = (items: QueueItem[]) => items.map((item) => [item.kind, item.value.row, item.kind === 'row' ? (item.value.model ?? null) : null]);

describe('--compare fan-out', () => {
  it('numbers rows as the file with each record once per model: record r, k-th of N models -> (r-1)*N+k', () => {
    expect(compareRowNumber(1, 1, 3)).toBe(1);
    expect(compareRowNumber(1, 3, 3)).toBe(3);
    expect(compareRowNumber(2, 1, 3)).toBe(4);
    expect(compareRowNumber(5, 2, 2)).toBe(10);
  });

  it('puts a record that names no model to every model, its id, line and fields kept', () => {
    const tally = noneCompared();
    const items = fanOutItem(row(2), MODELS, tally);
    expect(shape(items)).toEqual([
      ['row', 4, 'flash'],
      ['row', 5, 'pro'],
      ['row', 6, 'glm'],
    ]);
    for (const item of items) {
      if (item.kind !== 'row') throw new Error('a row');
      // The same id on each: the judge's pairwise comparison pairs the answers by it. Copies hold no duplicate_id error (that check is the reader's, before).
      expect(item.value).toMatchObject({ id: 'q2', line: 3, metadata: { topic: 't' }, messages: [{ role: 'user', content: 'prompt 2' }], compared: true });
    }
    expect(tally).toEqual({ prompts: 1, ownModel: 0, firstOwnModelLine: null });
  });

  it("keeps a record that names its own model as one row, at that model's number (its first for another model), the others vacant", () => {
    const tally = noneCompared();
    expect(shape(fanOutItem(row(3, { model: 'pro' }), MODELS, tally))).toEqual([
      ['vacant', 7, null],
      ['row', 8, 'pro'],
      ['vacant', 9, null],
    ]);
    expect(shape(fanOutItem(row(4, { model: 'council' }), MODELS, tally))).toEqual([
      ['row', 10, 'council'],
      ['vacant', 11, null],
      ['vacant', 12, null],
    ]);
    expect(tally).toEqual({ prompts: 0, ownModel: 2, firstOwnModelLine: 4 });
    expect(comparedText(MODELS, tally)[1]).toBe(
      'Note: 2 records name their own model (the first on line 4): answered by it alone, once, and not compared, as --model and --ab leave such rows. Clear the model column (or field) to put them to every compared model.',
    );
  });

  it('writes an invalid record once, at its first number, its line kept; the others are vacant', () => {
    const error: ReadItem = { kind: 'error', value: { row: 2, line: 3, id: 'q2', code: 'missing_prompt', message: 'no prompt' } };
    const items = fanOutItem(error, ['flash', 'pro'], noneCompared());
    expect(items).toEqual([
      { kind: 'error', value: { row: 3, line: 3, id: 'q2', code: 'missing_prompt', message: 'no prompt' } },
      { kind: 'vacant', value: { row: 4 } },
    ]);
  });

  it('refuses an OpenAI Batch request line, whose output answers each custom_id once', () => {
    expect(() => fanOutItem(row(1, { custom_id: 'req-1' }), MODELS, noneCompared())).toThrow('--compare cannot run OpenAI Batch request lines (line 2 has custom_id "req-1")');
    const error: ReadItem = { kind: 'error', value: { row: 1, line: 1, custom_id: 'req-1', code: 'bad_field', message: 'x' } };
    expect(() => fanOutItem(error, MODELS, noneCompared())).toThrow('batch_output.jsonl answers each custom_id once');
  });

  it('says how many prompts went to every model', () => {
    const tally = noneCompared();
    for (let r = 1; r <= 5; r++) fanOutItem(row(r), ['flash', 'pro'], tally);
    expect(comparedText(['flash', 'pro'], tally)).toEqual(['Comparison: 5 prompts, each put to all 2 models (flash, pro): 10 rows, one per prompt and model (numbered as if the file held each record once per model).']);
  });
});
