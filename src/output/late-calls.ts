import { appendFileSync, statSync, truncateSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import type { BatchStore } from '../queue/batch-state.ts';
import type { OutputPaths } from './paths.ts';
import { readRowEvents } from './row-events.ts';

/**
 * Rows' events published after a batch's outputs were written: a worker paused past
 * `queue.lock_ms` (a laptop asleep, SIGSTOP) whose rows another worker did again meanwhile, and that
 * then finished them. Their calls were made and paid for, and the batch's cost in Redis counts them,
 * but no collector was left to write them.
 */

/** How many events of the finished batch came after its last collected one. */
export async function lateEventCount(store: BatchStore, batchId: string): Promise<number> {
  const keys = store.keys(batchId);
  const [lastId, length] = await Promise.all([store.redis.hget(keys.checkpoint, 'last_id'), store.redis.xlen(keys.events)]);
  // The collector trims the stream to its last collected event (XTRIM MINID keeps that one).
  return lastId ? Math.max(0, length - 1) : length;
}

/**
 * Appends the late events' calls to costs.jsonl (their results are not taken: each row's result is
 * in the outputs already) and checkpoints them, having removed the report, which the caller writes
 * again from results.jsonl and costs.jsonl. Returns the calls added. costs.jsonl must hold at least
 * what was collected (the caller checked): anything past that, an append a crash cut short of its
 * checkpoint, is cut off first, as the collector does.
 */
export async function appendLateCalls(store: BatchStore, batchId: string, paths: OutputPaths): Promise<number> {
  const keys = store.keys(batchId);
  const checkpoint = await store.redis.hmget(keys.checkpoint, 'last_id', 'costs_bytes');
  let lastId = checkpoint[0] ?? '0-0';
  truncateSync(paths.costs, Number(checkpoint[1] ?? 0));
  await Promise.all([rm(paths.reportJson, { force: true }), rm(paths.reportMd, { force: true })]);
  let calls = 0;
  for (;;) {
    const entries = await readRowEvents(store.redis, keys, lastId, 1000, 0);
    if (entries.length === 0) break;
    const text = entries.map((entry) => entry.callsJsonl).join('');
    appendFileSync(paths.costs, text);
    calls += text.split('\n').length - 1;
    lastId = entries.at(-1)!.id;
    await store.redis.multi().hset(keys.checkpoint, { last_id: lastId, costs_bytes: statSync(paths.costs).size }).xtrim(keys.events, 'MINID', lastId).exec();
  }
  return calls;
}

/** "3 rows finished again after the outputs were written (...)": for `status`. */
export function lateCallsText(events: number): string {
  return `${events === 1 ? '1 row' : `${events} rows`} finished again after the outputs were written (a worker paused past queue.lock_ms while another did ${events === 1 ? 'it' : 'them'}): ${events === 1 ? 'its calls are' : 'their calls are'} counted in the cost here but not yet in costs.jsonl and the report`;
}
