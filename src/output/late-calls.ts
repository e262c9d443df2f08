import { appendFileSync, statSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import type { BatchStore } from '../queue/batch-state.ts';
import type { OutputPaths } from './paths.ts';
import { readRowEvents } from './row-events.ts';

/**
 * Rows' events published after a batch's outputs were written: a worker paused past
 * `queue.lock_ms` (a laptop asleep, SIGSTOP) whose rows another worker did again meanwhile, and that
 * then finished them. Their calls were made and paid for, and the batch's cost in Redis counts them,
 * but no collector was left to write them. At most this many are counted (for `status`).
 */
const COUNT_AT_MOST = 10_000;

/** How many events of the finished batch came after its last collected one. */
export async function lateEventCount(store: BatchStore, batchId: string): Promise<number> {
  const keys = store.keys(batchId);
  const lastId = await store.redis.hget(keys.checkpoint, 'last_id');
  // Exclusive start: the collected stream keeps its last entry (XTRIM MINID).
  const entries = await store.redis.xrange(keys.events, lastId ? `(${lastId}` : '-', '+', 'COUNT', COUNT_AT_MOST);
  return entries.length;
}

/**
 * Appends the late events' calls to costs.jsonl (their results are not taken: each row's result is
 * in the outputs already) and checkpoints them, then removes the report, which the caller writes
 * again from results.jsonl and costs.jsonl. Returns the calls added. costs.jsonl must be whole
 * (the caller checked it against the checkpoint).
 */
export async function appendLateCalls(store: BatchStore, batchId: string, paths: OutputPaths): Promise<number> {
  const keys = store.keys(batchId);
  let lastId = (await store.redis.hget(keys.checkpoint, 'last_id')) ?? '0-0';
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
  if (calls > 0) await Promise.all([rm(paths.reportJson, { force: true }), rm(paths.reportMd, { force: true })]);
  return calls;
}

/** "3 calls that finished after the outputs were written (...)": for `status` and `collect`. */
export function lateCallsText(events: number): string {
  return `${events === 1 ? '1 row' : `${events} rows`} finished again after the outputs were written (a worker paused past queue.lock_ms while another did ${events === 1 ? 'it' : 'them'}): ${events === 1 ? 'its calls are' : 'their calls are'} counted in the cost here but not yet in costs.jsonl and the report`;
}
