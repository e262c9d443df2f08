import type { BatchKeys } from './keys.ts';
import { runScript, type LuaScript, type RedisClient } from './lua-script.ts';

/**
 * A resume's decision for a chunk of rows, made atomically with the workers' publish script
 * (row-events.ts). Rows that had not succeeded when the producer read the bitmap are reopened
 * (finished and withdrawn bits cleared) only if they still have not: a worker may have finished
 * one meanwhile through a job left in the queue by the earlier run, and clearing its finished bit
 * then would leave the batch one row short for ever. Changed rows lose both bits (they run again
 * whatever happened). The chunk's fingerprints are written in the same step.
 *
 * KEYS: succeeded, finished, withdrawn, fingerprints.
 * ARGV: first row, fingerprints from it (4 bytes a row), n, n rows to reopen, then the changed rows.
 * Returns the rows to reopen that had succeeded meanwhile (not reopened).
 */
const REOPEN_ROWS: LuaScript = {
  name: 'reopen-rows',
  numberOfKeys: 4,
  lua: `
local n = tonumber(ARGV[3])
local succeeded_meanwhile = {}
for i = 4, 3 + n do
  local row = tonumber(ARGV[i])
  if redis.call('GETBIT', KEYS[1], row) == 1 then
    succeeded_meanwhile[#succeeded_meanwhile + 1] = row
  else
    redis.call('SETBIT', KEYS[2], row, 0)
    redis.call('SETBIT', KEYS[3], row, 0)
  end
end
for i = 4 + n, #ARGV do
  local row = tonumber(ARGV[i])
  redis.call('SETBIT', KEYS[2], row, 0)
  redis.call('SETBIT', KEYS[1], row, 0)
end
redis.call('SETRANGE', KEYS[4], tonumber(ARGV[1]) * 4, ARGV[2])
return succeeded_meanwhile
`,
};

export interface ReopenChunk {
  firstRow: number;
  fingerprints: Buffer;
  /** Rows that had not succeeded when read. */
  reopen: readonly number[];
  /** Rows that succeeded with other content: edited or moved in the file since. */
  changed: readonly number[];
}

/** Reopens a resumed chunk's rows; returns those that succeeded meanwhile, which must not be enqueued again. */
export async function reopenRows(redis: RedisClient, keys: BatchKeys, chunk: ReopenChunk): Promise<Set<number>> {
  const meanwhile = (await runScript(redis, REOPEN_ROWS, [keys.succeeded, keys.finished, keys.withdrawn, keys.fingerprints], [chunk.firstRow, chunk.fingerprints, chunk.reopen.length, ...chunk.reopen, ...chunk.changed])) as number[];
  return new Set(meanwhile);
}
