import { spawnSync } from 'node:child_process';
import { readFile, stat } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { saveJsonRows } from '../../src/api/upload.ts';
import { readJsonlRows } from '../../src/input/jsonl-reader.ts';
import { collect, rules, useTempFiles } from '../helpers/reader-fixtures.ts';

const temp = useTempFiles('json-rows');

/** Saves `body` as a JSON body would be, and gives the JSONL file it became. */
async function savedRows(body: Uint8Array | string, name: string): Promise<string> {
  const path = await temp.file(name, '');
  await saveJsonRows(Readable.from([Buffer.from(body)]), path, 1024 * 1024);
  return readFile(path, 'utf8');
}

describe('a JSON body saved as JSONL rows', () => {
  it("is read in the UTF-16 its byte order mark says, as a CSV or JSONL body is (QA: PowerShell's Out-File was refused as invalid_json)", async () => {
    const text = '[{"prompt":"héllo"}]';
    const little = Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(text, 'utf16le')]);
    const big = Buffer.from(`\uFEFF${text}`, 'utf16le').swap16();
    expect(await savedRows(little, 'le.jsonl')).toBe('{"prompt":"héllo"}\n');
    expect(await savedRows(big, 'be.jsonl')).toBe('{"prompt":"héllo"}\n');
  });

  it('keeps U+FFFD written as such, and refuses a body whose bytes are not UTF-8 (saved, they would have become U+FFFD and been sent as text)', async () => {
    expect(await savedRows('[{"prompt":"was \uFFFD"}]', 'fffd.jsonl')).toBe('{"prompt":"was \uFFFD"}\n');
    const latin1 = Buffer.from('[{"prompt":"caf\u00e9"}]', 'latin1');
    await expect(savedRows(latin1, 'latin1.jsonl')).rejects.toMatchObject({
      status: 400,
      code: 'invalid_charset',
      message: 'the body is not valid utf-8: name its charset in the Content-Type (application/json; charset=windows-1252, say) and post it again, or send it as UTF-8',
    });
  });

  it('keeps a number too large for a double recognisable, so its row is bad_field as the same JSONL line is (QA: 1e999 was saved as null and ran with the default)', async () => {
    const body = '[{"id":"inf","prompt":"x","max_tokens":1e999},{"id":"neg","prompt":"x","temperature":-1e999,"metadata":{"n":1e999}}]';
    const path = await temp.file('inf.jsonl', '');
    await saveJsonRows(Readable.from([Buffer.from(body)]), path, 1024 * 1024);
    expect(await readFile(path, 'utf8')).toBe('{"id":"inf","prompt":"x","max_tokens":1e999}\n{"id":"neg","prompt":"x","temperature":-1e999,"metadata":{"n":1e999}}\n');
    const items = await collect(readJsonlRows(path, rules));
    expect(items.map((item) => item.kind === 'error' && item.value.message)).toEqual(['max_tokens must be a positive integer, got Infinity', 'temperature must be a number from 0 to 2, got -Infinity']);
  });

  it("refuses a seed past 2^53-1, which the body's parse has rounded before it is saved, saying so rather than showing the rounded number as given", async () => {
    const path = await temp.file('big-seed.jsonl', '');
    await saveJsonRows(Readable.from([Buffer.from('[{"id":"s","prompt":"x","seed":12345678901234567890}]')]), path, 1024 * 1024);
    const [item] = await collect(readJsonlRows(path, rules));
    expect(item).toMatchObject({ kind: 'error', value: { code: 'bad_field', message: 'seed must be an integer from -9007199254740991 to 9007199254740991 (2^53-1), got an integer too large to be read exactly (it reads as 12345678901234567000, which may have lost digits already)' } });
  });

  // QA: 64 MB of `[{},{},...]`, 22 million rows, took the server to 3.8 GB and 2 minutes before its answer.
  it('refuses a body of more values than it may hold in memory, with 413 and the advice to send JSONL', async () => {
    const path = await temp.file('many.jsonl', '');
    const body = `[${'{},'.repeat(1_500_000)}{}]`;
    await expect(saveJsonRows(Readable.from([Buffer.from(body)]), path, 1024 * 1024 * 1024)).rejects.toMatchObject({ status: 413, code: 'upload_too_large', message: expect.stringMatching(/more than 2,000,000 values.*JSONL/) });
  });

  // QA: the JSONL was built whole, each row's line and then their join, before it was written: a 55 MB body took serve from 107 MB to 619 MB.
  it('is written out in pieces: 54 MB of rows is saved within a heap that holds the parsed rows but not two more copies of their text', async () => {
    const path = await temp.file('large.jsonl', '');
    const script = await temp.file(
      'save-large.ts',
      [
        `import { Readable } from 'node:stream';`,
        `import { saveJsonRows } from ${JSON.stringify(new URL('../../src/api/upload.ts', import.meta.url).href)};`,
        `const prompt = 'lorem ipsum dolor sit amet '.repeat(9);`,
        `const body = Buffer.from(JSON.stringify(Array.from({ length: 200_000 }, (_, i) => ({ id: 'r' + i, prompt }))));`,
        `await saveJsonRows(Readable.from([body]), ${JSON.stringify(path)}, 1024 * 1024 * 1024);`,
      ].join('\n'),
    );
    // Measured: written in pieces it is saved with an old space of 80 MB (not 64); built whole it needed 144 MB (not 128).
    const saved = spawnSync(process.execPath, ['--max-old-space-size=104', script], { encoding: 'utf8' });
    expect(saved.stderr).not.toContain('heap out of memory');
    expect(saved.status, saved.stderr).toBe(0);
    expect((await stat(path)).size).toBeGreaterThan(54_000_000);
    const lines = (await readFile(path, 'utf8')).split('\n');
    expect(lines).toHaveLength(200_001);
    expect(JSON.parse(lines[199_999]!)).toEqual({ id: 'r199999', prompt: 'lorem ipsum dolor sit amet '.repeat(9) });
  }, 60_000);

  it('counts no comma or bracket inside a string toward that limit, escaped quotes included', async () => {
    const prompt = '\\",[{'.repeat(700_000);
    const path = await temp.file('commas.jsonl', '');
    await saveJsonRows(Readable.from([Buffer.from(JSON.stringify([{ prompt }]))]), path, 1024 * 1024 * 1024);
    expect(await readFile(path, 'utf8')).toBe(`${JSON.stringify({ prompt })}\n`);
  });
});
