import type { Redis } from 'ioredis';
import type { BatchKeys } from '../queue/keys.ts';
import { runScript, type LuaScript } from '../queue/lua-script.ts';
import type { RowEvent } from './records.ts';

/**
 * KEYS: events, finished, succeeded, meta, withdrawn. ARGV: result JSON, row, succeeded (0/1), cost
 * nanos, calls as JSON lines. A withdrawn row (invalid in the file now, or past its end) can still
 * be finished by a job an earlier run left queued: its calls are recorded and paid for, but it does
 * not count as finished, or the batch would look done while a valid row is still running.
 */
const PUBLISH: LuaScript = {
  name: 'publish_row',
  numberOfKeys: 5,
  lua: `
redis.call('XADD', KEYS[1], '*', 'row', ARGV[2], 'result', ARGV[1], 'calls', ARGV[5])
if redis.call('GETBIT', KEYS[5], ARGV[2]) == 0 then
  redis.call('SETBIT', KEYS[2], ARGV[2], 1)
  if ARGV[3] == '1' then redis.call('SETBIT', KEYS[3], ARGV[2], 1) end
end
if ARGV[4] ~= '0' then redis.call('HINCRBY', KEYS[4], 'cost_nanos', ARGV[4]) end
return 1
`,
};

/**
 * Hands a finished row to the batch's collector. One script, so the event, the row's bits and the
 * batch's running cost change together ("all rows finished" implies "all events are in the stream"),
 * in one round trip and one socket write.
 */
export async function publishRowEvent(redis: Redis, keys: BatchKeys, event: RowEvent, costNanos: number): Promise<void> {
  const succeeded = event.result.status === 'succeeded' ? 1 : 0;
  const calls = event.calls.map((call) => `${JSON.stringify(call)}\n`).join('');
  await runScript(redis, PUBLISH, [keys.events, keys.finished, keys.succeeded, keys.meta, keys.withdrawn], [JSON.stringify(event.result), event.result.row, succeeded, costNanos, calls]);
}

/** A row's event as stored: already serialized, so the collector writes it without re-encoding. */
export interface StreamEntry {
  id: string;
  row: number;
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
    return { id, row: Number(field('row')), resultJson: field('result'), callsJsonl: field('calls') };
  });
}
