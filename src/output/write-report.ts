import { writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { issueText } from '../config/issue-text.ts';
import { UsageError } from '../errors.ts';
import { renderReportMarkdown, type ResumeHint } from './report-markdown.ts';
import type { Report } from './report-json.ts';

export interface ReportPaths {
  jsonPath: string;
  markdownPath: string;
}

/**
 * Writes report.json (pretty-printed) and report.md into outDir. Synchronously: they are a few KB,
 * written once while the user waits for the summary, and each async write would cost three trips
 * through libuv's thread pool (4-14 ms in all, measured).
 */
export function writeReport(report: Report, outDir: string, hint: ResumeHint = 'cli'): ReportPaths {
  const jsonPath = join(outDir, 'report.json');
  const markdownPath = join(outDir, 'report.md');
  writeFileSync(jsonPath, `${JSON.stringify(report, null, 2)}\n`, 'utf8');
  writeFileSync(markdownPath, renderReportMarkdown(report, hint), 'utf8');
  return { jsonPath, markdownPath };
}

/** report.json is there but is not the batch's report as this version writes it (exit 2). */
class UnreadableReportError extends UsageError {
  override name = 'UnreadableReportError';
  constructor(path: string, batchId: string, problem: string) {
    super(
      `${path} is not batch ${batchId}'s report: ${problem}. ` +
        `Delete it (or move it away, if it is another tool's) and run \`switchyard collect ${batchId}\` again: it writes report.json and report.md again from results.jsonl and costs.jsonl.`,
    );
  }
}

/** report.json's text, or null when the folder has none. */
async function reportText(path: string, batchId: string): Promise<string | null> {
  try {
    return await readFile(path, 'utf8');
  } catch (error) {
    if (error instanceof Error && 'code' in error && error.code === 'ENOENT') return null;
    throw new UnreadableReportError(path, batchId, `it cannot be read (${error instanceof Error ? error.message : String(error)})`);
  }
}

/**
 * The report.json batch `batchId` left in outDir, checked against the report's shape; null when
 * there is none. One that is not JSON, not a report (edited, cut short, another tool's) or another
 * batch's throws UnreadableReportError, saying which file, what is wrong and what to do.
 */
export async function readWrittenReport(outDir: string, batchId: string): Promise<Report | null> {
  const path = join(outDir, 'report.json');
  const text = await reportText(path, batchId);
  if (text === null) return null;
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    throw new UnreadableReportError(path, batchId, `it is not JSON (${error instanceof Error ? error.message : String(error)})`);
  }
  // Imported here: building the schema costs start-up time that a run which never reads a report back need not pay.
  const { reportSchema } = await import('./report-schema.ts');
  const parsed = reportSchema.safeParse(raw);
  if (!parsed.success) {
    const [first, ...more] = parsed.error.issues;
    const where = first ? `${first.path.map(String).join('.') || '(top level)'}: ${issueText(first)}` : 'not a report';
    throw new UnreadableReportError(path, batchId, `it does not hold what a report does (${where}${more.length > 0 ? `, and ${more.length} more` : ''})`);
  }
  if (parsed.data.batch_id !== batchId) throw new UnreadableReportError(path, batchId, `it is the report of batch ${parsed.data.batch_id}`);
  return parsed.data;
}

/** The batch_id of the report.json in dir, whatever else it holds: whose outputs an unmarked folder has (output-dir.ts). */
export async function writtenReportBatchId(dir: string): Promise<string | undefined> {
  const text = await readFile(join(dir, 'report.json'), 'utf8').catch(() => null);
  if (text === null) return undefined;
  try {
    const parsed = z.object({ batch_id: z.string() }).safeParse(JSON.parse(text));
    return parsed.success ? parsed.data.batch_id : undefined;
  } catch {
    return undefined; // not JSON: no batch's
  }
}
