import type { BatchMeta, BatchStore } from '../queue/batch-state.ts';
import { writeOpenAiBatchFiles } from './openai-batch-output.ts';
import { writeOrderedResults } from './ordered-results.ts';
import type { OutputPaths } from './paths.ts';
import { readJsonl } from './read-jsonl.ts';
import type { CallRecord } from './records.ts';
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
}

/** Turns the collected journal into the batch's final files and report, and closes the batch. */
export async function finalizeBatch(options: FinalizeOptions): Promise<Report> {
  const { store, meta, paths } = options;
  await store.update(meta.batch_id, { status: 'finalizing' });
  writeOrderedResults(paths.journal, paths.results);
  const tally = new ReportTally(options.baseline);
  const metadataKeys = await store.metadataKeys(meta.batch_id);
  await writeResultsCsv(paths.results, paths.resultsCsv, metadataKeys, (result) => tally.addResult(result));
  if (meta.input_kind === 'openai-batch') await writeOpenAiBatchFiles(paths.results, options.outDir, meta.batch_id);
  for await (const call of readJsonl<CallRecord>(paths.costs)) tally.addCall(call);
  const finishedAt = new Date();
  const report = tally.build({ batchId: meta.batch_id, startedAt: options.startedAt, finishedAt });
  await writeReport(report, options.outDir);
  await store.update(meta.batch_id, {
    status: (report.errors.budget_exceeded ?? 0) > 0 ? 'budget_exceeded' : report.totals.failed > 0 ? 'completed_with_failures' : 'completed',
    finished_at: finishedAt.toISOString(),
  });
  return report;
}
