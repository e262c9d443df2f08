import { join } from 'node:path';

/** Where each output file of a batch lives inside its --out folder. */
export function outputPaths(outDir: string) {
  return {
    results: join(outDir, 'results.jsonl'),
    resultsCsv: join(outDir, 'results.csv'),
    /** A --compare batch's answers side by side, one line per record (compare-csv.ts). */
    compareCsv: join(outDir, 'compare.csv'),
    costs: join(outDir, 'costs.jsonl'),
    errors: join(outDir, 'errors.jsonl'),
    reportJson: join(outDir, 'report.json'),
    reportMd: join(outDir, 'report.md'),
    batchOutput: join(outDir, 'batch_output.jsonl'),
    batchErrors: join(outDir, 'batch_errors.jsonl'),
    /** Every result in arrival order, re-runs included; results.jsonl is made from it. */
    journal: join(outDir, '.results-journal.jsonl'),
    /** Every result as a results.csv record, in arrival order; results.csv is made from it. */
    csvJournal: join(outDir, '.results-csv-journal'),
    /** The id of the batch whose outputs the folder holds (output-dir.ts claimOutputDir). */
    owner: join(outDir, '.switchyard-batch'),
  };
}

export type OutputPaths = ReturnType<typeof outputPaths>;
