import { constants } from 'node:fs';
import { access, mkdir, stat } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { FILE_TROUBLE, UsageError } from '../errors.ts';

const REASONS: Record<string, string> = {
  ...FILE_TROUBLE,
  ENOTDIR: 'part of that path is a file, not a folder',
  EEXIST: 'a file of that name is in the way',
  ENAMETOOLONG: 'the path is too long',
  ENOENT: 'the file system does not allow a folder there',
};

function cannotUse(dir: string, at: string, error: unknown): UsageError {
  const code = (error as NodeJS.ErrnoException).code ?? '';
  const reason = REASONS[code] ?? (error instanceof Error ? error.message : String(error));
  const where = at === dir ? '' : ` (at ${at})`;
  return new UsageError(`cannot write the outputs to ${dir}: ${reason}${where}${code ? ` [${code}]` : ''}. Give another folder with --out.`);
}

/**
 * Creates a batch's output folder and any missing parents, or stops the run (as a usage error,
 * before anything is enqueued) saying why it cannot. The parents are created one by one rather
 * than with `mkdir({ recursive: true })`, which in Node 24 never returns when a parent exists but
 * refuses children with ENOENT (/proc, some FUSE mounts).
 */
export async function createOutputDir(dir: string): Promise<void> {
  const target = resolve(dir);
  const missing: string[] = [];
  for (let at = target; ; at = dirname(at)) {
    // ENOTDIR: a file further up the path; keep climbing to name it.
    const info = await stat(at).catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT' || error.code === 'ENOTDIR') return null;
      throw cannotUse(target, at, error);
    });
    if (info && !info.isDirectory()) throw cannotUse(target, at, Object.assign(new Error('not a folder'), { code: at === target ? 'EEXIST' : 'ENOTDIR' }));
    if (info || dirname(at) === at) break;
    missing.push(at);
  }
  for (const folder of missing.reverse()) {
    await mkdir(folder).catch((error: NodeJS.ErrnoException) => {
      if (error.code !== 'EEXIST') throw cannotUse(target, folder, error);
    });
  }
  await access(target, constants.W_OK).catch((error: unknown) => {
    throw cannotUse(target, target, error);
  });
}
