import type { BatchMeta, BatchStore } from '../queue/batch-state.ts';
import { writeOpenAiBatchFiles } from './openai-batch-output.ts';
import { writeOrderedResults, type RowFilter } from './ordered-results.ts';
import type { OutputPaths } from './paths.ts';
import { readJsonl } from './read-jsonl.ts';
import type { CallRecord, RowResult } from './records.ts';
import { ReportTally, type Report, type ReportBaseline } from './report.ts';
import { writeResultsCsv } from './results-csv.ts';
import { writeReport } from './write-report.ts';

export interface FinalizeOptions {
  store: BatchStore;
  meta: BatchMeta;
  paths: OutputPaths;
  outDir: string;
  /** When this round of the batch started (the report's elapsed time). */
  startedAt: Date;
  baseline?: ReportBaseline | undefined;
  /** The report as tallied while collecting, when that collection saw every row exactly once. */
  collectedTally?: ReportTally | null | undefined;
}

/** Turns the collected journals into the batch's final files and report, and closes the batch. */
export async function finalizeBatch(options: FinalizeOptions): Promise<Report> {
  const { store, meta } = options;
  await store.update(meta.batch_id, { status: 'finalizing' });
  const { report, finishedAt } = await writeOutputs(options, () => 0);
  await closeBatch(store, meta.batch_id, report, finishedAt);
  return report;
}

async function closeBatch(store: BatchStore, batchId: string, report: Report, finishedAt: Date): Promise<void> {
  await store.update(batchId, {
    status: (report.errors.budget_exceeded ?? 0) > 0 ? 'budget_exceeded' : report.totals.failed > 0 ? 'completed_with_failures' : 'completed',
    finished_at: finishedAt.toISOString(),
  });
}

/**
 * A run stopped early (Ctrl-C, SIGTERM): the files and report for the rows finished so far, the
 * rest of the batch's `validRows` counted as not run (null while the file was not read to its end).
 * Counted from the rows written, so the two add up even when a row finished after the collector
 * stopped. The batch stays open: its resume writes every file again, whole.
 */
export async function writeOutputsSoFar(options: FinalizeOptions, validRows: number | null): Promise<Report> {
  const { report, finishedAt } = await writeOutputs({ ...options, collectedTally: null }, (written) => (validRows === null ? null : Math.max(0, validRows - written)));
  // The stop came as the last row finished: every row is written, and the batch ends as usual.
  if (report.totals.unfinished_rows === 0) await closeBatch(options.store, options.meta.batch_id, report, finishedAt);
  return report;
}

async function writeOutputs(options: FinalizeOptions, rowsLeft: (written: number) => number | null): Promise<{ report: Report; finishedAt: Date }> {
  const { store, meta, paths } = options;
  const keep = await notWithdrawn(store, meta.batch_id);
  writeOrderedResults(paths.journal, paths.results, keep);
  writeResultsCsv(paths.csvJournal, paths.resultsCsv, await store.metadataKeys(meta.batch_id), { separator: meta.csv_delimiter, bom: meta.csv_bom === true }, keep);
  if (meta.input_kind === 'openai-batch') await writeOpenAiBatchFiles(paths.results, paths.errors, options.outDir, meta.batch_id);
  // With rows withdrawn, the report comes from the files as written, which leave them out.
  const tally = (keep === undefined ? options.collectedTally : null) ?? (await tallyFromFiles(paths, options.baseline, options.startedAt));
  const finishedAt = new Date();
  const report = tally.build({ batchId: meta.batch_id, startedAt: options.startedAt, finishedAt }, meta.invalid_codes, null);
  report.totals.unfinished_rows = rowsLeft(report.totals.rows);
  writeReport(report, options.outDir);
  return { report, finishedAt };
}

/** Rows to write: all but those made invalid in the file since they had a result (withdraw-rows.ts). */
async function notWithdrawn(store: BatchStore, batchId: string): Promise<RowFilter | undefined> {
  const bits = await store.redis.getBuffer(store.keys(batchId).withdrawn);
  if (!bits || !bits.some((byte) => byte !== 0)) return undefined;
  // Redis bitmaps number bits from the most significant bit of each byte.
  return (row) => ((bits[row >> 3] ?? 0) & (0x80 >> (row & 7))) === 0;
}

/** The report from the final files: the results (newest of each row) and every call. */
async function tallyFromFiles(paths: OutputPaths, baseline: ReportBaseline | undefined, runStartedAt: Date): Promise<ReportTally> {
  const tally = new ReportTally(baseline, runStartedAt);
  for await (const result of readJsonl<RowResult>(paths.results)) tally.addResult(result);
  for await (const call of readJsonl<CallRecord>(paths.costs)) tally.addCall(call);
  return tally;
}
