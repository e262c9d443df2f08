// A re-run's rows that the file no longer holds as valid rows: what an earlier run left for them is withdrawn.
import type { BatchStore } from './batch-state.ts';
import { runScript, type LuaScript } from './lua-script.ts';

/** Rows withdrawn per script call when a file got shorter. */
const WITHDRAW_CHUNK = 10_000;

/** Invalid rows gathered before they are withdrawn together (the producer also withdraws them before each chunk). */
const INVALID_ROWS_PER_WITHDRAWAL = 1000;

/** The rows found invalid as the file is read, gathered to be withdrawn a pipeline at a time. */
export interface InvalidRowsToWithdraw {
  /** Gathers a row invalid now (a new batch has nothing to withdraw); withdraws them once there are enough. */
  add(row: number): Promise<void>;
  /** Withdraws the rows gathered so far. */
  withdraw(): Promise<void>;
}

export function invalidRowsToWithdraw(store: BatchStore, batchId: string, resume: boolean): InvalidRowsToWithdraw {
  // A re-run: rows invalid now may have had a result before, which the outputs must leave out.
  let invalidNow: number[] = [];
  const withdraw = async () => {
    if (invalidNow.length === 0) return;
    const rows = invalidNow;
    invalidNow = [];
    await withdrawRows(store, batchId, rows);
  };
  return {
    async add(row) {
      if (resume) invalidNow.push(row);
      if (invalidNow.length >= INVALID_ROWS_PER_WITHDRAWAL) await withdraw();
    },
    withdraw,
  };
}

/**
 * Rows invalid in the file now, or past its end: a result they had from an earlier run is left out
 * of the outputs and they no longer count as finished. One that had succeeded keeps its fingerprint
 * and is set aside: given back unchanged (a resume with the whole file again), its answer is kept
 * instead of paid for again (producer.ts). Any other forgets its fingerprint: fixed, it runs again.
 *
 * KEYS: withdrawn, finished, succeeded, fingerprints, set_aside. ARGV: the rows.
 */
const WITHDRAW_ROWS: LuaScript = {
  name: 'withdraw-rows',
  numberOfKeys: 5,
  lua: `
for i = 1, #ARGV do
  local row = tonumber(ARGV[i])
  local succeeded = redis.call('GETBIT', KEYS[3], row)
  redis.call('SETBIT', KEYS[1], row, 1)
  redis.call('SETBIT', KEYS[2], row, 0)
  redis.call('SETBIT', KEYS[3], row, 0)
  redis.call('SETBIT', KEYS[5], row, succeeded)
  if succeeded == 0 then redis.call('SETRANGE', KEYS[4], row * 4, '\\0\\0\\0\\0') end
end
return #ARGV
`,
};

async function withdrawRows(store: BatchStore, batchId: string, rows: readonly number[]): Promise<void> {
  const keys = store.keys(batchId);
  await runScript(store.redis, WITHDRAW_ROWS, [keys.withdrawn, keys.finished, keys.succeeded, keys.fingerprints, keys.setAside], rows);
}

/**
 * A file that got shorter since the last run: the rows past its end are withdrawn like invalid
 * ones (left out of the outputs, no longer finished). Their finished bits would otherwise count
 * toward the new, smaller total, and the collector would end before the rows that run again had
 * finished. Every enqueued row has its fingerprint slot, so their length bounds the rows there were.
 * Returns how many of them had finished.
 */
export async function withdrawRowsPast(store: BatchStore, batchId: string, lastRow: number): Promise<number> {
  const keys = store.keys(batchId);
  const recordedRows = Math.floor((await store.redis.strlen(keys.fingerprints)) / 4);
  if (recordedRows <= lastRow + 1) return 0;
  const goneRows = recordedRows - lastRow - 1;
  const finished = await store.finishedRows(batchId, lastRow + 1, goneRows);
  for (let from = lastRow + 1; from < recordedRows; from += WITHDRAW_CHUNK) {
    await withdrawRows(store, batchId, Array.from({ length: Math.min(WITHDRAW_CHUNK, recordedRows - from) }, (_, i) => from + i));
  }
  return finished.size;
}
