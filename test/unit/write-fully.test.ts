import { mkdtemp, open, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { writeFully } from '../../src/output/write-fully.ts';

describe('writeFully', () => {
  it('writes the rest when a write takes only part of the buffer, as a filling disk does', async () => {
    const path = join(await mkdtemp(join(tmpdir(), 'write-fully-')), 'journal.jsonl');
    const handle = await open(path, 'w');
    const calls: number[] = [];
    // The real handle, taking at most 5 bytes a write.
    const stingy = new Proxy(handle, {
      get(target, key) {
        if (key === 'write') return (buffer: Buffer, offset: number, length: number, position: number) => (calls.push(length), target.write(buffer, offset, Math.min(length, 5), position));
        const value = Reflect.get(target, key) as unknown;
        return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
      },
    });
    await writeFully(stingy, Buffer.from('{"row":1}\n'), 0);
    await writeFully(stingy, Buffer.from('{"row":2}\n'), 10);
    await handle.close();
    expect(await readFile(path, 'utf8')).toBe('{"row":1}\n{"row":2}\n');
    expect(calls).toEqual([10, 5, 10, 5]);
  });
});
