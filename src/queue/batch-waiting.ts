import type { Logger } from 'pino';
import { formatClockTime } from '../figure-text.ts';
import type { BatchKeys } from './keys.ts';
import { LUA_PRELUDE, runScript, type LuaScript, type RedisClient } from './lua-script.ts';

/**
 * Why a batch's rows wait, as the workers last said it (a rate limit's next free slot, a budget
 * held by calls in flight, a 429's cooldown, an open circuit), kept on the batch in Redis: the
 * worker processes that say it may be on other machines, while the batch's view (the HTTP API,
 * `switchyard status`, serve's progress lines) is read where nobody sees their logs (QA).
 */

/** How often one worker writes a batch's note at most: never once per parked row. */
export const WAITING_WRITE_EVERY_MS = 5000;
/** A note not said again for this long (and whose wait has ended) is no longer shown. */
export const WAITING_STALE_MS = 60_000;
/** A note not said again for this long while rows finished since: the rows move again. */
export const WAITING_PROGRESS_GRACE_MS = 10_000;
/** The key goes by itself an hour after its last note (`forget` deletes it with the batch's other keys before). */
const WAITING_TTL_MS = 3_600_000;

/**
 * Records a note (ARGV[1]) of a kind (ARGV[2]: its text with the figures left out) whose wait
 * ends in ARGV[3] ms, by Redis' clock (workers on other machines, a reader on another), with the
 * rows finished when it was said. `since` stays while the same kind is said again before it went
 * stale; `until` is the latest end of the waits said of that kind.
 */
const RECORD_WAITING: LuaScript = {
  name: 'record-batch-waiting',
  numberOfKeys: 2,
  lua: `${LUA_PRELUDE}
local now = math.floor(now_us() / 1000)
local ends = now + tonumber(ARGV[3])
local old = redis.call('HMGET', KEYS[1], 'kind', 'since', 'said', 'until')
local since = now
if old[1] == ARGV[2] and old[2] and old[3] and old[4] then
  local oldUntil = tonumber(old[4])
  if now <= math.max(tonumber(old[3]) + tonumber(ARGV[4]), oldUntil) then
    since = tonumber(old[2])
    if oldUntil > ends then ends = oldUntil end
  end
end
redis.call('HSET', KEYS[1], 'reason', ARGV[1], 'kind', ARGV[2], 'since', int_str(since), 'said', int_str(now), 'until', int_str(ends), 'finished', redis.call('BITCOUNT', KEYS[2]))
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
`,
};

/** A note's text with its figures left out: "this row's turn is 55 s away" and "... 54 s away" are one reason. */
export function waitingKind(reason: string): string {
  return reason.replace(/\d+(\.\d+)?/g, '#');
}

export async function recordBatchWaiting(redis: RedisClient, keys: Pick<BatchKeys, 'waiting' | 'finished'>, reason: string, waitMs: number): Promise<void> {
  await runScript(redis, RECORD_WAITING, [keys.waiting, keys.finished], [reason, waitingKind(reason), Math.max(0, Math.round(waitMs)), WAITING_STALE_MS, WAITING_TTL_MS]);
}

/** The note as kept (epoch ms by Redis' clock). */
export interface StoredWaiting {
  reason: string;
  since: number;
  said: number;
  until: number;
  /** The batch's finished rows when it was said. */
  finished: number;
}

/** Why the batch's rows wait, as its views show it (times in ISO 8601, as the batch's other times). */
export interface BatchWaiting {
  reason: string;
  /** When rows began to wait for this reason (as far as the workers said it without a pause). */
  since: string;
  /** When a worker last said it. */
  said_at: string;
}

/** The batch's note and Redis' time now, read together (the note's times are Redis'). */
export async function readBatchWaiting(redis: RedisClient, keys: Pick<BatchKeys, 'waiting'>): Promise<{ note: StoredWaiting | null; now: number }> {
  const [fields, [seconds, micros]] = await Promise.all([redis.hgetall(keys.waiting), redis.time()]);
  return { note: storedWaiting(fields), now: Number(seconds) * 1000 + Math.floor(Number(micros) / 1000) };
}

function storedWaiting(fields: Record<string, string>): StoredWaiting | null {
  const [since, said, until, finished] = [fields.since, fields.said, fields.until, fields.finished].map(Number);
  if (!fields.reason || ![since, said, until, finished].every((value) => Number.isFinite(value))) return null;
  return { reason: fields.reason, since: since!, said: said!, until: until!, finished: finished! };
}

/**
 * The note while it is current: said within the last minute or its wait not over yet, and not
 * overtaken by rows that finished since it was last said (a few seconds' grace: rows finish
 * beside those that still wait, and the workers say it again while rows keep waiting).
 */
export function currentWaiting(note: StoredWaiting | null, finishedNow: number, now: number): BatchWaiting | null {
  if (!note) return null;
  if (now > Math.max(note.said + WAITING_STALE_MS, note.until)) return null;
  if (finishedNow > note.finished && now - note.said > WAITING_PROGRESS_GRACE_MS) return null;
  return { reason: note.reason, since: new Date(note.since).toISOString(), said_at: new Date(note.said).toISOString() };
}

/** The batch's current note, or null (none, stale, or Redis would not say). */
export async function batchWaitingNow(redis: RedisClient, keys: Pick<BatchKeys, 'waiting'>, finishedNow: number): Promise<BatchWaiting | null> {
  const { note, now } = await readBatchWaiting(redis, keys);
  return currentWaiting(note, finishedNow, now);
}

export interface WaitingNotes {
  /** A row of the batch parks for `waitMs` for this reason: written now, or with the next write this worker makes of the batch. */
  note(batchId: string, reason: string, waitMs: number): void;
}

/**
 * One worker's writer of the notes: at most one write per batch every WAITING_WRITE_EVERY_MS, the
 * latest note said meanwhile written at the end of that time (a timer, so a reason said once is
 * not lost), off the row's path (a failed write is only logged: the note is advice).
 */
export function createWaitingNotes(redis: RedisClient, keysOf: (batchId: string) => Pick<BatchKeys, 'waiting' | 'finished'>, logger: Logger, now: () => number = Date.now, everyMs = WAITING_WRITE_EVERY_MS): WaitingNotes {
  const batches = new Map<string, { written: number; pending: { reason: string; endsAt: number } | null; timer: NodeJS.Timeout | null }>();
  const write = (batchId: string, reason: string, waitMs: number) => {
    recordBatchWaiting(redis, keysOf(batchId), reason, waitMs).catch((error: unknown) => {
      logger.debug({ batch: batchId, err: error }, 'could not record why the batch\'s rows wait; its view does not say it');
    });
  };
  return {
    note(batchId, reason, waitMs) {
      const at = now();
      let batch = batches.get(batchId);
      if (!batch) {
        // Many batches over a worker's life: the oldest entries go (a timer pending keeps its own write).
        if (batches.size >= 1000) for (const [id, entry] of batches) if (entry.timer === null) batches.delete(id);
        batch = { written: Number.NEGATIVE_INFINITY, pending: null, timer: null };
        batches.set(batchId, batch);
      }
      if (at - batch.written >= everyMs) {
        batch.written = at;
        write(batchId, reason, waitMs);
        return;
      }
      batch.pending = { reason, endsAt: at + waitMs };
      if (batch.timer !== null) return;
      const entry = batch;
      entry.timer = setTimeout(() => {
        entry.timer = null;
        if (!entry.pending) return;
        entry.written = now();
        write(batchId, entry.pending.reason, entry.pending.endsAt - entry.written);
        entry.pending = null;
      }, entry.written + everyMs - at);
      entry.timer.unref();
    },
  };
}

/** "rows wait for ... (said at 20:12:41 UTC; waiting for that since 20:12:06 UTC)": status's and serve's words for the note. */
export function batchWaitingText(waiting: BatchWaiting): string {
  const said = formatClockTime(Date.parse(waiting.said_at));
  const since = formatClockTime(Date.parse(waiting.since));
  return `${waiting.reason} (a worker said so at ${said}${since === said ? '' : `; so since ${since}`})`;
}
