import type { Redis } from 'ioredis';
import type { BatchKeys } from '../queue/keys.ts';
import { runScript, type LuaScript } from '../queue/lua-script.ts';
import { usdToNanos } from '../models/pricing.ts';
import type { CallRecord, RowEvent } from './records.ts';

/**
 * Lua: clears job `id`'s note in `withdrawing` (unqueue-batch.ts) if it is that very job's (its
 * creation time `stamp` starts the note): a job a resume queued since under the same id is another
 * one, and must not clear the note of the one a stop removed. True when it cleared one.
 */
const CLEAR_NOTE_FN = `
local function clear_note(key, id, stamp)
  local note = redis.call('HGET', key, id)
  if not note or string.sub(note, 1, #stamp + 1) ~= stamp .. ' ' then return false end
  redis.call('HDEL', key, id)
  return true
end
`;

/**
 * Lua: the calls to publish: `calls`, then those of ARGV[from...] in order (id, JSON line, cost
 * nanos: three arguments each, from the first call the row saved in its job while it went on),
 * less the saved ones whose id `published` holds already: they went out with another worker's
 * publish of the same job (handed over while this worker still ran it). An empty id is a call
 * not saved. Adds the saved ones' cost to the batch's, and returns it (nanos) with the calls.
 */
const SAVED_CALLS_FN = `
local function add_saved_calls(calls, published, meta, from)
  local added = 0
  for i = from, #ARGV, 3 do
    if ARGV[i] == '' then
      calls = calls .. ARGV[i + 1]
    elseif redis.call('SADD', published, ARGV[i]) == 1 then
      calls = calls .. ARGV[i + 1]
      if ARGV[i + 2] ~= '0' then redis.call('HINCRBY', meta, 'cost_nanos', ARGV[i + 2]) end
      added = added + tonumber(ARGV[i + 2])
    end
  end
  return calls, added
end
`;

/**
 * KEYS: events, finished, succeeded, meta, withdrawn, fingerprints, withdrawing, published_calls. ARGV: result JSON,
 * row, succeeded (0/1), cost nanos, calls as JSON lines, the job's row fingerprint (4 bytes, or
 * empty for a job from before jobs carried one), the job's id and creation time (or empty), then
 * the calls saved in the job, three arguments each (SAVED_CALLS_FN).
 * - The job's note in `withdrawing`, left by a stop killed before it removed the job, is cleared:
 *   the job's calls go out here, not again from the note (unqueue-batch.ts finishWithdrawals).
 * - A withdrawn row (invalid in the file now, or past its end) can still be finished by a job an
 *   earlier run left queued: its calls are recorded and paid for, but it does not count as
 *   finished, or the batch would look done while a valid row is still running.
 * - An event with an empty result carries calls only: they were paid for, but there is no answer to
 *   keep. That is a superseded job's (its row was edited in the file after it was queued; a resume
 *   queued the new content under another job id: its answer is to another prompt). The row's bits
 *   stay as they are. (A parked row's calls, taken off the queue, go out by PUBLISH_CALLS.)
 * Returns {1 when the result was published (0 for calls only), the saved calls' cost published}.
 */
const PUBLISH: LuaScript = {
  name: 'publish_row',
  numberOfKeys: 8,
  lua: `${CLEAR_NOTE_FN}${SAVED_CALLS_FN}
local result = ARGV[1]
if ARGV[7] ~= '' then clear_note(KEYS[7], ARGV[7], ARGV[8]) end
if ARGV[6] ~= '' then
  local at = tonumber(ARGV[2]) * 4
  local recorded = redis.call('GETRANGE', KEYS[6], at, at + 3)
  if #recorded == 4 and recorded ~= ARGV[6] and recorded ~= string.char(0, 0, 0, 0) then result = '' end
end
local calls, saved_nanos = add_saved_calls(ARGV[5], KEYS[8], KEYS[4], 9)
redis.call('XADD', KEYS[1], '*', 'row', ARGV[2], 'result', result, 'calls', calls)
if result ~= '' and redis.call('GETBIT', KEYS[5], ARGV[2]) == 0 then
  redis.call('SETBIT', KEYS[2], ARGV[2], 1)
  if ARGV[3] == '1' then redis.call('SETBIT', KEYS[3], ARGV[2], 1) end
end
if ARGV[4] ~= '0' then redis.call('HINCRBY', KEYS[4], 'cost_nanos', ARGV[4]) end
return {result == '' and 0 or 1, saved_nanos}
`,
};

const publishKeys = (keys: BatchKeys) => [keys.events, keys.finished, keys.succeeded, keys.meta, keys.withdrawn, keys.fingerprints, keys.withdrawing, keys.publishedCalls];

/**
 * KEYS: events, meta, withdrawing, published_calls. ARGV: row, cost nanos, calls as JSON lines, the
 * job's id (or empty), '1' when the job's note in `withdrawing` must be there, the job's creation
 * time, then the calls saved in the job, three arguments each (SAVED_CALLS_FN). A job
 * taken off the queue by a stop was noted first (unqueue-batch.ts): its calls go out with the note,
 * once, whoever publishes them first (the stop, or the collector finishing a stop that was killed).
 * Returns 0 when the note was wanted and gone, else {1, the saved calls' cost published}.
 */
const PUBLISH_CALLS: LuaScript = {
  name: 'publish_calls',
  numberOfKeys: 4,
  lua: `${CLEAR_NOTE_FN}${SAVED_CALLS_FN}
local noted = ARGV[4] ~= '' and clear_note(KEYS[3], ARGV[4], ARGV[6])
if ARGV[5] == '1' and not noted then return 0 end
if ARGV[2] ~= '0' then redis.call('HINCRBY', KEYS[2], 'cost_nanos', ARGV[2]) end
local calls, saved_nanos = add_saved_calls(ARGV[3], KEYS[4], KEYS[2], 7)
if calls ~= '' then redis.call('XADD', KEYS[1], '*', 'row', ARGV[1], 'result', '', 'calls', calls) end
return {1, saved_nanos}
`,
};

/**
 * The calls to publish and what they add to the batch's cost: a row carried over from a stopped
 * run holds calls whose records went out when it was taken off the queue, and they must not go
 * out twice. As the stream holds them: one JSON line each, in the row's order. From the first call
 * the row saved in its job while it went on (`saved_as`), the calls go as script arguments, three
 * each (SAVED_CALLS_FN): the script publishes a saved one only if no other publish of the job has,
 * and adds its cost then (`costNanos` leaves those out); an unsaved one has an empty id.
 */
function unrecorded(calls: readonly CallRecord[], costNanos: number): { callsJsonl: string; costNanos: number; saved: string[] } {
  let lines = '';
  let leftOutNanos = 0;
  const saved: string[] = [];
  for (const call of calls) {
    if (call.saved_as === undefined && !call.recorded) {
      if (saved.length === 0) lines += `${JSON.stringify(call)}\n`;
      else saved.push('', `${JSON.stringify(call)}\n`, '0');
      continue;
    }
    const nanos = call.cost_usd === null ? 0 : usdToNanos(call.cost_usd);
    leftOutNanos += nanos;
    if (call.recorded) continue;
    const { saved_as: id, ...record } = call;
    saved.push(id!, `${JSON.stringify(record)}\n`, String(nanos));
  }
  return { callsJsonl: lines, costNanos: costNanos - leftOutNanos, saved };
}

/** A fingerprint as stored in the batch's fingerprints string: 4 bytes, big-endian. */
export function fingerprintBytes(fingerprint: number): Buffer {
  const bytes = Buffer.alloc(4);
  bytes.writeUInt32BE(fingerprint);
  return bytes;
}

/** Clears `job`'s note in the batch's `withdrawing` hash, if it is that very job's (a job it left in the queue ended another way). */
export async function clearWithdrawalNote(redis: Redis, keys: BatchKeys, job: NotedJob): Promise<void> {
  await runScript(redis, PUBLISH_CALLS, [keys.events, keys.meta, keys.withdrawing, keys.publishedCalls], [0, 0, '', job.id, '0', job.timestamp]);
}

/** A job as its note in the batch's `withdrawing` hash names it: its id and BullMQ creation time. */
export interface NotedJob {
  id: string;
  timestamp: number;
}

/** The note a stop writes for a job it is about to remove (see CLEAR_NOTE_FN): its creation time first. */
export function withdrawalNote(job: NotedJob, data: unknown): string {
  return `${job.timestamp} ${JSON.stringify(data)}`;
}

/**
 * Hands a finished row to the batch's collector. One script, so the event, the row's bits and the
 * batch's running cost change together ("all rows finished" implies "all events are in the stream"),
 * in one round trip and one socket write. Returns whether the result was published (not when the
 * job was superseded: only its calls were recorded) and what its calls added to the batch's cost.
 */
export async function publishRowEvent(redis: Redis, keys: BatchKeys, event: RowEvent, costNanos: number, fingerprint: number | undefined, job?: NotedJob): Promise<{ published: boolean; costNanos: number }> {
  const succeeded = event.result.status === 'succeeded' ? 1 : 0;
  const jobFingerprint = fingerprint === undefined ? '' : fingerprintBytes(fingerprint);
  const fresh = unrecorded(event.calls, costNanos);
  const [published, savedNanos] = (await runScript(redis, PUBLISH, publishKeys(keys), [JSON.stringify(event.result), event.result.row, succeeded, fresh.costNanos, fresh.callsJsonl, jobFingerprint, job?.id ?? '', job?.timestamp ?? '', ...fresh.saved])) as [number, number];
  return { published: published === 1, costNanos: fresh.costNanos + savedNanos };
}

/**
 * A row's calls without a result: those of a parked row taken off the queue when its run stopped
 * (they were paid for; the row itself runs again on resume). The collector writes them to
 * costs.jsonl only, as it does a superseded job's. `job`: the job, and whether its stop noted it
 * (the calls then go out only with the note, PUBLISH_CALLS). Returns what they added to the
 * batch's cost (nanos).
 */
export async function publishCallsOnly(redis: Redis, keys: BatchKeys, row: number, calls: readonly CallRecord[], costNanos: number, job?: NotedJob & { noted: boolean }): Promise<number> {
  const fresh = unrecorded(calls, costNanos);
  if (fresh.callsJsonl === '' && fresh.saved.length === 0 && !job) return 0;
  const reply = await runScript(redis, PUBLISH_CALLS, [keys.events, keys.meta, keys.withdrawing, keys.publishedCalls], [row, fresh.costNanos, fresh.callsJsonl, job?.id ?? '', job?.noted ? '1' : '0', job?.timestamp ?? '', ...fresh.saved]);
  return Array.isArray(reply) ? fresh.costNanos + Number(reply[1]) : 0;
}

/** A row's event as stored: already serialized, so the collector writes it without re-encoding. */
export interface StreamEntry {
  id: string;
  /** null when the event's `row` field is no row number (a damaged key, another version's event): `rowField` says what it was. */
  row: number | null;
  rowField: string;
  /** Empty for a superseded job's event, which carries only its calls. */
  resultJson: string;
  /** One JSON line per call, each ending in a newline. */
  callsJsonl: string;
}

/** Reads up to `count` events after `afterId`, waiting up to `blockMs` when there are none. */
export async function readRowEvents(redis: Redis, keys: BatchKeys, afterId: string, count: number, blockMs: number): Promise<StreamEntry[]> {
  const reply = blockMs > 0
    ? await redis.xread('COUNT', count, 'BLOCK', blockMs, 'STREAMS', keys.events, afterId)
    : await redis.xread('COUNT', count, 'STREAMS', keys.events, afterId);
  const entries = reply?.[0]?.[1] ?? [];
  return entries.map(([id, fields]) => {
    const field = (name: string) => fields[fields.indexOf(name) + 1] ?? '';
    const rowField = field('row');
    return { id, row: rowNumber(rowField), rowField, resultJson: field('result'), callsJsonl: field('calls') };
  });
}

/** A row number as an event's field holds it (decimal digits), or null: Number() would read "" as row 0 and "2x" as NaN. */
function rowNumber(text: string): number | null {
  if (!/^\d{1,15}$/.test(text)) return null;
  return Number(text);
}
