import { existsSync, writeFileSync } from 'node:fs';
import { basename } from 'node:path';
import type { BatchMeta, BatchStore } from '../queue/batch-state.ts';
import { whileRedisRefuses, type RefusalWait } from '../queue/redis-outage.ts';
import { LostOutputError, rebuildCsvJournal, shortCollectedFiles, unrecoverable, type ShortFile } from './collected-files.ts';
import { writeOpenAiBatchFiles } from './openai-batch-output.ts';
import { writeOrderedResults, type RowFilter } from './ordered-results.ts';
import type { OutputPaths } from './paths.ts';
import { readJsonl } from './read-jsonl.ts';
import type { CallRecord, RowResult } from './records.ts';
import { ReportTally, type ReportBaseline, type ReportModels } from './report.ts';
import type { LongCells, Report } from './report-json.ts';
import { writeResultsCsv } from './results-csv.ts';
import { writeCompareCsv } from './compare-csv.ts';
import { readComparedPrompts } from './compare-prompts.ts';
import { answerableNames } from '../config/schema.ts';
import { renderReportMarkdown, type ResumeHint } from './report-markdown.ts';
import { readWrittenReport, writeReport } from './write-report.ts';

export interface FinalizeOptions {
  store: BatchStore;
  meta: BatchMeta;
  paths: OutputPaths;
  outDir: string;
  /** When this round of the batch started (the report's elapsed time). */
  startedAt: Date;
  baseline?: ReportBaseline | undefined;
  /** Each model's max_output_tokens and price (reportModels), for a report tallied from the files. */
  reportModels?: ReportModels | undefined;
  /** The report as tallied while collecting, when that collection saw every row exactly once. */
  collectedTally?: ReportTally | null | undefined;
  /** How report.md says to run the rest: `switchyard run --resume` (default), or posting the file again (a batch posted to the API). */
  resumeHint?: ResumeHint | undefined;
  /**
   * The batch ends when its last row finished, not now: a detached batch collected after its workers
   * finished it (the next morning, say) would otherwise report the wait as its run time.
   */
  endsAtLastRow?: boolean | undefined;
  /** A full Redis refusing the batch's closing status: waited out (every output is written by then), not a crash at the last step. */
  refusals?: RefusalWait | undefined;
  /** The outputs so far are written because the batch was cancelled: the report says so, rather than that its run stopped early. */
  cancelled?: boolean | undefined;
}

/** Turns the collected journals into the batch's final files and report, and closes the batch. */
export async function finalizeBatch(options: FinalizeOptions): Promise<Report> {
  const { store, meta, refusals } = options;
  await whileRedisRefuses('finishing the batch', () => store.update(meta.batch_id, { status: 'finalizing' }), refusals);
  const { report, finishedAt } = await writeOutputs(options, () => 0);
  await whileRedisRefuses('finishing the batch', () => closeBatch(store, meta, report, finishedAt), refusals);
  return report;
}

/** `meta` as read once every row had finished: with the month's refusals its rows' gates noted. */
async function closeBatch(store: BatchStore, meta: BatchMeta, report: Report, finishedAt: Date): Promise<void> {
  const overBudget = (report.errors.budget_exceeded ?? 0) > 0;
  await store.update(meta.batch_id, {
    status: overBudget ? 'budget_exceeded' : report.totals.failed > 0 ? 'completed_with_failures' : 'completed',
    // Which cap to raise: a resume and `status` say so.
    ...(overBudget && { budget_stop: budgetStop(meta) }),
    finished_at: finishedAt.toISOString(),
  });
}

/**
 * The cap a batch whose rows ended budget_exceeded met: the month's when it refused any of this run's
 * calls (raising the batch's alone would not finish the batch), else the batch's own.
 */
export function budgetStop(meta: Pick<BatchMeta, 'month_cap_refused'>): 'batch' | 'month' {
  return meta.month_cap_refused === true ? 'month' : 'batch';
}

/**
 * What the batch's rows were sent by that the tally cannot know: its A/B split, and the splits its
 * rows were answered under before a resume changed it; or the models it compares, over how many prompts.
 */
function addModelChoices(report: Report, meta: Pick<BatchMeta, 'ab_split' | 'ab_splits_before' | 'compare' | 'compare_prompts'>): void {
  if (meta.ab_split) report.ab_split = meta.ab_split;
  if (meta.ab_splits_before) report.ab_splits_before = meta.ab_splits_before;
  if (meta.compare) report.compare = { models: meta.compare, prompts: meta.compare_prompts ?? null };
}

/**
 * A run stopped early (Ctrl-C, SIGTERM): the files and report for the rows finished so far, the
 * rest of the batch's `validRows` counted as not run (null while the file was not read to its end).
 * Counted from the rows written, so the two add up even when a row finished after the collector
 * stopped. The batch stays open: its resume writes every file again, whole.
 */
export async function writeOutputsSoFar(options: FinalizeOptions, validRows: number | null): Promise<Report> {
  // A row a resume queued for its judge alone has its earlier answer written, but is not finished
  // until scored: counted from the finished bits, such rows keep the batch open for its resume too.
  const finishedBits = validRows === null ? 0 : ((await options.store.progress(options.meta.batch_id))?.finished ?? 0);
  const { report, finishedAt } = await writeOutputs({ ...options, collectedTally: null }, (written) => (validRows === null ? null : Math.max(0, validRows - written, validRows - finishedBits)));
  // The stop came as the last row finished: every row is written, and the batch ends as usual.
  if (report.totals.unfinished_rows === 0) await whileRedisRefuses('finishing the batch', () => closeBatch(options.store, options.meta, report, finishedAt), options.refusals);
  return report;
}

async function writeOutputs(options: FinalizeOptions, rowsLeft: (written: number) => number | null): Promise<{ report: Report; finishedAt: Date }> {
  const { store, meta, paths } = options;
  // The folder deleted, or a collected file cut, while the batch ran: what is lost and the ways on
  // (exit 2), not a stack trace; a CSV journal alone is made again from the results journal.
  const checkpointKey = store.keys(meta.batch_id).checkpoint;
  const checkpoint = await store.redis.hgetall(checkpointKey);
  const short = await shortCollectedFiles(paths, checkpoint);
  const lost = unrecoverable(short);
  if (lost.length > 0) throw new LostOutputError(meta, lost, `switchyard run --resume ${meta.batch_id}`);
  if (short.length > 0) await rebuildCsvJournal(store.redis, checkpointKey, paths, Number(checkpoint.journal_bytes ?? 0), await store.metadataKeys(meta.batch_id), meta.csv_delimiter);
  const keep = await notWithdrawn(store, meta.batch_id);
  writeOrderedResults(paths.journal, paths.results, keep);
  writeResultsCsv(paths.csvJournal, paths.resultsCsv, await store.metadataKeys(meta.batch_id), { separator: meta.csv_delimiter, bom: meta.csv_bom === true }, keep);
  const longPrompts = meta.compare ? await writeComparison(store, meta, meta.compare, paths) : null;
  // Kept for a report written again from the files, which cannot count them without reading the input file.
  if (meta.compare) await store.update(meta.batch_id, { compare_long_prompts: longPrompts });
  if (meta.input_kind === 'openai-batch') await writeOpenAiBatchFiles(paths.results, paths.errors, options.outDir, meta.batch_id);
  // With rows withdrawn, the report comes from the files as written, which leave them out.
  const tally = (keep === undefined ? options.collectedTally : null) ?? (await tallyFromFiles(paths, options.baseline, options.startedAt, options.reportModels, meta.compare));
  const now = new Date();
  const lastRow = options.endsAtLastRow ? tally.lastCompletedAt : null;
  const finishedAt = lastRow !== null && lastRow < now && lastRow > options.startedAt ? lastRow : now;
  const report = tally.build({ batchId: meta.batch_id, startedAt: options.startedAt, finishedAt }, meta.invalid_codes, null);
  report.totals.unfinished_rows = rowsLeft(report.totals.rows);
  // A cancel that came as the last row finished left nothing out: the batch simply ended.
  if (options.cancelled && report.totals.unfinished_rows !== 0) report.cancelled = true;
  addModelChoices(report, meta);
  if (report.compare && longPrompts) report.compare.long_prompts = longPrompts;
  writeReport(report, options.outDir, options.resumeHint);
  return { report, finishedAt };
}

/**
 * compare.csv from results.jsonl and the input file's prompts, with a score column per model when
 * the batch has a judge. Returns its prompts too long for an Excel cell (null when none).
 */
async function writeComparison(store: BatchStore, meta: BatchMeta, models: readonly string[], paths: OutputPaths): Promise<LongCells | null> {
  const config = (await store.loadConfig(meta.batch_id))?.config;
  const prompts = readComparedPrompts({
    path: meta.input,
    // As the run read the file: a record naming a model the config lacks is no row there either.
    rules: { promptColumn: meta.prompt_column, knownModels: new Set(config ? answerableNames(config) : models) },
    fingerprintIds: meta.fingerprint_ids === true,
    redis: store.redis,
    fingerprintsKey: store.keys(meta.batch_id).fingerprints,
  });
  const written = await writeCompareCsv(paths.results, paths.compareCsv, models, config?.judge !== undefined, await store.metadataKeys(meta.batch_id), { separator: meta.csv_delimiter, bom: meta.csv_bom === true }, prompts);
  return written.longPrompts;
}

/** Rows to write: all but those made invalid in the file since they had a result (withdraw-rows.ts). */
async function notWithdrawn(store: BatchStore, batchId: string): Promise<RowFilter | undefined> {
  const bits = await store.redis.getBuffer(store.keys(batchId).withdrawn);
  if (!bits || !bits.some((byte) => byte !== 0)) return undefined;
  // Redis bitmaps number bits from the most significant bit of each byte.
  return (row) => ((bits[row >> 3] ?? 0) & (0x80 >> (row & 7))) === 0;
}

/** The report from the final files: the results (newest of each row) and every call. */
async function tallyFromFiles(paths: OutputPaths, baseline: ReportBaseline | undefined, runStartedAt: Date, models: ReportModels | undefined, compared: readonly string[] | undefined): Promise<ReportTally> {
  const tally = new ReportTally(baseline, runStartedAt, models, compared);
  for await (const result of readJsonl<RowResult>(paths.results)) tally.addResult(result);
  for await (const call of readJsonl<CallRecord>(paths.costs)) tally.addCall(call);
  return tally;
}

/** What `rewriteMissingOutputs` found: the files it wrote again, and those it could not. */
export interface MissingOutputs {
  /** Output files that were missing and are written again (names in the folder). */
  rewritten: string[];
  /** Collected files shorter than the checkpoint that cannot be made again (collected-files.ts). */
  lost: ShortFile[];
  /** Missing files that only a resume writes again, each with why. */
  notes: string[];
}

/**
 * A finished batch's outputs checked, and those missing written again from what they come from:
 * the CSV journal from the results journal, results.jsonl and results.csv from the journals, the
 * OpenAI Batch files from results.jsonl, the report from results.jsonl and costs.jsonl (timed as
 * its run was), report.md from report.json, and an empty errors.jsonl when no row was invalid.
 * The batch stays as it is in Redis. The caller holds its lease.
 */
export async function rewriteMissingOutputs(options: Omit<FinalizeOptions, 'collectedTally' | 'startedAt'>): Promise<MissingOutputs> {
  const { store, meta, paths } = options;
  // Before anything is written: a report.json that is not the batch's stops it, saying what to do.
  const written = await readWrittenReport(options.outDir, meta.batch_id);
  const checkpointKey = store.keys(meta.batch_id).checkpoint;
  const checkpoint = await store.redis.hgetall(checkpointKey);
  const short = await shortCollectedFiles(paths, checkpoint);
  const lost = unrecoverable(short);
  const journalWhole = !lost.some((s) => s.file === 'journal');
  const costsWhole = !lost.some((s) => s.file === 'costs');
  const rewritten: string[] = [];
  const notes: string[] = [];
  const missing = (path: string) => !existsSync(path);
  const wrote = (path: string) => rewritten.push(basename(path));
  // Missing, but its checkpoint has nothing of it (or there is none: no row ever came): it held nothing.
  for (const path of [paths.journal, paths.csvJournal, paths.costs]) {
    if (missing(path) && !short.some((s) => s.path === path)) {
      writeFileSync(path, '');
      wrote(path);
    }
  }
  if (short.some((s) => s.file === 'csvJournal') && journalWhole) {
    await rebuildCsvJournal(store.redis, checkpointKey, paths, Number(checkpoint.journal_bytes ?? 0), await store.metadataKeys(meta.batch_id), meta.csv_delimiter);
    wrote(paths.csvJournal);
  }
  const keep = await notWithdrawn(store, meta.batch_id);
  if (journalWhole && missing(paths.results)) {
    writeOrderedResults(paths.journal, paths.results, keep);
    wrote(paths.results);
  }
  if (journalWhole && missing(paths.resultsCsv)) {
    writeResultsCsv(paths.csvJournal, paths.resultsCsv, await store.metadataKeys(meta.batch_id), { separator: meta.csv_delimiter, bom: meta.csv_bom === true }, keep);
    wrote(paths.resultsCsv);
  }
  let longPrompts = meta.compare_long_prompts ?? null;
  if (meta.compare && !missing(paths.results) && missing(paths.compareCsv)) {
    longPrompts = await writeComparison(store, meta, meta.compare, paths);
    wrote(paths.compareCsv);
  }
  if (missing(paths.errors)) {
    if (meta.invalid_rows === 0) {
      writeFileSync(paths.errors, '');
      wrote(paths.errors);
    } else {
      notes.push(`${paths.errors} is missing: it listed the batch's ${meta.invalid_rows} invalid input rows, and only reading the input file makes it again: \`switchyard run --resume ${meta.batch_id}\` does (rows that succeeded are not run again).`);
    }
  }
  if (meta.input_kind === 'openai-batch' && !missing(paths.results) && (missing(paths.batchOutput) || missing(paths.batchErrors))) {
    await writeOpenAiBatchFiles(paths.results, paths.errors, options.outDir, meta.batch_id);
    rewritten.push(basename(paths.batchOutput), basename(paths.batchErrors));
  }
  if (!written && costsWhole && !missing(paths.results)) {
    // Timed as the run that wrote it was: from its start to the batch's end.
    const startedAt = new Date(meta.started_at ?? meta.created_at);
    const tally = await tallyFromFiles(paths, options.baseline, startedAt, options.reportModels, meta.compare);
    const report = tally.build({ batchId: meta.batch_id, startedAt, finishedAt: new Date(meta.finished_at ?? Date.now()) }, meta.invalid_codes, 0);
    // A cancelled batch ended with rows not run (null: its file was not read to the end), as its run's report said (QA review: it read none).
    if (meta.status === 'cancelled') {
      report.totals.unfinished_rows = meta.total === undefined ? null : Math.max(0, meta.total - report.totals.rows);
      if (report.totals.unfinished_rows !== 0) report.cancelled = true;
    }
    addModelChoices(report, meta); // as the run wrote it
    if (report.compare && longPrompts) report.compare.long_prompts = longPrompts;
    writeReport(report, options.outDir, meta.served ? 'api' : 'cli');
    rewritten.push(basename(paths.reportJson), basename(paths.reportMd));
  } else if (written && missing(paths.reportMd)) {
    writeFileSync(paths.reportMd, renderReportMarkdown(written), 'utf8');
    wrote(paths.reportMd);
  }
  return { rewritten, lost, notes };
}
