import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import type { ReadItem, RowRules } from '../../src/input/row.ts';

/** What the reader tests share: fixture paths, rules with two known models, and draining a reader. */
export const fixture = (name: string): string => new URL(`../fixtures/${name}`, import.meta.url).pathname;
export const rules: RowRules = { promptColumn: 'prompt', knownModels: new Set(['gpt-a', 'gpt-b']) };

export async function collect(items: AsyncIterable<ReadItem>): Promise<ReadItem[]> {
  const out: ReadItem[] = [];
  for await (const item of items) out.push(item);
  return out;
}

/** A temp folder for this file's tests (removed afterwards) and a way to write a file into it. */
export function useTempFiles(name: string): { file(fileName: string, content: string | Uint8Array): Promise<string>; dir(): string } {
  let dir = '';
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), `switchyard-${name}-`));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });
  return {
    dir: () => dir,
    async file(fileName, content) {
      const path = join(dir, fileName);
      await writeFile(path, content);
      return path;
    },
  };
}
