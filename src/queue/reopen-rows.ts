import type { BatchKeys } from './keys.ts';
import { runScript, type LuaScript, type RedisClient } from './lua-script.ts';

/**
 * A resume's decision for a chunk of rows, made atomically with the workers' publish script
 * (row-events.ts). The resume's workers start on the jobs the earlier run left queued while the
 * producer is still reading the file, so a row may finish between the producer's read of the
 * bitmaps and this script:
 * - a row that had failed before is reopened (finished and withdrawn bits cleared) unless it has
 *   succeeded since;
 * - a row that had not finished is left to the job already running it if it has finished since
 *   (clearing its finished bit then, with its job gone, would leave the batch a row short);
 * - a row edited in the file since it succeeded (or since it was withdrawn) loses its bits: it runs
 *   again whatever happened;
 * - a row set aside when withdrawn (withdraw-rows.ts) and back in the file unchanged is restored:
 *   finished and succeeded, its answer (in the journal) written again with the outputs.
 * A row queued again loses its set-aside mark: its journal line is no longer its latest answer's.
 * The chunk's fingerprints are written in the same step.
 *
 * KEYS: succeeded, finished, withdrawn, fingerprints, set_aside.
 * ARGV: first row, fingerprints from it (4 bytes a row), f, u, r, then f failed rows, u unfinished
 * rows, r restored rows, then the changed rows. Returns the rows of the first two lists that
 * finished meanwhile.
 */
const REOPEN_ROWS: LuaScript = {
  name: 'reopen-rows',
  numberOfKeys: 5,
  lua: `
local failed = tonumber(ARGV[3])
local unfinished = tonumber(ARGV[4])
local restored = tonumber(ARGV[5])
local finished_meanwhile = {}
if redis.call('EXISTS', KEYS[5]) == 1 then
  for i = 6, 5 + failed + unfinished do redis.call('SETBIT', KEYS[5], tonumber(ARGV[i]), 0) end
  for i = 6 + failed + unfinished + restored, #ARGV do redis.call('SETBIT', KEYS[5], tonumber(ARGV[i]), 0) end
end
for i = 6, 5 + failed do
  local row = tonumber(ARGV[i])
  if redis.call('GETBIT', KEYS[1], row) == 1 then
    finished_meanwhile[#finished_meanwhile + 1] = row
  else
    redis.call('SETBIT', KEYS[2], row, 0)
    redis.call('SETBIT', KEYS[3], row, 0)
  end
end
for i = 6 + failed, 5 + failed + unfinished do
  local row = tonumber(ARGV[i])
  if redis.call('GETBIT', KEYS[1], row) == 1 then
    -- Succeeded yet not finished: only a reopening racing a publish before this script could do that.
    redis.call('SETBIT', KEYS[2], row, 1)
    finished_meanwhile[#finished_meanwhile + 1] = row
  elseif redis.call('GETBIT', KEYS[2], row) == 1 then
    finished_meanwhile[#finished_meanwhile + 1] = row
  else
    redis.call('SETBIT', KEYS[3], row, 0)
  end
end
for i = 6 + failed + unfinished, 5 + failed + unfinished + restored do
  local row = tonumber(ARGV[i])
  redis.call('SETBIT', KEYS[1], row, 1)
  redis.call('SETBIT', KEYS[2], row, 1)
  redis.call('SETBIT', KEYS[3], row, 0)
  redis.call('SETBIT', KEYS[5], row, 0)
end
for i = 6 + failed + unfinished + restored, #ARGV do
  local row = tonumber(ARGV[i])
  redis.call('SETBIT', KEYS[2], row, 0)
  redis.call('SETBIT', KEYS[1], row, 0)
  redis.call('SETBIT', KEYS[3], row, 0)
end
redis.call('SETRANGE', KEYS[4], tonumber(ARGV[1]) * 4, ARGV[2])
return finished_meanwhile
`,
};

export interface ReopenChunk {
  firstRow: number;
  fingerprints: Buffer;
  /** Rows that had finished without succeeding when read: they get another round. */
  failed: readonly number[];
  /** Rows that had not finished when read (never run, or still queued from the earlier run). */
  unfinished: readonly number[];
  /** Rows that succeeded with other content: edited or moved in the file since. */
  changed: readonly number[];
  /** Rows set aside when withdrawn and back in the file unchanged: their answers are kept. */
  restored: readonly number[];
}

/** Reopens a resumed chunk's rows; returns those that finished meanwhile, which must not be enqueued again. */
export async function reopenRows(redis: RedisClient, keys: BatchKeys, chunk: ReopenChunk): Promise<Set<number>> {
  const args = [chunk.firstRow, chunk.fingerprints, chunk.failed.length, chunk.unfinished.length, chunk.restored.length, ...chunk.failed, ...chunk.unfinished, ...chunk.restored, ...chunk.changed];
  const meanwhile = (await runScript(redis, REOPEN_ROWS, [keys.succeeded, keys.finished, keys.withdrawn, keys.fingerprints, keys.setAside], args)) as number[];
  return new Set(meanwhile);
}
