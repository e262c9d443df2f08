/**
 * What finishes a batch a budget stopped, in the words of whoever runs it: a CLI run is told to
 * resume it with a higher cap, an HTTP API client to post its file again (docs/api.md), since it
 * may have no shell on the server and the month's cap is in the server's config. Said by the row
 * a budget refused (redis-row-gate.ts), the warning of a run that raises no cap (run-settings.ts,
 * api-terms.ts) and `status` (status.ts), so that they cannot drift apart.
 */

/** A resume that raises no cap is told, when the month's cap stopped the batch. */
export const RAISE_MONTH_CAP = 'Run it with a config with a higher budget.monthly_usd (or next month) to finish it.';
/** A resume that raises no cap is told, when a budget stopped the batch (which one may be unknown). */
export const RAISE_A_BUDGET = "Give a higher --budget (or a config with a higher budget.monthly_usd, if the month's cap stopped it) to finish it.";

/** What the server needs when the month's cap stopped a posted batch: its operator's, not its client's, to give. */
export const SERVER_MONTH_CAP = 'the server needs a config with a higher budget.monthly_usd, or the next month';

/**
 * "post the file again with batch_id=b1 and a higher budget (its query parameter, in USD) to
 * finish it": what finishes a posted batch that `scope`'s budget stopped; "with the same batch_id"
 * when the id is not at hand.
 */
export function postAgainWayOut(scope: 'batch' | 'month', batchId?: string): string {
  const again = `post the file again with ${batchId === undefined ? 'the same batch_id' : `batch_id=${batchId}`}`;
  return scope === 'batch' ? `${again} and a higher budget (its query parameter, in USD) to finish it` : `${SERVER_MONTH_CAP}; then ${again} to finish it`;
}
