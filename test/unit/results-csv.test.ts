import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'csv-parse/sync';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { readCsvRows } from '../../src/input/csv-reader.ts';
import { formatCsvJournalEntry } from '../../src/output/ordered-results.ts';
import { RESULTS_CSV_COLUMNS, resultCsvRecord, writeResultsCsv } from '../../src/output/results-csv.ts';
import type { RowResult } from '../../src/output/records.ts';
import { collect } from '../helpers/reader-fixtures.ts';

function result(overrides: Partial<RowResult>): RowResult {
  return {
    id: '1',
    row: 1,
    status: 'succeeded',
    model: 'model-a',
    output: 'ok',
    usage: { input_tokens: 10, output_tokens: 5 },
    cost_usd: 0.000012,
    latency_ms: 120,
    attempts: 1,
    metadata: {},
    task_type: 'simple',
    route_reason: 'rules: simple',
    models_tried: ['model-a'],
    final_model: 'model-a',
    fallback_reason: null,
    completed_at: '2026-11-02T10:00:00.000Z',
    ...overrides,
  };
}

describe('writeResultsCsv', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'switchyard-csv-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('writes each row once, in row order, with guarded text, metadata columns (padded for keys seen later) and intact CJK', async () => {
    const results: RowResult[] = [
      result({ id: 'a', row: 1, output: '=HYPERLINK("http://evil","click")', metadata: { lang: 'en', score: -3 } }),
      result({ id: 'b', row: 2, output: '你好，世界。「引号」, "quoted"\nsecond line', metadata: { topic: '@home', lang: 'zh' } }),
      result({
        id: 'c',
        row: 3,
        status: 'failed',
        output: null,
        cost_usd: null,
        usage: { input_tokens: 0, output_tokens: 0 },
        attempts: 3,
        error: { code: 'timeout', message: '-no answer after 30 s', http_status: null },
        metadata: { model: 'shadowing', tags: ['x', 'y'], flag: true },
      }),
      result({
        id: 'd',
        row: 4,
        cost_usd: 1.2e-7,
        metadata: { delta: '-5' },
        finish_reason: 'length',
        models_tried: ['model-a', 'model-b'],
        model: 'model-b',
        final_model: 'model-b',
        fallback_reason: 'model-a: server_error after 4 attempts',
        ensemble: { name: 'council', synthesizer: 'model-b', members: [] },
        request_id: 'req_9',
      }),
    ];
    const journal = join(dir, 'csv-journal');
    const csvPath = join(dir, 'results.csv');
    // As the collector writes them: in arrival order, each with the metadata keys known by then
    // (row 4's "delta" was first seen after rows 1-3 were written), and row 2 run twice.
    const keys = ['lang', 'score', 'topic', 'model', 'tags', 'flag', 'delta'];
    const entry = (r: RowResult, known: number) => formatCsvJournalEntry(r.row, known, resultCsvRecord(r, keys.slice(0, known)));
    const [r1, r2, r3, r4] = results as [RowResult, RowResult, RowResult, RowResult];
    await writeFile(journal, entry(r4, 7) + entry({ ...r2, output: 'first try' }, 6) + entry(r3, 6) + entry(r1, 6) + entry(r2, 6));

    expect(writeResultsCsv(journal, csvPath, keys)).toBe(4);
    const text = await readFile(csvPath, 'utf8');
    const rows = parse(text, { columns: true }) as Array<Record<string, string>>;

    expect(Object.keys(rows[0]!)).toEqual([
      ...RESULTS_CSV_COLUMNS,
      'lang',
      'score',
      'topic',
      'metadata.model',
      'tags',
      'flag',
      'delta',
    ]);
    expect(rows).toHaveLength(4);
    const [a, b, c, d] = rows as [Record<string, string>, Record<string, string>, Record<string, string>, Record<string, string>];

    expect(a.output).toBe(`'=HYPERLINK("http://evil","click")`);
    expect(a.score).toBe('-3'); // a number, not prefixed
    expect(a.cost_usd).toBe('0.000012');
    expect(a.topic).toBe('');
    expect([a.task_type, a.route_reason, a.models_tried, a.fallback_reason, a.finish_reason, a.ensemble, a.request_id]).toEqual(['simple', 'rules: simple', 'model-a', '', '', '', '']);
    expect(a.completed_at).toBe('2026-11-02T10:00:00.000Z');

    expect(b.output).toBe('你好，世界。「引号」, "quoted"\nsecond line');
    expect(b.topic).toBe("'@home");
    expect(b.lang).toBe('zh');

    expect(c.status).toBe('failed');
    expect(c.output).toBe('');
    expect(c.cost_usd).toBe('');
    expect(c.error_code).toBe('timeout');
    expect(c.error_message).toBe("'-no answer after 30 s");
    expect(c.attempts).toBe('3');
    expect(c['metadata.model']).toBe('shadowing');
    expect(c.model).toBe('model-a');
    expect(c.tags).toBe('["x","y"]');
    expect(c.flag).toBe('true');

    expect(d.cost_usd).toBe('0.00000012'); // no exponent form
    expect(d.delta).toBe('-5'); // numeric text is not a formula
    expect([d.finish_reason, d.models_tried, d.fallback_reason, d.ensemble, d.request_id]).toEqual(['length', 'model-a, model-b', 'model-a: server_error after 4 attempts', 'council', 'req_9']);
  });

  it('names a metadata key with no name for its column, as the CSV reader names an empty header cell (QA: a JSONL line\'s "" key gave results.csv an empty header cell)', async () => {
    const journal = join(dir, 'csv-journal');
    const csvPath = join(dir, 'results.csv');
    // The 27th column is already a key's name: the unnamed key there is column_27.2, as the CSV reader's column_<n>.2.
    const keys = ['b', '', 'column_27', ' '];
    await writeFile(journal, formatCsvJournalEntry(1, keys.length, resultCsvRecord(result({ metadata: { b: 'y', '': 'x', column_27: 'z', ' ': 'w' } }), keys)));
    expect(writeResultsCsv(journal, csvPath, keys)).toBe(1);
    const [row] = parse(await readFile(csvPath, 'utf8'), { columns: true }) as Array<Record<string, string>>;
    expect(Object.keys(row!).slice(RESULTS_CSV_COLUMNS.length)).toEqual(['b', 'column_27.2', 'column_27', 'column_29']);
    expect([row!.b, row!['column_27.2'], row!.column_27, row!.column_29]).toEqual(['y', 'x', 'z', 'w']);
  });

  it("writes a NUL (a model's answer, a provider's error, metadata) as U+2400, so the CSV reader takes results.csv back in (QA: it refused the row)", async () => {
    const journal = join(dir, 'csv-journal');
    const csvPath = join(dir, 'results.csv');
    const keys = ['question', 'note'];
    const rows = [
      result({ id: 'a', row: 1, output: 'before\0after', metadata: { question: 'q1', note: 'x\0y' } }),
      result({ id: 'b', row: 2, status: 'failed', output: null, error: { code: 'bad_request', message: 'bad byte \0 here', http_status: 400 }, metadata: { question: 'q2', note: '\0=1+1' } }),
      // Other control characters are text the reader takes: kept as they are.
      result({ id: 'c', row: 3, output: 'ring\u0007bell\u001b[0m', metadata: { question: 'q3', note: 'tab\there' } }),
    ];
    await writeFile(journal, rows.map((row) => formatCsvJournalEntry(row.row, keys.length, resultCsvRecord(row, keys))).join(''));
    expect(writeResultsCsv(journal, csvPath, keys)).toBe(3);
    const text = await readFile(csvPath, 'utf8');
    expect(text).not.toContain('\0');
    const read = await collect(readCsvRows(csvPath, { promptColumn: 'question', knownModels: new Set(['model-a']) }));
    expect(read.map((item) => (item.kind === 'error' ? item.value.message : item.kind))).toEqual(['row', 'row', 'row']);
    const byId = Object.fromEntries((parse(text, { columns: true }) as Array<Record<string, string>>).map((row) => [row.id, row]));
    expect([byId.a!.output, byId.a!.note, byId.b!.error_message, byId.b!.note]).toEqual(['before\u2400after', 'x\u2400y', 'bad byte \u2400 here', '\u2400=1+1']);
    expect([byId.c!.output, byId.c!.note]).toEqual(['ring\u0007bell\u001b[0m', 'tab\there']);
  });

  it('writes only the header for an empty journal', async () => {
    const journal = join(dir, 'csv-journal');
    const csvPath = join(dir, 'results.csv');
    await writeFile(journal, '');
    expect(writeResultsCsv(journal, csvPath, [])).toBe(0);
    expect(await readFile(csvPath, 'utf8')).toBe(`${RESULTS_CSV_COLUMNS.join(',')}\n`);
  });
});
