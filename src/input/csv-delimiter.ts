/** The field separators a CSV header is tried with: Excel writes `;` where the decimal mark is a comma. */
export type CsvDelimiter = ',' | ';' | '\t';

const CANDIDATES: readonly CsvDelimiter[] = [',', ';', '\t'];

/**
 * The separator of a CSV file, from its header line: the candidate found most often outside quotes,
 * a comma when tied or when there is none (a one-column file). A header has no commas in its names
 * as a rule, so a `;` or tab file is told from a comma file that has them in its prompts.
 */
export function sniffCsvDelimiter(headerLine: string): CsvDelimiter {
  const counts = new Map<CsvDelimiter, number>(CANDIDATES.map((candidate) => [candidate, 0]));
  let quoted = false;
  for (const char of headerLine) {
    if (char === '"') quoted = !quoted;
    else if (!quoted && counts.has(char as CsvDelimiter)) counts.set(char as CsvDelimiter, counts.get(char as CsvDelimiter)! + 1);
  }
  let best: CsvDelimiter = ',';
  for (const candidate of CANDIDATES) if (counts.get(candidate)! > counts.get(best)!) best = candidate;
  return best;
}

/**
 * The separator named by Excel's `sep=;` first line (Excel reads the file with it and hides the
 * line): a CsvDelimiter, or the character it names when that is none of them; null when the line
 * is no such line.
 */
export function excelSeparator(line: string): CsvDelimiter | { unsupported: string } | null {
  const match = /^sep=(.) *$/i.exec(line);
  if (match === null) return null;
  const named = match[1]!;
  return (CANDIDATES as readonly string[]).includes(named) ? (named as CsvDelimiter) : { unsupported: named };
}

/** The separators by name, as messages say them: "separated by semicolons". */
export const DELIMITER_NAMES: Record<CsvDelimiter, string> = { ',': 'commas', ';': 'semicolons', '\t': 'tabs' };

/**
 * The first line of a file's opening bytes with anything on it but spaces and separators (no BOM,
 * no line ending): the header, or Excel's `sep=` line. The reader skips the lines before it as
 * blank, so the separator is not guessed from them (QA: a `;` file that started with an empty line
 * was read as commas).
 */
export function headerLine(opening: string): string {
  const text = opening.charCodeAt(0) === 0xfeff ? opening.slice(1) : opening;
  return text.split(/\r?\n/).find((line) => !isBlankLine(line)) ?? '';
}

/** A line of spaces and separators alone: no field on it has text. */
function isBlankLine(line: string): boolean {
  return /^[\s,;]*$/.test(line);
}
