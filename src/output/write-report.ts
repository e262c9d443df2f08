import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { renderReportMarkdown } from './report-markdown.ts';
import type { Report } from './report.ts';

export interface ReportPaths {
  jsonPath: string;
  markdownPath: string;
}

/** Writes report.json (pretty-printed) and report.md into outDir. */
export async function writeReport(report: Report, outDir: string): Promise<ReportPaths> {
  const jsonPath = join(outDir, 'report.json');
  const markdownPath = join(outDir, 'report.md');
  await writeFile(jsonPath, `${JSON.stringify(report, null, 2)}\n`, 'utf8');
  await writeFile(markdownPath, renderReportMarkdown(report), 'utf8');
  return { jsonPath, markdownPath };
}
