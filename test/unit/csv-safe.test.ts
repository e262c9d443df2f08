import { describe, expect, it } from 'vitest';
import { stringify } from 'csv-stringify/sync';
import { csvRecord, csvSafe, looksLikeFormula } from '../../src/output/csv-safe.ts';

describe('csvSafe', () => {
  it.each([
    ['=1+2', "'=1+2"],
    ['+SUM(A1)', "'+SUM(A1)"],
    ['-2+3+cmd|" /C calc"!A0', `'-2+3+cmd|" /C calc"!A0`],
    ['@SUM(A1:A9)', "'@SUM(A1:A9)"],
    ['\t=1', "'\t=1"],
    ['\r=1', "'\r=1"],
    ['\uFF1D1+1', "'\uFF1D1+1"],
    ['=HYPERLINK("http://evil","x")', `'=HYPERLINK("http://evil","x")`],
  ])('prefixes %j', (input, expected) => {
    expect(csvSafe(input)).toBe(expected);
    expect(looksLikeFormula(input)).toBe(true);
  });

  it.each(['hello', '', 'a=b', ' =1', "'=1", '你好=世界', '-5', '+1.5', '-2e-3', '-.5', '1-2'])('leaves %j alone', (input) => {
    expect(csvSafe(input)).toBe(input);
  });

  it('still guards text that only starts like a number', () => {
    expect(csvSafe('-5+A1')).toBe("'-5+A1");
    expect(csvSafe('-')).toBe("'-");
  });
});

describe('csvRecord', () => {
  it('guards text, keeps numbers (negative ones too) as numbers, writes objects as JSON', () => {
    const csv = csvRecord(['=cmd', -3, 1.5, true, { a: 1 }, null]) + csvRecord(['-x', 0, -0.25, false, ['=x'], '@y']);
    expect(csv).toBe(`'=cmd,-3,1.5,true,"{""a"":1}",\n'-x,0,-0.25,false,"[""=x""]",'@y\n`);
  });

  it("writes a NUL as U+2400, which Switchyard's CSV reader takes back (QA), and keeps other control characters", () => {
    expect(csvRecord(['a\0b', '\0\0', '=\0', 'bell\u0007', { k: '\0' }])).toBe(`a\u2400b,\u2400\u2400,'=\u2400,bell\u0007,"{""k"":""\\u0000""}"\n`);
  });

  it('writes the same bytes as csv-stringify with the guard as its cast', () => {
    const oracleCast = { string: (value: string) => csvSafe(value), boolean: (value: boolean) => String(value), object: (value: object) => csvSafe(JSON.stringify(value)) };
    const rows = [
      ['plain', 'a,b', 'say "hi"', 'line 1\nline 2', 'cr\rlf', '', null, undefined, 0, -1e-7, 12345678901234, true],
      ['=1+2', '+SUM(A1)', '-5', '\t=1', '你好, 世界 🎉', ' lead', 'trail ', '"', ',', '\n', { k: ['v', 1] }, false],
    ];
    expect(rows.map((row) => csvRecord(row)).join('')).toBe(stringify(rows, { cast: oracleCast }));
    // With the input's own separator, the same as csv-stringify with that delimiter.
    for (const delimiter of [';', '\t'] as const) {
      expect(rows.map((row) => csvRecord(row, delimiter)).join('')).toBe(stringify(rows, { cast: oracleCast, delimiter }));
    }
    expect(csvRecord(['a;b', 'c,d', 'e\tf'], ';')).toBe('"a;b";c,d;e\tf\n');
  });
});
