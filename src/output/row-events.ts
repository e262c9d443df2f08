import type { Redis } from 'ioredis';
import type { BatchKeys } from '../queue/keys.ts';
import type { RowEvent } from './records.ts';

/**
 * Hands a finished row to the batch's collector. One MULTI: the event, the row's bits and the
 * batch's running cost change together, so "all rows finished" implies "all events are in the stream".
 */
export async function publishRowEvent(redis: Redis, keys: BatchKeys, event: RowEvent, costNanos: number): Promise<void> {
  const tx = redis.multi().xadd(keys.events, '*', 'e', JSON.stringify(event)).setbit(keys.finished, event.result.row, 1);
  if (event.result.status === 'succeeded') tx.setbit(keys.succeeded, event.result.row, 1);
  if (costNanos !== 0) tx.hincrby(keys.meta, 'cost_nanos', costNanos);
  const replies = await tx.exec();
  const failed = replies?.find(([error]) => error);
  if (!replies || failed) throw new Error(`could not publish row ${event.result.row}: ${failed?.[0]?.message ?? 'transaction aborted'}`);
}

export interface StreamEntry {
  id: string;
  event: RowEvent;
}

/** Reads up to `count` events after `afterId`, waiting up to `blockMs` when there are none. */
export async function readRowEvents(redis: Redis, keys: BatchKeys, afterId: string, count: number, blockMs: number): Promise<StreamEntry[]> {
  const reply = blockMs > 0
    ? await redis.xread('COUNT', count, 'BLOCK', blockMs, 'STREAMS', keys.events, afterId)
    : await redis.xread('COUNT', count, 'STREAMS', keys.events, afterId);
  const entries = reply?.[0]?.[1] ?? [];
  return entries.map(([id, fields]) => ({ id, event: JSON.parse(fields[1] ?? 'null') as RowEvent }));
}
