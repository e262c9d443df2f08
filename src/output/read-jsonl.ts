import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';

/**
 * Reads a JSONL file one line at a time, never holding more than one line in memory.
 * Blank lines are skipped; a line that is not JSON throws an error naming the file and line.
 * The values are not validated: `T` is what the caller trusts the file to hold (files we wrote).
 */
export async function* readJsonl<T>(path: string): AsyncGenerator<T> {
  const input = createReadStream(path, { encoding: 'utf8' });
  const lines = createInterface({ input, crlfDelay: Infinity });
  let lineNumber = 0;
  try {
    for await (const line of lines) {
      lineNumber += 1;
      if (line.trim() === '') continue;
      let value: T;
      try {
        value = JSON.parse(line) as T;
      } catch (error) {
        const reason = error instanceof Error ? error.message : String(error);
        throw new Error(`${path}:${lineNumber}: not valid JSON (${reason})`);
      }
      yield value;
    }
  } finally {
    lines.close();
    input.destroy();
  }
}
