import { existsSync } from 'node:fs';
import { freshProgress } from '../execution/row-progress.ts';
import type { RowResult } from '../output/records.ts';
import { readJsonl } from '../output/read-jsonl.ts';
import type { BatchStore } from '../queue/batch-state.ts';
import { carryRows } from '../queue/carried-rows.ts';

/** Rows carried per round trip. */
const CHUNK = 1000;

/**
 * A resume with a judge that the batch's answers were not scored by (one added, or another one):
 * each succeeded row's answer, read from the batch's results.jsonl, is carried (carried-rows.ts)
 * as an answer waiting for its judge, so the producer queues the row again for the judge alone
 * and its answer is not paid for again. A row edited in the file since runs whole, as any edited
 * row: its carried answer is left for the fingerprint it had. `all`: rows this judge model scored
 * too (its instructions changed). Returns the rows carried.
 */
export async function carryAnswersForJudge(store: BatchStore, batchId: string, resultsPath: string, judgeModel: string, all = false): Promise<number> {
  if (!existsSync(resultsPath)) return 0;
  const keys = store.keys(batchId);
  let carried = 0;
  let chunk: RowResult[] = [];
  const carry = async () => {
    if (chunk.length === 0) return;
    // results.jsonl is in row order: one read of the fingerprints the chunk's rows were answered with.
    const first = chunk[0]!.row;
    const recorded = await store.redis.getrangeBuffer(keys.fingerprints, first * 4, (chunk.at(-1)!.row + 1) * 4 - 1);
    const rows = chunk.flatMap((answer) => {
      const offset = (answer.row - first) * 4;
      if (offset < 0 || offset + 4 > recorded.length) return [];
      const { judge: _earlier, ...unjudged } = answer;
      return [{ row: answer.row, fingerprint: recorded.readUInt32BE(offset), progress: { ...freshProgress(), judging: { answer: unjudged, progress: freshProgress() } } }];
    });
    await carryRows(store.redis, keys, rows);
    carried += rows.length;
    chunk = [];
  };
  for await (const result of readJsonl<RowResult>(resultsPath)) {
    // A line edited by hand into something else is no answer to carry: its row runs whole instead.
    if (!Number.isSafeInteger(result.row) || result.row < 1 || typeof result.output !== 'string') continue;
    if (result.status !== 'succeeded' || (result.judge?.model === judgeModel && !all)) continue;
    chunk.push(result);
    if (chunk.length >= CHUNK) await carry();
  }
  await carry();
  return carried;
}
