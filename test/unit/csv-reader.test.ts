import { createWriteStream, existsSync, realpathSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import { UsageError } from '../../src/errors.ts';
import { MAX_CSV_COLUMNS, readCsvRows } from '../../src/input/csv-reader.ts';
import { checkInputFile, readRows } from '../../src/input/read-rows.ts';
import type { ReadItem, ReadPosition } from '../../src/input/row.ts';
import { collect, fixture, rules, useTempFiles } from '../helpers/reader-fixtures.ts';
import { descriptorsOn } from '../helpers/open-files.ts';

const temp = useTempFiles('csv');
const csvFile = temp.file;

describe('readCsvRows on nasty.csv (BOM, CRLF, quotes, newlines, CJK, emoji)', () => {
  it('reads every record in order with row, start line, id, messages and metadata', async () => {
    const items = await collect(readCsvRows(fixture('nasty.csv'), rules));
    expect(items).toEqual([
      {
        kind: 'row',
        value: {
          row: 1,
          line: 2,
          id: 'r1',
          messages: [{ role: 'user', content: 'Hello, world' }],
          model: 'gpt-a',
          temperature: 0.5,
          max_tokens: 100,
          metadata: { category: 'greeting', note: 'plain' },
        },
      },
      {
        kind: 'row',
        value: {
          row: 2,
          line: 3,
          id: 'r2',
          messages: [
            { role: 'system', content: 'Be brief.' },
            { role: 'user', content: 'Line one\r\nLine two, still r2' },
          ],
          metadata: { category: 'multi', note: 'has "quotes"' },
        },
      },
      {
        kind: 'row',
        value: {
          row: 3,
          line: 5,
          id: 'r3',
          messages: [{ role: 'user', content: '你好，世界 🌍' }],
          metadata: { category: 'cjk', note: 'emoji 🎉' },
        },
      },
      {
        kind: 'error',
        value: {
          row: 4,
          line: 6,
          id: 'r4',
          code: 'bad_field',
          message: 'temperature must be a number from 0 to 2, got "hot"',
        },
      },
      {
        kind: 'error',
        value: {
          row: 5,
          line: 7,
          id: 'r5',
          code: 'unknown_model',
          message: 'unknown model "gpt-9"; known models: gpt-a, gpt-b',
        },
      },
      { kind: 'error', value: { row: 6, line: 8, id: 'r6', code: 'missing_prompt', message: 'the prompt is empty' } },
      {
        kind: 'error',
        value: {
          row: 7,
          line: 10,
          id: 'r7',
          code: 'bad_field',
          message: 'max_tokens must be a positive integer, got "0"',
        },
      },
      {
        kind: 'error',
        value: { row: 8, line: 11, id: 'r8', code: 'bad_csv', message: 'line 11: expected 8 fields as in the header, got 2; give each column a field (an empty one is fine: a,,c), and quote a field that holds a line break' },
      },
      {
        kind: 'row',
        value: {
          row: 9,
          line: 12,
          id: '9',
          messages: [{ role: 'user', content: 'no id, so the row number' }],
          temperature: 2,
          max_tokens: 42,
          metadata: { category: 'ok', note: '' },
        },
      },
    ]);
  });
});

describe('readCsvRows line numbers and options', () => {
  it('gives the start line of multi-line records with LF, CRLF and mixed line endings', async () => {
    const lf = await csvFile('lf.csv', 'prompt\n"a\nb\nc"\n\n"d"\n"e\n\nf"\ng\n');
    const crlf = await csvFile('crlf.csv', 'prompt\r\n"a\r\nb\r\nc"\r\n\r\n"d"\r\n"e\r\n\r\nf"\r\ng\r\n');
    const mixed = await csvFile('mixed.csv', 'prompt\r\n"a\r\nb\nc"\n\r\n"d"\n"e\r\n\nf"\r\ng');
    for (const path of [lf, crlf, mixed]) {
      const items = await collect(readCsvRows(path, rules));
      expect(items.map((item) => [item.value.row, item.value.line])).toEqual([
        [1, 2],
        [2, 6],
        [3, 7],
        [4, 10],
      ]);
    }
  });

  it('uses rules.promptColumn and keeps whitespace-only lines out of the rows', async () => {
    const path = await csvFile('question.csv', 'question,answer\nWhy?,because\n   \nHow?,so\n');
    const items = await collect(readCsvRows(path, { ...rules, promptColumn: 'question' }));
    expect(items).toEqual([
      { kind: 'row', value: { row: 1, line: 2, id: '1', messages: [{ role: 'user', content: 'Why?' }], metadata: { answer: 'because' } } },
      { kind: 'row', value: { row: 2, line: 4, id: '2', messages: [{ role: 'user', content: 'How?' }], metadata: { answer: 'so' } } },
    ]);
  });

  it('skips lines of separators alone, as spreadsheets end their exports with, as it skips blank lines (QA: they were missing_prompt rows)', async () => {
    const comma = await csvFile('trailing-commas.csv', 'id,prompt,note\na,Why?,x\n,,\n , ,\nb,How?,y\n,,\n,,\n');
    const semicolon = await csvFile('trailing-semicolons.csv', 'id;prompt;note\na;Why?;x\n;;\r\n;;\r\n');
    const rows = async (path: string) => (await collect(readCsvRows(path, rules))).map((item) => [item.kind, item.value.row, item.value.line, item.value.id]);
    expect(await rows(comma)).toEqual([
      ['row', 1, 2, 'a'],
      ['row', 2, 5, 'b'],
    ]);
    expect(await rows(semicolon)).toEqual([['row', 1, 2, 'a']]);
    await expect(collect(readCsvRows(await csvFile('only-commas.csv', 'id,prompt\n,\n,\n'), rules))).rejects.toThrow('input file has a header but no data rows');
  });

  it('keeps a stray quote inside an unquoted field as text instead of stopping the file', async () => {
    const path = await csvFile('quotes.csv', 'prompt,note\nsay "hi" now,x\nnext,y\n');
    const items = await collect(readCsvRows(path, rules));
    expect(items.map((item) => item.kind === 'row' && item.value.messages[0]?.content)).toEqual(['say "hi" now', 'next']);
  });

  it('says how to fix a record with more fields than the header (quote the separator) in singular or plural', async () => {
    const comma = await csvFile('one-column.csv', 'prompt\nhi\nSay hello, then stop\n');
    const semicolon = await csvFile('semi-count.csv', 'id;prompt\na;Say hi; then stop\n');
    const messages = async (path: string) => (await collect(readCsvRows(path, rules))).map((item) => (item.kind === 'error' ? item.value.message : 'row'));
    expect(await messages(comma)).toEqual(['row', 'line 3: expected 1 field as in the header, got 2; quote a field that contains a comma, e.g. "a, b"']);
    expect(await messages(semicolon)).toEqual(['line 2: expected 2 fields as in the header, got 3; quote a field that contains a semicolon, e.g. "a; b"']);
  });

  it('takes separators at the end of a line (empty columns a spreadsheet exported) as nothing: no row refused, no empty metadata', async () => {
    const path = await csvFile('trailing.csv', 'id,prompt,\na,hello,\nb,world,,,\nc,more,kept\n');
    expect((await collect(readCsvRows(path, rules))).map((item) => (item.kind === 'row' ? [item.value.id, item.value.metadata] : item.value.message))).toEqual([
      ['a', {}],
      ['b', {}],
      ['c', { column_3: 'kept' }], // an unnamed column's value is still carried
    ]);
    // An extra field that holds text is still a record out of line with its header.
    const extra = await csvFile('extra.csv', 'id,prompt\na,hello,world\n');
    expect((await collect(readCsvRows(extra, rules)))[0]?.value).toMatchObject({ code: 'bad_csv' });
  });

  it('names an unnamed column column_<n>.2 when the header names another column column_<n>, instead of refusing it as a name given twice (QA)', async () => {
    const path = await csvFile('unnamed-taken.csv', 'prompt,,column_2\nhello,a,b\n');
    expect((await collect(readCsvRows(path, rules))).map((item) => (item.kind === 'row' ? item.value.metadata : item.value.message))).toEqual([{ 'column_2.2': 'a', column_2: 'b' }]);
  });

  it('refuses a row holding a NUL byte as bad_encoding, and reads the others', async () => {
    const path = await csvFile('nul.csv', 'id,prompt\na,hel\0lo\nb,world\n');
    expect((await collect(readCsvRows(path, rules))).map((item) => (item.kind === 'row' ? item.value.id : `${item.value.code}: ${item.value.message}`))).toEqual([
      'bad_encoding: line 2 holds a NUL byte (0x00), which no text has: remove it, or check that the file is the CSV meant',
      'b',
    ]);
  });

  it('lists only the first ten known models', async () => {
    const many = new Set(Array.from({ length: 13 }, (_, i) => `m${i}`));
    const path = await csvFile('model.csv', 'prompt,model\nhi,nope\n');
    const [item] = await collect(readCsvRows(path, { ...rules, knownModels: many }));
    expect(item?.value).toMatchObject({
      code: 'unknown_model',
      message: 'unknown model "nope"; known models: m0, m1, m2, m3, m4, m5, m6, m7, m8, m9 and 3 more',
    });
  });

  it('stops with the start line when a quote is never closed, after yielding the rows before it', async () => {
    const path = await csvFile('unclosed.csv', 'id,prompt\n1,ok\n\n2,"never closed\n3,more\n');
    const seen: ReadItem[] = [];
    const read = async (): Promise<void> => {
      for await (const item of readCsvRows(path, rules)) seen.push(item);
    };
    await expect(read()).rejects.toThrow(new UsageError(`input file ${path}: the quoted field at line 4 is never closed (close it; a quote inside a quoted field is written twice, "")`));
    expect(seen).toHaveLength(1);
  });

  it('names the exact line of an unclosed quote far ahead of the rows taken so far', async () => {
    const rows = Array.from({ length: 3000 }, (_, i) => `${i + 1},"prompt ${i + 1}, quoted"`);
    const path = await csvFile('unclosed-late.csv', `id,prompt\n${rows.join('\n')}\n3001,"never closed\n3002,more\n`);
    await expect(collect(readCsvRows(path, rules))).rejects.toThrow(new UsageError(`input file ${path}: the quoted field at line 3002 is never closed (close it; a quote inside a quoted field is written twice, "")`));
    // Every row before it comes out first, also to a reader slower than the parser (the producer, queueing in
    // chunks): the parser fails at the file's end, holding the rows of its last chunk, and those went unrun.
    let seen = 0;
    await expect((async () => {
      for await (const item of readCsvRows(path, rules)) {
        if (item.kind === 'row') seen += 1;
        if (seen % 100 === 0) await new Promise((resolve) => setTimeout(resolve, 5));
      }
    })()).rejects.toThrow(UsageError);
    expect(seen).toBe(3000);
  });

  it('names a record over the 8 MiB limit as that, with its largest field, not as an unclosed quote (QA: "often an unclosed quote" for a pasted document)', async () => {
    const big = 'word '.repeat(1_800_000); // 9,000,000 characters
    for (const field of [`"${big}"`, big]) {
      const path = await csvFile('large-field.csv', `id,prompt,note\n1,ok,a\n2,${field},b\n3,after,c\n`);
      const seen: ReadItem[] = [];
      const read = async (): Promise<void> => {
        for await (const item of readCsvRows(path, rules)) seen.push(item);
      };
      await expect(read()).rejects.toThrow(
        new UsageError(
          `input file ${path}: the record at line 3 is larger than the 8,388,608 characters a record may hold; its "prompt" field alone holds 9,000,000 characters. ` +
            "Shorten it or take that row out of the file: no model's context window takes a prompt that large (that much text is some 2 million tokens)",
        ),
      );
      expect(seen).toHaveLength(1);
    }
  });

  it('names an unquoted field over the 8 MiB limit that holds a stray quote as that large, not as a quote never closed', async () => {
    const big = 'word '.repeat(1_800_000); // 9,000,000 characters
    // A quote inside an unquoted field is text to the reader (relax_quotes), but not to the strict reading again of the record.
    for (const field of [`${big.slice(0, 4_000_000)}say "hi" ${big.slice(4_000_000)}`, `${big}a 27" screen`]) {
      const path = await csvFile('large-stray-quote.csv', `id,prompt,note\n1,ok,a\n2,${field},b\n3,after,c\n`);
      await expect(collect(readCsvRows(path, rules))).rejects.toThrow(
        new UsageError(
          `input file ${path}: the record at line 3 is larger than the 8,388,608 characters a record may hold; its "prompt" field alone holds ${field.length.toLocaleString('en-US')} characters. ` +
            "Shorten it or take that row out of the file: no model's context window takes a prompt that large (that much text is some 2 million tokens)",
        ),
      );
    }
  });

  it('does not call a quoted field that is closed, but larger than the 32 MiB read again, never closed (review)', async () => {
    const path = await csvFile('huge-closed.csv', `id,prompt\n1,ok\n2,"${'word '.repeat(7_000_000)}"\n3,after\n`);
    const read = collect(readCsvRows(path, rules));
    await expect(read).rejects.toThrow(/^input file .*: the record at line 3 is larger than the 8,388,608 characters a record may hold, and its quoted field does not close within the 32 MiB after its start: /);
    await expect(read).rejects.not.toThrow(/is never closed/);
  });

  it('says an unclosed quote that runs on past the 8 MiB limit is one', async () => {
    const lines = Array.from({ length: 300_000 }, (_, i) => `${i + 3},prompt number ${i + 3} of the file`);
    const path = await csvFile('unclosed-large.csv', `id,prompt\n1,ok\n2,"never closed\n${lines.join('\n')}\n`);
    await expect(collect(readCsvRows(path, rules))).rejects.toThrow(
      new UsageError(`input file ${path}: the quoted field at line 3 is never closed, so it takes the lines after it into its text, past the 8,388,608 characters a record may hold (close it; a quote inside a quoted field is written twice, "")`),
    );
  });

  it('stops at an unclosed quote that a later stray quote would end, instead of merging the rows between into one prompt', async () => {
    // Unchecked, row 1's prompt would run on over row 2 (to the quote before "Translate") and row 2 would vanish.
    const swallowing = await csvFile('swallowing.csv', 'id,prompt,category\n1,"Summarize: great phone,reviews\n2,"Translate: good morning",translation\n3,What is 2+2?,math\n');
    const seen: ReadItem[] = [];
    const read = async (): Promise<void> => {
      for await (const item of readCsvRows(swallowing, rules)) seen.push(item);
    };
    await expect(read()).rejects.toThrow(
      new UsageError(`input file ${swallowing}: the quoted field at line 2 is never closed, so it takes the lines after it, up to line 3, into its text (close it; a quote inside a quoted field is written twice, "")`),
    );
    expect(seen).toHaveLength(0);
    const lastColumn = await csvFile('swallowing-last.csv', 'id,prompt\n0,fine\n1,"abc\n2,"def"\n3,ghi\n');
    await expect(collect(readCsvRows(lastColumn, rules))).rejects.toThrow(/the quoted field at line 3 is never closed, so it takes the lines after it, up to line 4/);
  });

  it('keeps well-formed quoted fields that start with a quote and span lines, and stray quotes in unquoted fields', async () => {
    const path = await csvFile('quotes.csv', 'id,prompt\n1,"""Quoted"" start\nsecond line"\n2,he said "hi" there\n3,"x ""y"" z"\n');
    const prompts = (await collect(readCsvRows(path, rules))).map((item) => (item.kind === 'row' ? [item.value.line, item.value.messages[0]?.content] : item.value));
    expect(prompts).toEqual([
      [2, '"Quoted" start\nsecond line'],
      [4, 'he said "hi" there'],
      [5, 'x "y" z'],
    ]);
  });

  it('closes the file when the consumer stops early', async () => {
    if (!existsSync('/proc/self/fd')) return;
    // Far larger than one read, so the file is still open when the consumer stops.
    const path = realpathSync(await csvFile('long.csv', `id,prompt\n${'r,"a prompt, long enough to take room"\n'.repeat(50_000)}`));
    for await (const item of readCsvRows(path, rules)) {
      expect(item.value.row).toBe(1);
      expect(descriptorsOn(path)).toHaveLength(1);
      break;
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(descriptorsOn(path)).toEqual([]);
  });
});

describe('a posted CSV with bytes that are not UTF-8', () => {
  it('has bad_encoding rows, and a refused header, whose advice names the Content-Type charset (QA: they said to save the file as UTF-8 and run it again)', async () => {
    const latin1 = (text: string) => Buffer.from(text, 'latin1');
    const row = await csvFile('w1252.csv', latin1('id,prompt\na,café\n'));
    expect(await collect(readCsvRows(row, { ...rules, overHttp: true }))).toMatchObject([
      { kind: 'error', value: { id: 'a', code: 'bad_encoding', message: "line 2 is not UTF-8 text (some bytes cannot be decoded); name the file's charset in the Content-Type (text/csv; charset=windows-1252, as Excel saves \"CSV\" on Windows) and post it again, or send it as UTF-8" } },
    ]);
    const header = await csvFile('w1252-header.csv', latin1('id,café\na,b\n'));
    await expect(collect(readCsvRows(header, { ...rules, overHttp: true }))).rejects.toThrow(
      new UsageError(`input file ${header}: its header is not UTF-8 text (some bytes cannot be decoded); name the file's charset in the Content-Type (text/csv; charset=windows-1252, as Excel saves "CSV" on Windows) and post it again, or send it as UTF-8`),
    );
  });
});

describe('a column named as an Object.prototype property', () => {
  it('is metadata like any other, and stays so as JSON (QA: __proto__ silently disappeared)', async () => {
    const path = await csvFile('proto.csv', 'id,prompt,__proto__,toString,constructor\np1,hello,protoval,tsval,cval\n');
    const [item] = await collect(readCsvRows(path, rules));
    const metadata = item?.kind === 'row' ? item.value.metadata : {};
    expect(Object.keys(metadata)).toEqual(['__proto__', 'toString', 'constructor']);
    expect(JSON.parse(JSON.stringify(metadata))).toEqual({ ['__proto__']: 'protoval', toString: 'tsval', constructor: 'cval' });
    // Kept as a key: the object's prototype is not swapped for the text.
    expect(Object.getPrototypeOf(metadata)).toBe(Object.prototype);
  });
});

describe('whole-file problems throw a UsageError before any item', () => {
  it('missing file', async () => {
    const path = join(temp.dir(), 'missing.csv');
    await expect(collect(readRows(path, rules))).rejects.toThrow(new UsageError(`input file not found: ${path}`));
    await expect(checkInputFile(path)).rejects.toThrow(UsageError);
  });

  it('empty file, BOM-only file, header without data rows', async () => {
    const empty = await csvFile('empty.csv', '');
    await expect(collect(readRows(empty, rules))).rejects.toThrow(new UsageError(`input file ${empty} is empty: nothing to run`));
    await expect(checkInputFile(empty)).rejects.toThrow(new UsageError(`input file ${empty} is empty: nothing to run`));
    const bom = await csvFile('bom.csv', '\uFEFF\r\n\r\n');
    await expect(collect(readRows(bom, rules))).rejects.toThrow(new UsageError(`input file ${bom} is empty (no header row): nothing to run`));
    const header = await csvFile('header.csv', 'id,prompt\r\n');
    await expect(collect(readRows(header, rules))).rejects.toThrow(
      new UsageError(`input file has a header but no data rows: ${header}`),
    );
  });

  it('a compressed file, a workbook or a PDF handed over as the input: named, with what to do', async () => {
    const { writeFile } = await import('node:fs/promises');
    const { gzipSync } = await import('node:zlib');
    const gz = join(temp.dir(), 'prompts.csv');
    await writeFile(gz, gzipSync('prompt\nhello\n'));
    await expect(checkInputFile(gz)).rejects.toThrow(new UsageError(`input file ${gz} is gzip-compressed, not text: decompress it first (gunzip)`));
    const xlsx = join(temp.dir(), 'sheet.csv');
    await writeFile(xlsx, Buffer.concat([Buffer.from('PK\x03\x04', 'latin1'), Buffer.alloc(40)]));
    await expect(collect(readRows(xlsx, rules))).rejects.toThrow(/is a zip archive \(an \.xlsx workbook\?\), not text: save the sheet as "CSV UTF-8"/);
    const pdf = join(temp.dir(), 'brief.jsonl');
    await writeFile(pdf, '%PDF-1.7\n...');
    await expect(collect(readRows(pdf, rules))).rejects.toThrow(/is a PDF, not text/);
  });

  it('lines ended by a carriage return alone (old Mac line endings): refused with how to convert, not read as one line', async () => {
    const mac = await csvFile('mac.csv', 'id,prompt\ra,hello\rb,world\r');
    await expect(collect(readRows(mac, rules))).rejects.toThrow(`input file ${mac} ends its lines with a carriage return alone (old Mac line endings, as Excel for Mac's "CSV (Macintosh)" writes), so it reads as one line: save it as "CSV UTF-8", or convert it: tr '\\r' '\\n' < ${mac} > fixed.csv`);
    const jsonl = await csvFile('mac.jsonl', '{"prompt": "a"}\r{"prompt": "b"}\r');
    await expect(collect(readRows(jsonl, rules))).rejects.toThrow(/carriage return alone \(old Mac line endings\), so it reads as one line: convert it/);
    // A carriage return in a quoted field of a file with ordinary line endings is text.
    const kept = await csvFile('cr-in-field.csv', 'prompt\n"one\rtwo"\n');
    expect(await collect(readRows(kept, rules))).toEqual([{ kind: 'row', value: expect.objectContaining({ messages: [{ role: 'user', content: 'one\rtwo' }] }) }]);
  });

  it('a directory', async () => {
    const path = join(temp.dir(), 'folder.csv');
    await mkdir(path);
    await expect(checkInputFile(path)).rejects.toThrow(new UsageError(`input path is a directory, not a file: ${path}`));
    await expect(collect(readRows(path, rules))).rejects.toThrow(UsageError);
    // Without a file extension the folder is still named for what it is.
    expect(() => readRows(temp.dir(), rules)).toThrow(new UsageError(`input path is a directory, not a file: ${temp.dir()}`));
  });

  it('a named pipe is refused at once (it would be opened twice and wait for a writer), and "-" (stdin) is named as such', { timeout: 5000 }, async () => {
    const { execFileSync } = await import('node:child_process');
    const pipe = join(temp.dir(), 'pipe.csv');
    execFileSync('mkfifo', [pipe]);
    const refusal = new UsageError(`input ${pipe} is a pipe, not a regular file: the input is read more than once (and again on --resume), so save it to a file first and give that file`);
    await expect(checkInputFile(pipe)).rejects.toThrow(refusal);
    await expect(collect(readRows(pipe, rules))).rejects.toThrow(refusal);
    const stdin = new UsageError('reading the input from stdin ("-") is not supported: save it to a file first (e.g. ... > prompts.csv) and give that file\'s path');
    await expect(checkInputFile(join(temp.dir(), '-'))).rejects.toThrow(stdin);
    expect(() => readRows(join(temp.dir(), '-'), rules)).toThrow(stdin);
  });

  it("reads UTF-16 files with a byte order mark, little- and big-endian (Excel's Unicode Text .txt among them), and refuses UTF-16 without one", async () => {
    const text = 'id\tprompt\r\nr1\t"Café, 你好 🌍"\r\nr2\tplain\r\n';
    const le = Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(text, 'utf16le')]);
    const be = Buffer.concat([Buffer.from([0xfe, 0xff]), Buffer.from(text, 'utf16le').swap16()]);
    for (const [name, bytes] of [['le.tsv', le], ['be.csv', be], ['unicode-text.txt', le]] as const) {
      const position = { bytesRead: 0, fileBytes: 0 };
      const items = await collect(readRows(await csvFile(name, bytes), rules, position));
      expect(items.map((item) => item.kind === 'row' && `${item.value.id} ${item.value.line}: ${item.value.messages[0]?.content}`)).toEqual(['r1 2: Café, 你好 🌍', 'r2 3: plain']);
      expect(position).toMatchObject({ csvDelimiter: '\t', csvBom: true });
    }
    const bare = await csvFile('no-bom.csv', Buffer.from(text, 'utf16le'));
    const refusal = new UsageError(`input file ${bare} looks like UTF-16 text without a byte order mark (every other byte is 0): save it as UTF-8 (in Excel: "CSV UTF-8") and give that file`);
    await expect(checkInputFile(bare)).rejects.toThrow(refusal);
    await expect(collect(readRows(bare, rules))).rejects.toThrow(refusal);
    // UTF-8 text with a few characters beyond ASCII is not mistaken for it.
    await expect(collect(readRows(await csvFile('utf8.csv', 'prompt\n你好，世界\nÉté\n'), rules))).resolves.toHaveLength(2);
  });

  it('refuses rows that are not UTF-8 (a Latin-1 export) with their line, and reads the rest', async () => {
    const latin1 = Buffer.concat([Buffer.from('prompt,id\n"caf'), Buffer.from([0xe9]), Buffer.from(' au lait",a\nplain,b\nx,caf'), Buffer.from([0xe9]), Buffer.from('\ncaf'), Buffer.from([0xe9]), Buffer.from(',\n')]);
    const items = await collect(readCsvRows(await csvFile('latin1.csv', latin1), rules));
    // Its id kept when it is readable (errors.jsonl lines are matched to rows by it), its row number when it has none; one that holds the bad byte is left out.
    expect(items).toEqual([
      { kind: 'error', value: { row: 1, line: 2, id: 'a', code: 'bad_encoding', message: expect.stringMatching(/^line 2 is not UTF-8 text .*save the file as UTF-8/) } },
      { kind: 'row', value: expect.objectContaining({ id: 'b' }) },
      { kind: 'error', value: { row: 3, line: 4, code: 'bad_encoding', message: expect.stringMatching(/^line 4 is not UTF-8 text/) } },
      { kind: 'error', value: { row: 4, line: 5, id: '4', code: 'bad_encoding', message: expect.stringMatching(/^line 5 is not UTF-8 text/) } },
    ]);
  });

  it('names the line a bad byte is on, also inside a record that spans lines', async () => {
    const bytes = Buffer.concat([Buffer.from('id,prompt,note\r\na,"line one\r\nline two\ncaf'), Buffer.from([0xe9]), Buffer.from('",x\nb,plain,"multi\nline"\n')]);
    const [bad, good] = await collect(readCsvRows(await csvFile('latin1-multiline.csv', bytes), rules));
    expect(bad?.value).toMatchObject({ row: 1, line: 2, code: 'bad_encoding', message: expect.stringMatching(/^line 4 is not UTF-8 text/) });
    expect(good).toMatchObject({ kind: 'row', value: { id: 'b', line: 5 } });
  });

  it('reads a row holding U+FFFD written as such (EF BF BD), as results.csv fed back in does (QA: refused as bad_encoding)', async () => {
    const text = 'id,prompt,note\na,"the answer was \uFFFD garbled",\uFFFD\n\uFFFDb,plain,x\n';
    const items = await collect(readCsvRows(await csvFile('fffd.csv', text), rules));
    expect(items).toEqual([
      { kind: 'row', value: expect.objectContaining({ id: 'a', line: 2, messages: [{ role: 'user', content: 'the answer was \uFFFD garbled' }], metadata: { note: '\uFFFD' } }) },
      { kind: 'row', value: expect.objectContaining({ id: '\uFFFDb', line: 3 }) },
    ]);
    // A header may hold it too.
    await expect(collect(readCsvRows(await csvFile('fffd-header.csv', 'prompt,note\uFFFD\nhi,x\n'), rules))).resolves.toMatchObject([{ kind: 'row', value: { metadata: { 'note\uFFFD': 'x' } } }]);
  });

  it("reads a UTF-16 file's U+FFFD written as such, and refuses only what is no UTF-16 text: half of a surrogate pair, a last byte without its pair (QA: every U+FFFD was refused)", async () => {
    const utf16 = (text: string) => Buffer.from(text, 'utf16le');
    const le = Buffer.concat([Buffer.from([0xff, 0xfe]), utf16('id,prompt\na,fine \uFFFD kept\nb,half '), Buffer.from([0x00, 0xd8]), utf16(' here\nc,"also \uFFFD\nkept, \uD83C\uDF0D"\nd,cut')]);
    const odd = Buffer.concat([le, Buffer.from([0x41])]);
    const be = Buffer.from(le).swap16();
    for (const [name, bytes] of [['le.csv', le], ['be.csv', be]] as const) {
      const items = await collect(readCsvRows(await csvFile(name, bytes), rules));
      expect(items).toEqual([
        { kind: 'row', value: expect.objectContaining({ id: 'a', messages: [{ role: 'user', content: 'fine \uFFFD kept' }] }) },
        { kind: 'error', value: { row: 2, line: 3, id: 'b', code: 'bad_encoding', message: 'line 3 is not UTF-16 text (half of a surrogate pair, or a last byte without its pair, cannot be decoded); fix that line (or export the file again) and run it again' } },
        { kind: 'row', value: expect.objectContaining({ id: 'c', messages: [{ role: 'user', content: 'also \uFFFD\nkept, \uD83C\uDF0D' }] }) },
        { kind: 'row', value: expect.objectContaining({ id: 'd', messages: [{ role: 'user', content: 'cut' }] }) },
      ]);
    }
    const items = await collect(readCsvRows(await csvFile('odd.csv', odd), rules));
    expect(items.at(-1)).toEqual({ kind: 'error', value: { row: 4, line: 6, id: 'd', code: 'bad_encoding', message: expect.stringMatching(/^line 6 is not UTF-16 text/) } });
  });

  it("reads a UTF-16 file's characters split between the chunks it is read in: a surrogate pair, a code unit's two bytes", async () => {
    // A pair of surrogates (an emoji) at every offset around 64 KiB, the size of a file stream's chunks.
    const rows = Array.from({ length: 4_000 }, (_, i) => `r${i},${'x'.repeat(i % 7)}\uD83D\uDE00 ${i}`);
    const bytes = Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(`id,prompt\n${rows.join('\n')}\n`, 'utf16le')]);
    const items = await collect(readCsvRows(await csvFile('chunks.csv', bytes), rules));
    expect(items.filter((item) => item.kind !== 'row')).toEqual([]);
    expect(items.map((item) => item.kind === 'row' && item.value.messages[0]?.content)).toEqual(rows.map((row) => row.slice(row.indexOf(',') + 1)));
  });

  it('tells bad bytes from U+FFFD written as such in one record, and names the bad byte\'s line', async () => {
    // A lone 0xFF, a cut multi-byte sequence, and a Latin-1 é after a U+FFFD of the text's own on an earlier line of the record.
    const bytes = Buffer.concat([
      Buffer.from('id,prompt\nr1,lone '),
      Buffer.from([0xff]),
      Buffer.from(' byte\nr2,cut '),
      Buffer.from([0xe2, 0x82]),
      Buffer.from('\nr3,"kept \uFFFD\nthen caf'),
      Buffer.from([0xe9]),
      Buffer.from('"\nr4,ok\n'),
    ]);
    const items = await collect(readCsvRows(await csvFile('mixed.csv', bytes), rules));
    expect(items).toEqual([
      { kind: 'error', value: { row: 1, line: 2, id: 'r1', code: 'bad_encoding', message: 'line 2 is not UTF-8 text (some bytes cannot be decoded); save the file as UTF-8 (in Excel: "CSV UTF-8") and run it again' } },
      { kind: 'error', value: { row: 2, line: 3, id: 'r2', code: 'bad_encoding', message: expect.stringMatching(/^line 3 is not UTF-8 text/) } },
      { kind: 'error', value: { row: 3, line: 4, id: 'r3', code: 'bad_encoding', message: expect.stringMatching(/^line 5 is not UTF-8 text/) } },
      { kind: 'row', value: expect.objectContaining({ id: 'r4', line: 6 }) },
    ]);
  });

  it('decodes multi-byte characters that straddle read chunks (no false encoding errors)', async () => {
    // 3- and 4-byte characters in rows that are not a multiple of the 16 KiB chunk size.
    const prompts = Array.from({ length: 3000 }, (_, i) => `行${i} 🚀 «ünïcödé» ${'語'.repeat(i % 7)}`);
    const items = await collect(readCsvRows(await csvFile('wide.csv', `prompt\n${prompts.join('\n')}\n`), rules));
    expect(items.filter((item) => item.kind === 'error')).toEqual([]);
    expect(items.map((item) => item.kind === 'row' && item.value.messages[0]?.content)).toEqual(prompts);
  });

  it('a header without the prompt column lists the columns and mentions --prompt-column', async () => {
    const path = await csvFile('noprompt.csv', 'id,Prompt,notes\n1,hi,x\n');
    await expect(collect(readRows(path, rules))).rejects.toThrow(
      new UsageError(
        `input file ${path} has no "prompt" column (did you mean "Prompt"?); its columns (separated by commas) are: id, Prompt, notes. ` +
          'Choose the prompt column with --prompt-column <name>.',
      ),
    );
  });

  it('refuses a header that is not UTF-8 before any row, rather than carry mangled column names through', async () => {
    const path = await csvFile('latin1-header.csv', Buffer.concat([Buffer.from('id,prompt,cat'), Buffer.from([0xe9]), Buffer.from('gorie\n1,hello,x\n')]));
    await expect(collect(readRows(path, rules))).rejects.toThrow(
      new UsageError(`input file ${path}: its header is not UTF-8 text (some bytes cannot be decoded); save the file as UTF-8 (in Excel: "CSV UTF-8") and run it again`),
    );
  });

  it('lists at most 30 columns, each cut to 40 characters, when none is the prompt', async () => {
    const names = Array.from({ length: 35 }, (_, i) => `c${i}${'x'.repeat(i === 0 ? 60 : 0)}`);
    const path = await csvFile('wide-header.csv', `${names.join(',')}\n${names.map(() => 'v').join(',')}\n`);
    await expect(collect(readRows(path, rules))).rejects.toThrow(`are: c0${'x'.repeat(38)}…, c1, c2,`);
    await expect(collect(readRows(path, rules))).rejects.toThrow(', c29 and 5 more. Choose the prompt column');
  });

  it('reads files separated by semicolons (Excel where the decimal mark is a comma) or tabs, as their header shows', async () => {
    const semicolons = await csvFile('semi.csv', '\uFEFFid;prompt;note\r\n1;"Hello, world; twice";a,b\r\n2;plain;\r\n');
    expect(await collect(readRows(semicolons, rules))).toEqual([
      { kind: 'row', value: expect.objectContaining({ id: '1', row: 1, line: 2, messages: [{ role: 'user', content: 'Hello, world; twice' }], metadata: { note: 'a,b' } }) },
      { kind: 'row', value: expect.objectContaining({ id: '2', row: 2, line: 3, metadata: { note: '' } }) },
    ]);
    const tabs = await csvFile('tabs.tsv', 'prompt\tlang\nBonjour, le monde\tfr\n');
    expect(await collect(readRows(tabs, rules))).toEqual([
      { kind: 'row', value: expect.objectContaining({ messages: [{ role: 'user', content: 'Bonjour, le monde' }], metadata: { lang: 'fr' } }) },
    ]);
    // A comma file whose prompts hold semicolons stays a comma file; so does a one-column file.
    const commas = await csvFile('commas.csv', 'prompt,"a;b"\nx;y;z,1\n');
    expect(await collect(readRows(commas, rules))).toEqual([{ kind: 'row', value: expect.objectContaining({ messages: [{ role: 'user', content: 'x;y;z' }], metadata: { 'a;b': '1' } }) }]);
    const single = await csvFile('single.csv', 'prompt\nuse a; freely\n');
    expect(await collect(readRows(single, rules))).toEqual([{ kind: 'row', value: expect.objectContaining({ messages: [{ role: 'user', content: 'use a; freely' }] }) }]);
    // The separator is named when the prompt column is still not found.
    const wrong = await csvFile('wrong.csv', 'id;text\n1;hi\n');
    await expect(collect(readRows(wrong, rules))).rejects.toThrow(`its columns (separated by semicolons) are: id, text.`);
  });

  it('takes a decimal comma in temperature in a ; file (Excel where the comma is the decimal mark), not in a comma or tab file', async () => {
    const semicolons = await csvFile('decimal.csv', 'prompt;temperature;max_tokens\nwarm;0,7;100\ndot;1.5;\ncold;,25;\nhot;2,5;\ntwo;1,2,3;\n');
    expect((await collect(readRows(semicolons, rules))).map((item) => (item.kind === 'row' ? item.value.temperature : item.value.message))).toEqual([
      0.7,
      1.5,
      0.25,
      'temperature must be a number from 0 to 2, got "2,5"',
      'temperature must be a number from 0 to 2, got "1,2,3"',
    ]);
    const tabs = await csvFile('decimal.tsv', 'prompt\ttemperature\nwarm\t0,7\n');
    expect((await collect(readRows(tabs, rules)))[0]?.value).toMatchObject({ code: 'bad_field', message: 'temperature must be a number from 0 to 2, got "0,7"' });
  });

  it('reads numbers written in decimals only: hex, binary, exponents and Infinity in a cell are refused, not converted', async () => {
    const path = await csvFile('numbers.csv', 'prompt,temperature,max_tokens\na,+.5,+20\nb,,0x10\nc,0b1,\nd,,1e3\ne,Infinity,\nf, 1.0 ,7.\n');
    expect((await collect(readRows(path, rules))).map((item) => (item.kind === 'row' ? [item.value.temperature, item.value.max_tokens] : item.value.message))).toEqual([
      [0.5, 20],
      'max_tokens must be a positive integer, got "0x10"',
      'temperature must be a number from 0 to 2, got "0b1"',
      'max_tokens must be a positive integer, got "1e3"',
      'temperature must be a number from 0 to 2, got "Infinity"',
      [1, 7],
    ]);
  });

  it('refuses a max_tokens past 2^53-1 as the cell wrote it, saying it is too large to be read exactly (QA: "must be a positive integer" of a positive integer)', async () => {
    const path = await csvFile('huge.csv', 'prompt,max_tokens\na,12345678901234567890\nb,9007199254740991\n');
    expect((await collect(readRows(path, rules))).map((item) => (item.kind === 'row' ? item.value.max_tokens : item.value.message))).toEqual([
      'max_tokens must be a positive integer up to 9007199254740991 (2^53-1), got 12345678901234567890, which is too large to be read exactly (it reads as 12345678901234567000)',
      9007199254740991,
    ]);
  });

  it('honours an Excel sep= first line: its separator is used, the line is skipped but counted', async () => {
    const semicolons = await csvFile('sep.csv', '\uFEFFsep=;\r\nid;prompt;note\r\n1;Hello, world;a,b\r\n');
    const position = { bytesRead: 0, fileBytes: 0 };
    expect(await collect(readRows(semicolons, rules, position))).toEqual([
      { kind: 'row', value: { id: '1', row: 1, line: 3, messages: [{ role: 'user', content: 'Hello, world' }], metadata: { note: 'a,b' } } },
    ]);
    expect(position).toMatchObject({ csvDelimiter: ';', csvBom: true });
    // A comma named by sep= wins over the header's semicolons.
    const commas = await csvFile('sep-comma.csv', 'SEP=,\nprompt,x;y\nhi,1\n');
    expect(await collect(readRows(commas, rules))).toEqual([{ kind: 'row', value: expect.objectContaining({ line: 3, metadata: { 'x;y': '1' } }) }]);
    const pipe = await csvFile('sep-pipe.csv', 'sep=|\nprompt|x\nhi|1\n');
    await expect(collect(readRows(pipe, rules))).rejects.toThrow(
      new UsageError(`input file ${pipe}: its first line, sep=|, names a separator that is not read; separate the fields with commas, semicolons or tabs (e.g. sep=;)`),
    );
    // Refused before it was streamed: closed all the same, not left to the garbage collector.
    if (existsSync('/proc/self/fd')) expect(descriptorsOn(realpathSync(pipe))).toEqual([]);
  });

  it('finds the separator on the header line, after blank lines before it (QA: a ; file with a leading blank line was read as commas)', async () => {
    const semicolons = await csvFile('blank-first.csv', '\r\n  \r\n;;\nid;prompt\na;hello, world\n');
    const position = { bytesRead: 0, fileBytes: 0 };
    expect(await collect(readRows(semicolons, rules, position))).toEqual([
      { kind: 'row', value: { id: 'a', row: 1, line: 5, messages: [{ role: 'user', content: 'hello, world' }], metadata: {} } },
    ]);
    expect(position).toMatchObject({ csvDelimiter: ';' });
    const tabs = await csvFile('blank-first.tsv', '\nid\tprompt\nb\thi, there\n');
    expect(await collect(readRows(tabs, rules))).toEqual([{ kind: 'row', value: expect.objectContaining({ id: 'b', line: 3, messages: [{ role: 'user', content: 'hi, there' }] }) }]);
    // Excel's sep= line, too, is the first line with anything on it.
    const named = await csvFile('blank-sep.csv', '\nsep=;\nprompt;x\nhi;1,5\n');
    expect(await collect(readRows(named, rules))).toEqual([{ kind: 'row', value: expect.objectContaining({ line: 4, metadata: { x: '1,5' } }) }]);
  });

  it('records the columns that look meant as row fields but are metadata (another case, spacing or a typo)', async () => {
    const path = await csvFile('lookalikes.csv', 'ID,Prompt text,Model,Temprature,maxTokens,System,mode,idx,id2,model_name\na,hi,m,1,5,s,x,1,2,n\n');
    const position: ReadPosition = { bytesRead: 0, fileBytes: 0 };
    await collect(readRows(path, { ...rules, promptColumn: 'Prompt text' }, position));
    expect(position.csvLookalikeColumns).toEqual([
      { column: 'ID', field: 'id' },
      { column: 'Model', field: 'model' },
      { column: 'Temprature', field: 'temperature' },
      { column: 'maxTokens', field: 'max_tokens' },
      { column: 'System', field: 'system' },
    ]);
    // Beside the field's own column, another spelling of it is metadata on purpose.
    const both = await csvFile('both.csv', 'prompt,model,Model\nhi,gpt-a,x\n');
    const bothPosition: ReadPosition = { bytesRead: 0, fileBytes: 0 };
    await collect(readRows(both, rules, bothPosition));
    expect(bothPosition.csvLookalikeColumns).toEqual([]);
  });

  it('records the columns named as request fields that only JSONL lines send (QA: a response_format column was metadata, unsaid)', async () => {
    const path = await csvFile('request-fields.csv', 'id,prompt,response_format,Seed,top_p,user,format\na,hi,"{""type"":""json_object""}",7,0.9,ann,x\n');
    const position: ReadPosition = { bytesRead: 0, fileBytes: 0 };
    await collect(readRows(path, rules, position));
    // `user` is who asked far more often than OpenAI's end-user id; `format` is no request field.
    expect(position.csvRequestFieldColumns).toEqual(['response_format', 'Seed', 'top_p']);
  });

  it('a header naming a column twice', async () => {
    const path = await csvFile('dup.csv', 'prompt,a,a\nhi,1,2\n');
    await expect(collect(readRows(path, rules))).rejects.toThrow(/column "a" appears twice/);
  });

  // QA: a 14 MB upload of a million columns kept a server from answering anything (its health check too) for hours.
  // Looked up with indexOf per column, 20,000 columns took 5 s of the event loop on a busy machine (a million, hours).
  it('a header at the column limit is checked for a repeated name in linear time', { timeout: 10_000 }, async () => {
    const columns = Array.from({ length: MAX_CSV_COLUMNS - 2 }, (_, i) => `c${i}`);
    const path = await csvFile('wide.csv', `prompt,${columns.join(',')},c0\nhi\n`);
    await expect(collect(readRows(path, rules))).rejects.toThrow(/column "c0" appears twice/);
  });

  it('an unsupported extension names the supported ones', async () => {
    const path = await csvFile('input.xml', '<prompt>hi</prompt>\n');
    expect(() => readRows(path, rules)).toThrow(
      new UsageError(`cannot read ${path}: ".xml" is not a supported input type; use one of .csv, .tsv, .txt, .jsonl, .ndjson, .json`),
    );
    expect(() => readRows(join(temp.dir(), 'noext'), rules)).toThrow(/no extension is not a supported input type/);
  });

  it('checkInputFile accepts a readable non-empty file', async () => {
    await expect(checkInputFile(fixture('nasty.csv'))).resolves.toBeUndefined();
  });
});

describe('streaming', () => {
  it('reads a 200,000-row CSV through without loading it whole', { timeout: 120_000 }, async () => {
    const total = 200_000;
    const path = join(temp.dir(), 'big.csv');
    const out = createWriteStream(path);
    out.write('id,prompt,model,temperature,category\n');
    for (let start = 0; start < total; start += 1000) {
      let chunk = '';
      for (let i = start; i < start + 1000; i++) chunk += `id-${i},"Prompt ${i}, with a comma and 日本語 🚀",gpt-a,0.${i % 10},cat-${i % 7}\n`;
      if (!out.write(chunk)) await once(out, 'drain');
    }
    out.end();
    await once(out, 'finish');

    const began = performance.now();
    let rows = 0;
    let last: ReadItem | undefined;
    for await (const item of readRows(path, rules)) {
      if (item.kind === 'row') rows += 1;
      last = item;
    }
    const seconds = (performance.now() - began) / 1000;
    console.log(`read ${rows} CSV rows in ${seconds.toFixed(2)} s (${Math.round(rows / seconds)} rows/s)`);
    expect(rows).toBe(total);
    expect(last).toMatchObject({ kind: 'row', value: { row: total, line: total + 1, id: `id-${total - 1}` } });
    expect(seconds).toBeLessThan(100);
  });
});
