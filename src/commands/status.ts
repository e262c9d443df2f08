import type { Logger } from 'pino';
import { formatUsd } from '../models/pricing.ts';
import { UsageError } from '../errors.ts';
import { openSession } from './session.ts';
import { totalOf } from '../progress/progress-display.ts';

/** `switchyard status [batch id]`: one batch's state, or the most recent batches. */
export async function runStatusCommand(batchId: string | undefined, logger: Logger, say: (line: string) => void): Promise<number> {
  const session = await openSession(logger, say);
  try {
    const ids = batchId ? [batchId] : await session.store.recentBatchIds(10);
    if (ids.length === 0) say('No batches yet.');
    for (const id of ids) {
      const [meta, progress] = await Promise.all([session.store.load(id), session.store.progress(id)]);
      if (!meta || !progress) throw new UsageError(`no batch "${id}" in Redis at ${session.redisLabel}`);
      const total = totalOf(progress).text;
      say(`${id}  ${meta.status}`);
      say(`  rows      ${progress.finished}/${total} finished: ${progress.succeeded} succeeded, ${progress.failed} failed; ${meta.invalid_rows} invalid`);
      say(`  cost      ${formatUsd(progress.costUsd)}`);
      say(`  input     ${meta.input}`);
      say(`  output    ${meta.out_dir}`);
      say(`  started   ${meta.started_at ?? meta.created_at}${meta.finished_at ? `, finished ${meta.finished_at}` : ''}`);
    }
    return 0;
  } finally {
    await session.close();
  }
}
