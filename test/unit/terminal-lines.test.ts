import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { writeLines } from '../../src/progress/terminal-lines.ts';

function sink(isTTY: boolean) {
  const stream = Object.assign(new PassThrough(), { isTTY });
  const chunks: string[] = [];
  stream.on('data', (chunk: Buffer) => chunks.push(chunk.toString('utf8')));
  return { stream, text: () => chunks.join('') };
}

describe('writeLines', () => {
  it("shows the control characters of a line's text rather than send them to the terminal (QA: a model name from the input file recoloured it and rang its bell)", async () => {
    for (const isTTY of [true, false]) {
      const out = sink(isTTY);
      writeLines(out.stream, 'unknown model "evil\x1b[31mRED\x1b[0m\x07", title \x1b]0;pwned\x07 \x9b2J\r, cr\ttab, 中文 👨‍👩‍👧\nnext line\n');
      await new Promise((resolve) => setImmediate(resolve));
      expect(out.text()).toBe('unknown model "evil\\x1b[31mRED\\x1b[0m\\x07", title \\x1b]0;pwned\\x07 \\x9b2J\\x0d, cr\ttab, 中文 👨‍👩‍👧\nnext line\n');
    }
  });
});
