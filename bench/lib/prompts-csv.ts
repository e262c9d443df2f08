import { createWriteStream } from 'node:fs';
import { once } from 'node:events';
import path from 'node:path';

/** Writes a prompts CSV (id,prompt,topic) of `rows` rows, streaming, and returns its path. */
export async function writePromptsCsv(dir: string, rows: number): Promise<string> {
  const file = path.join(dir, `prompts-${rows}.csv`);
  const out = createWriteStream(file);
  const write = async (text: string) => {
    if (!out.write(text)) await once(out, 'drain');
  };
  await write('id,prompt,topic\n');
  let chunk = '';
  for (let row = 1; row <= rows; row++) {
    chunk += `r${row},"Question ${row}: explain item ${row % 997}, briefly",topic-${row % 7}\n`;
    if (chunk.length > 64 * 1024) {
      await write(chunk);
      chunk = '';
    }
  }
  await write(chunk);
  out.end();
  await once(out, 'finish');
  return file;
}
