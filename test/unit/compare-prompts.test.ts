import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Redis } from 'ioredis';
import { parse } from 'csv-parse/sync';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { rowFingerprint } from '../../src/input/row-fingerprint.ts';
import type { InputRow } from '../../src/input/row.ts';
import { writeCompareCsv } from '../../src/output/compare-csv.ts';
import { promptText, readComparedPrompts } from '../../src/output/compare-prompts.ts';
import type { RowResult } from '../../src/output/records.ts';

const models = ['fast', 'slow'];

function result(row: number, id: string, model: string): RowResult {
  return {
    id,
    row,
    status: 'succeeded',
    model,
    output: `${model} says ${id}`,
    usage: { input_tokens: 1, output_tokens: 1 },
    cost_usd: 0.000001,
    latency_ms: 10,
    attempts: 1,
    metadata: {},
    task_type: null,
    route_reason: `compared model "${model}"`,
    models_tried: [model],
    final_model: model,
    fallback_reason: null,
    completed_at: '2026-12-05T10:00:00.000Z',
  };
}

/** A Redis holding the batch's fingerprints key as `bytes`: all the prompt source asks of it. */
function fingerprintRedis(bytes: Buffer): Redis {
  return {
    getrangeBuffer: async (_key: string, start: number, end: number) => bytes.subarray(start, end + 1),
  } as unknown as Redis;
}

/** The fingerprints the producer recorded for these records, each put to every model (row (r-1)*N+k). */
function fingerprintsOf(records: InputRow[]): Buffer {
  const bytes = Buffer.alloc((records.length * models.length + 1) * 4);
  records.forEach((record, r) => models.forEach((model, k) => bytes.writeUInt32BE(rowFingerprint({ ...record, model }, true), (r * models.length + k + 1) * 4)));
  return bytes;
}

const userRow = (row: number, id: string, content: string, system?: string): InputRow => ({
  row,
  line: row,
  id,
  messages: [...(system ? [{ role: 'system' as const, content: system }] : []), { role: 'user', content }],
  metadata: {},
});

describe('compare.csv prompt column', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'switchyard-compare-prompts-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("shows a message list's last user message", () => {
    expect(promptText([{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'First?' }, { role: 'assistant', content: 'One.' }, { role: 'user', content: 'And then?' }])).toBe('And then?');
    expect(promptText([{ role: 'system', content: 'Only a system message.' }])).toBe('Only a system message.');
  });

  it('puts each record\'s prompt after its id, formula-guarded, and leaves it empty for a record edited since it was answered', async () => {
    const input = join(dir, 'in.jsonl');
    const answered = [userRow(1, 'a', 'What is 2 + 2?', 'Answer in a word.'), userRow(2, 'b', '=HYPERLINK("http://x")'), userRow(3, 'c', 'Before the edit')];
    // Record 3 edited after it was answered; record 2 kept.
    const now = [answered[0]!, answered[1]!, userRow(3, 'c', 'After the edit')];
    await writeFile(input, now.map((row) => JSON.stringify({ id: row.id, messages: row.messages })).join('\n') + '\n');
    const results = join(dir, 'results.jsonl');
    await writeFile(results, answered.flatMap((row, r) => models.map((model, k) => JSON.stringify(result(r * 2 + k + 1, row.id, model)))).join('\n') + '\n');
    const prompts = readComparedPrompts({ path: input, rules: { promptColumn: 'prompt', knownModels: new Set(models) }, fingerprintIds: true, redis: fingerprintRedis(fingerprintsOf(answered)), fingerprintsKey: 'fp' });
    const out = join(dir, 'compare.csv');
    expect(await writeCompareCsv(results, out, models, false, [], { separator: ',', bom: false }, prompts)).toEqual({ lines: 3, longPrompts: null });
    const lines = parse(await readFile(out, 'utf8')) as string[][];
    expect(lines[0]!.slice(0, 3)).toEqual(['id', 'prompt', 'fast']);
    expect(lines.slice(1).map((line) => line.slice(0, 3))).toEqual([
      ['a', 'What is 2 + 2?', 'fast says a'],
      ['b', '\'=HYPERLINK("http://x")', 'fast says b'],
      ['c', '', 'fast says c'],
    ]);
  });

  it("counts the prompts longer than an Excel cell holds, which Excel cuts when it opens compare.csv (QA: said of long answers only)", async () => {
    const results = join(dir, 'results.jsonl');
    const ids = ['short', 'long', 'longer'];
    await writeFile(results, ids.flatMap((id, r) => models.map((model, k) => JSON.stringify(result(r * 2 + k + 1, id, model)))).join('\n') + '\n');
    const texts = ['a question', 'x'.repeat(32_768), 'y'.repeat(40_000)];
    const prompts = { promptOf: async (record: number) => texts[record - 1]!, close: async () => undefined };
    const out = join(dir, 'compare.csv');
    expect(await writeCompareCsv(results, out, models, false, [], { separator: ',', bom: false }, prompts)).toEqual({ lines: 3, longPrompts: { rows: 2, first_id: 'long', longest_chars: 40_000 } });
    // Written whole all the same: the file has them, Excel is what cuts them.
    expect((parse(await readFile(out, 'utf8')) as string[][]).map((line) => line[1]!.length)).toEqual([6, 10, 32_768, 40_000]);
    // 32,767 characters fit.
    const fits = { promptOf: async () => 'z'.repeat(32_767), close: async () => undefined };
    expect((await writeCompareCsv(results, out, models, false, [], { separator: ',', bom: false }, fits)).longPrompts).toBeNull();
  });

  it('leaves the prompts empty when the input file is gone, and writes compare.csv all the same', async () => {
    const results = join(dir, 'results.jsonl');
    await writeFile(results, models.map((model, k) => JSON.stringify(result(k + 1, 'a', model))).join('\n') + '\n');
    const prompts = readComparedPrompts({ path: join(dir, 'gone.csv'), rules: { promptColumn: 'prompt', knownModels: new Set(models) }, fingerprintIds: true, redis: fingerprintRedis(Buffer.alloc(0)), fingerprintsKey: 'fp' });
    const out = join(dir, 'compare.csv');
    expect(await writeCompareCsv(results, out, models, false, [], { separator: ',', bom: false }, prompts)).toEqual({ lines: 1, longPrompts: null });
    expect((parse(await readFile(out, 'utf8')) as string[][])[1]!.slice(0, 3)).toEqual(['a', '', 'fast says a']);
  });
});

describe("compare.csv cells of a compared model's row that went on to a fallback", () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'switchyard-compare-fallback-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("says a fallback answered in the model's place, not its answer; and shows a row that failed on one (QA: both cells left empty, unsaid)", async () => {
    const results = join(dir, 'results.jsonl');
    const lines = [
      result(1, 'a', 'fast'),
      // slow's row, answered by backup, its fallback: the result's model is the one that answered.
      { ...result(2, 'a', 'backup'), models_tried: ['slow', 'backup'], fallback_reason: 'slow: server_error after 3 attempts' },
      result(3, 'b', 'fast'),
      // slow's row that failed on its fallback too, the failure credited to the last model called.
      { ...result(4, 'b', 'backup'), status: 'failed' as const, output: null, final_model: null, models_tried: ['slow', 'backup'], error: { code: 'server_error', message: 'backup: 500' }, fallback_reason: 'slow: server_error after 3 attempts' },
    ];
    await writeFile(results, lines.map((line) => JSON.stringify(line)).join('\n') + '\n');
    const noPrompts = { promptOf: async () => null, close: async () => undefined };
    const out = join(dir, 'compare.csv');
    expect(await writeCompareCsv(results, out, models, true, [], { separator: ',', bom: false }, noPrompts)).toEqual({ lines: 2, longPrompts: null });
    const [header, a, b] = parse(await readFile(out, 'utf8')) as string[][];
    const slow = (line: string[]) => line.slice(header!.indexOf('slow'), header!.indexOf('slow error') + 1);
    expect(slow(a!)).toEqual(['', '', '', '', 'answered_by_fallback: backup answered in its place (slow: server_error after 3 attempts)']);
    expect(slow(b!)).toEqual(['', '', '0.000001', '10', 'server_error: backup: 500']);
  });

  it('says so too when the model was passed over without a call, so that the fallback is the first model called (review: rate limited past max_wait_ms, cells left empty)', async () => {
    const results = join(dir, 'results.jsonl');
    const passedOver = 'slow: rate limited (tokens) for 12 s, over limits.max_wait_ms';
    const lines = [result(1, 'a', 'fast'), { ...result(2, 'a', 'backup'), route_reason: 'compared model "slow"', models_tried: ['backup'], fallback_reason: passedOver }];
    await writeFile(results, lines.map((line) => JSON.stringify(line)).join('\n') + '\n');
    const out = join(dir, 'compare.csv');
    expect(await writeCompareCsv(results, out, models, false, [], { separator: ',', bom: false }, { promptOf: async () => null, close: async () => undefined })).toEqual({ lines: 1, longPrompts: null });
    const [header, a] = parse(await readFile(out, 'utf8')) as string[][];
    expect(a![header!.indexOf('slow error')]).toBe(`answered_by_fallback: backup answered in its place (${passedOver})`);
  });
});
