import type { Logger } from 'pino';

/**
 * Logs failed rows as warnings, but only the first few of each error code per batch: a batch whose
 * key was rejected would otherwise print one line per row over the progress display. Every failed
 * row is in results.jsonl, and the summary and report show each code's count and a message.
 */
export interface RowFailure {
  batchId: string;
  row: number;
  /** The row's id (its `id` field, else its number): named beside the number when it is another, which is what the file's user looks the row up by. */
  id?: string | undefined;
  code: string;
  attempts: number;
  message: string;
}

/** Lines per batch and code before the rest are only counted. */
export const ROW_FAILURES_LOGGED = 3;
/** A long-lived worker forgets old batches' counts past this many (batch, code) pairs. */
const MAX_TRACKED = 10_000;

export function createRowFailureLog(logger: Logger): (failure: RowFailure) => void {
  const seen = new Map<string, number>();
  return ({ batchId, row, id, code, attempts, message }) => {
    const key = `${batchId}\u0000${code}`;
    const count = (seen.get(key) ?? 0) + 1;
    if (seen.size >= MAX_TRACKED && !seen.has(key)) seen.clear();
    seen.set(key, count);
    if (count <= ROW_FAILURES_LOGGED) {
      logger.warn({ batch: batchId, row, ...(id !== undefined && id !== String(row) && { id }), code, attempts }, message);
    } else if (count === ROW_FAILURES_LOGGED + 1) {
      logger.warn({ batch: batchId, code }, `more rows of batch ${batchId} failed with ${code}; not logged one by one (each is in results.jsonl, the report counts them)`);
    }
  };
}
