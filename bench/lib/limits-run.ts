import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { PRODUCT_ROOT, ROOT } from './paths.ts';
import type { UsageRecord } from './usage-record.ts';

/** Small pieces shared by the rate-limit benchmarks (limits-rpm, limits-tpm, limits-overhead). */

export const cpuMs = (usage: UsageRecord | null | undefined) => (usage ? (usage.userCPUTime + usage.systemCPUTime) / 1000 : Number.NaN);

/** Which product is measured, for the printout: the working tree or a `--snapshot` folder. */
export function productLine(): string {
  return PRODUCT_ROOT === ROOT ? 'code: working tree' : `code: snapshot ${path.relative(ROOT, PRODUCT_ROOT)}`;
}

/** Writes `switchyard.yaml` lines to `dir/name` and returns the path. */
export async function writeYaml(dir: string, name: string, lines: string[]): Promise<string> {
  const file = path.join(dir, name);
  await writeFile(file, `${lines.join('\n')}\n`);
  return file;
}

/** report.json's `call_errors` (error code -> calls), or null when there is no report. */
export async function callErrors(outDir: string): Promise<Record<string, number> | null> {
  try {
    const report = JSON.parse(await readFile(path.join(outDir, 'report.json'), 'utf8')) as { call_errors?: Record<string, number> };
    return report.call_errors ?? {};
  } catch {
    return null;
  }
}

/** The baseline's output: how many rows it answered, lost to a 429, or lost to anything else. */
export async function baselineLosses(outFile: string): Promise<{ rows: number; answered: number; lost429: number; lostOther: number; otherSample: string | null }> {
  const result = { rows: 0, answered: 0, lost429: 0, lostOther: 0, otherSample: null as string | null };
  let text = '';
  try {
    text = await readFile(outFile, 'utf8');
  } catch {
    return result;
  }
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    result.rows++;
    const record = JSON.parse(line) as { error?: string };
    if (record.error === undefined) result.answered++;
    else if (/^429\b/.test(record.error)) result.lost429++;
    else {
      result.lostOther++;
      result.otherSample ??= record.error;
    }
  }
  return result;
}

/** A time limit for a run that should take `idealMs` at the limit: generous, but bounded. */
export function runTimeLimitMs(idealMs: number): number {
  return Math.round(Math.max(180_000, idealMs * 1.6 + 60_000));
}
