import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { OWN_PROCESS } from '../../vitest.config.ts';

// Unit files share their processes (isolate: false): a vi.mock there is not seen by a module another
// file imported first, so such a test passes or fails by the order files happen to run in (CI: a
// simulator test's mock went unseen on a clean clone and passed locally).
describe('unit test files that replace a module', () => {
  it('each run in a process of their own (vitest.config.ts OWN_PROCESS)', async () => {
    const dir = join(import.meta.dirname, '.');
    const files = (await readdir(dir)).filter((name) => name.endsWith('.test.ts'));
    const mocking: string[] = [];
    for (const name of files) {
      if (/\bvi\.(?:mock|doMock)\(/.test(await readFile(join(dir, name), 'utf8'))) mocking.push(`test/unit/${name}`);
    }
    expect(mocking.length).toBeGreaterThan(0);
    expect(mocking.filter((file) => !OWN_PROCESS.includes(file))).toEqual([]);
  });
});
