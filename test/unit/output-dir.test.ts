import { mkdtemp, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { UsageError } from '../../src/errors.ts';
import { createOutputDir } from '../../src/output/output-dir.ts';

describe('createOutputDir', () => {
  it('creates the folder and its missing parents, and accepts one that exists', async () => {
    const base = await mkdtemp(join(tmpdir(), 'switchyard-outdir-'));
    const dir = join(base, 'a', 'b', 'c');
    await createOutputDir(dir);
    expect((await stat(dir)).isDirectory()).toBe(true);
    await createOutputDir(dir);
  });

  it('says which part of the path is a file', async () => {
    const base = await mkdtemp(join(tmpdir(), 'switchyard-outdir-'));
    await writeFile(join(base, 'prompts.csv'), 'prompt\nhi\n');
    const error = await createOutputDir(join(base, 'prompts.csv', 'out')).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(UsageError);
    expect((error as Error).message).toBe(`cannot write the outputs to ${join(base, 'prompts.csv', 'out')}: part of that path is a file, not a folder (at ${join(base, 'prompts.csv')}) [ENOTDIR]. Give another folder with --out.`);
    await expect(createOutputDir(join(base, 'prompts.csv'))).rejects.toThrow(/a file of that name is in the way \[EEXIST\]/);
  });

  // Node's own recursive mkdir never returns here (the parent exists, the child gets ENOENT).
  it.runIf(process.platform === 'linux')('stops with a message where the file system refuses folders, instead of hanging', async () => {
    await expect(createOutputDir('/proc/switchyard-test/out')).rejects.toThrow('cannot write the outputs to /proc/switchyard-test/out: the file system does not allow a folder there (at /proc/switchyard-test) [ENOENT]');
  });
});
