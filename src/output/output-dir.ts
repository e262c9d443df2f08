import { constants } from 'node:fs';
import { access, mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { FILE_TROUBLE, UsageError } from '../errors.ts';
import { outputPaths } from './paths.ts';
import { writtenReportBatchId } from './write-report.ts';

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

/**
 * Marks the folder as `batchId`'s, or stops the run (before anything is enqueued) when it holds
 * another batch's outputs: a new batch given the same --out would replace them. A batch is known
 * by its id and when it was created: another server's batch of the same id (another Redis or key
 * prefix), or one made again after Redis lost or forgot the first, is another batch. Folders from
 * before the mark are known by their report.json, marks without a creation time by their id.
 */
export async function claimOutputDir(dir: string, batchId: string, createdAt: string, resumeHint?: (owner: string) => Promise<string | null>): Promise<void> {
  const paths = outputPaths(dir);
  const { owner, markedCreated } = await folderOwner(dir);
  if (owner && owner !== batchId) {
    // The same command run again after a stop (an unclosed quote fixed, say) is a new batch: it most likely meant the old one.
    const hint = (await resumeHint?.(owner).catch(() => null)) ?? null;
    throw new UsageError(
      `${dir} holds the outputs of batch ${owner}, which batch ${batchId} would replace: ${hint ? `${hint}; or ` : ''}give it another --out ` +
        `(without one, each batch writes to out/<batch id>), or delete that folder first if you no longer need them`,
    );
  }
  if (owner && markedCreated && markedCreated !== createdAt) {
    throw new UsageError(
      `${dir} holds the outputs of an earlier batch also named ${owner}, created ${markedCreated}, which this Redis does not have (forgotten, or another server's), ` +
        'and this run would replace them: give it another --out or batch id, or delete that folder first if you no longer need them',
    );
  }
  if (owner !== batchId || markedCreated !== createdAt) await writeFile(paths.owner, `${batchId}\n${createdAt}\n`);
}

/** Whose outputs the folder holds, by its mark (with when that batch was created) or its report.json; nobody's when neither is there. */
export async function folderOwner(dir: string): Promise<{ owner: string | undefined; markedCreated: string | undefined }> {
  const [markedId, markedCreated] = ((await readFile(outputPaths(dir).owner, 'utf8').catch(() => null)) ?? '').split('\n').map((line) => line.trim());
  return { owner: markedId || (await writtenReportBatchId(dir)), markedCreated: markedCreated || undefined };
}
