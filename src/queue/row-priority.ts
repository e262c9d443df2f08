import type { Queue } from 'bullmq';
import { runScript, type LuaScript, type RedisClient } from './lua-script.ts';

/** BullMQ's largest job priority (its PRIORITY_LIMIT, 2^21 - 1). */
export const MAX_JOB_PRIORITY = 2_097_151;

/** Rows of one batch that share a priority: batches side by side take turns by this many rows. */
export const ROWS_PER_PRIORITY = 64;

/** The clock outlives a quiet hour at most: then nothing was queued or parked, so nothing waits to be ordered against it. */
const CLOCK_TTL_S = 3600;

/** Where the queue's clock is kept, beside the queue's own keys (a Queue's or a Worker's `toKey`). */
export function rowClockKey(queue: { toKey(type: string): string }): string {
  return queue.toKey('row-clock');
}

/**
 * The queue's clock: the lowest priority waiting in BullMQ's prioritized set (its score is
 * priority * 2^32 + a counter), or, with none waiting, the last one seen. Moves only forward.
 */
const READ_CLOCK: LuaScript = {
  name: 'reading the queue clock',
  numberOfKeys: 2,
  lua: `
local clock = tonumber(redis.call('GET', KEYS[2]) or '1')
local lowest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if lowest[2] then
  local waiting = math.floor(tonumber(lowest[2]) / 4294967296)
  if waiting > clock then clock = waiting end
end
redis.call('SET', KEYS[2], string.format('%.0f', clock), 'EX', ARGV[1])
return clock`,
};

/**
 * Each chunk's rows' queue priorities (BullMQ takes the lowest first, equals in the order queued),
 * as start-time fair queuing: a batch's rows follow on from its last chunk, but never start behind
 * the queue's clock. So a batch queued beside others takes turns with them, ROWS_PER_PRIORITY rows
 * at a time, from the moment it comes: a small batch posted behind a large (or `--detach`ed) one
 * starts at once rather than after the large one's queued rows. A row parked for its rate limit
 * keeps its priority, so when BullMQ wakes it, it goes before the fresh rows queued after it, not
 * behind all of them. Past MAX_JOB_PRIORITY rows share it, first come first served.
 */
export interface RowPriorities {
  /** Reads the queue's clock; returns the priorities of a chunk of `rows` rows, in row order. */
  forChunk(rows: number): Promise<number[]>;
}

export function rowPriorities(queue: Queue, redis: RedisClient): RowPriorities {
  // Where the batch's next row goes: a priority, and how many rows have it already.
  let priority = 1;
  let rowsAtPriority = 0;
  const keys = [queue.keys['prioritized']!, rowClockKey(queue)];
  return {
    async forChunk(rows) {
      const clock = Number(await runScript(redis, READ_CLOCK, keys, [CLOCK_TTL_S]));
      if (clock > priority) {
        priority = clock;
        rowsAtPriority = 0;
      }
      const priorities = new Array<number>(rows);
      for (let index = 0; index < rows; index++) {
        priorities[index] = Math.min(priority, MAX_JOB_PRIORITY);
        if (++rowsAtPriority === ROWS_PER_PRIORITY) {
          priority++;
          rowsAtPriority = 0;
        }
      }
      return priorities;
    },
  };
}

/** Moves the queue's clock up to a priority (never back), its expiry renewed. */
const CLOCK_UP_TO_PARKED: LuaScript = {
  name: 'moving the queue clock up to a parked row',
  numberOfKeys: 1,
  lua: `
local clock = tonumber(redis.call('GET', KEYS[1]) or '1')
local parked = tonumber(ARGV[1])
if parked > clock then clock = parked end
redis.call('SET', KEYS[1], string.format('%.0f', clock), 'EX', ARGV[2])
return clock`,
};

/**
 * Called as a row parks (its job delayed until its wait ends). The clock is read from the rows
 * waiting, and a parked row is not among them: with every other row done or parked, a batch
 * queued meanwhile would start at the clock as last read, turns behind the parked row, and its
 * early turns would go before the row once it wakes. Moved up to the row's priority, the clock starts
 * such a batch level with it (the woken row behind one turn of the batch's at most). Rows queued
 * without a priority (0) leave it as it is.
 */
export async function keepClockAtParkedRow(redis: RedisClient, clockKey: string, priority: number): Promise<void> {
  if (priority <= 0) return;
  await runScript(redis, CLOCK_UP_TO_PARKED, [clockKey], [priority, CLOCK_TTL_S]);
}
