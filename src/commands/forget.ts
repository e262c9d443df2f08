import type { Logger } from 'pino';
import { UsageError } from '../errors.ts';
import { counted } from '../figure-text.ts';
import { batchesOlderThan, forgetBatch } from '../queue/forget-batch.ts';
import { openSession } from '../queue/session.ts';

const DAY_MS = 86_400_000;

export interface ForgetOptions {
  /** Forget every finished batch whose last run ended more than this many days ago. */
  olderThanDays?: number;
}

/**
 * `switchyard forget <batch id...>` or `--older-than <days>`: frees what Redis keeps of finished
 * batches (about 4.4 bytes per row), e.g. after nightly runs. Exit 1 when a named batch could not
 * be forgotten.
 */
export async function runForgetCommand(batchIds: string[], options: ForgetOptions, logger: Logger, say: (line: string) => void): Promise<number> {
  if (batchIds.length === 0 && options.olderThanDays === undefined) throw new UsageError('name the batches to forget, or give --older-than <days>');
  if (batchIds.length > 0 && options.olderThanDays !== undefined) throw new UsageError('give batch ids or --older-than, not both');
  const session = await openSession(logger, say);
  try {
    const old = options.olderThanDays === undefined ? null : await batchesOlderThan(session.store, Date.now() - options.olderThanDays * DAY_MS);
    const ids = old?.finished ?? batchIds;
    const days = `${options.olderThanDays} ${options.olderThanDays === 1 ? 'day' : 'days'}`;
    if (old && old.unfinished.length > 0) {
      const shown = old.unfinished.slice(0, 5).join(', ') + (old.unfinished.length > 5 ? `, and ${old.unfinished.length - 5} more` : '');
      say(`Kept ${old.unfinished.length} unfinished ${old.unfinished.length === 1 ? 'batch' : 'batches'} started more than ${days} ago (${shown}): \`switchyard status <id>\` says how to finish each; then it can be forgotten.`);
    }
    if (ids.length === 0) {
      say(`No finished batch ended more than ${days} ago.`);
      return 0;
    }
    let refused = 0;
    for (const id of ids) {
      const outcome = await forgetBatch(session.redis, session.store, id);
      if (outcome.forgotten) say(`Forgot ${id} (${counted(outcome.keys, 'Redis key')}); its output files are kept.`);
      else {
        refused++;
        say(outcome.missing ? `No batch "${id}" here: nothing to forget (\`switchyard status\` lists the batches).` : `Kept ${id}: ${outcome.reason}.`);
      }
    }
    return refused > 0 ? 1 : 0;
  } finally {
    await session.close();
  }
}
