import type { CallRecord, RowResult } from './records.ts';
import { ReportTally, type ReportBaseline, type ReportModels } from './report.ts';

/**
 * The report, tallied while the collector writes the rows, so that finishing a batch does not read
 * its files back. It holds only for a collection that saw every row once. One that resumed from a
 * checkpoint (the rows before it were tallied by a process that is gone) or met a row twice (a
 * re-run replaces the row's first result) gives it up, and the report is tallied from the final
 * files instead. Memory: one bit per row.
 */
export class CollectionTally {
  #tally: ReportTally | null;
  #seen = new Uint8Array(1024);

  constructor(baseline?: ReportBaseline, runStartedAt?: Date, models?: ReportModels, compared?: readonly string[]) {
    this.#tally = new ReportTally(baseline, runStartedAt, models, compared);
  }

  giveUp(): void {
    this.#tally = null;
  }

  /** One finished row: its result and its calls. */
  add(row: number, result: RowResult, calls: readonly CallRecord[]): void {
    const tally = this.#tally;
    if (!tally) return;
    if (this.#alreadySeen(row)) {
      this.giveUp();
      return;
    }
    tally.addResult(result);
    this.addCalls(calls);
  }

  /**
   * Calls that come without a result: a superseded job's (they are paid for, and the row's result
   * comes with its new job), or those of an event that names no row the collector could write.
   */
  addCalls(calls: readonly CallRecord[]): void {
    const tally = this.#tally;
    if (!tally) return;
    for (const call of calls) tally.addCall(call);
  }

  /** The tally when every row so far came exactly once, else null. */
  get complete(): ReportTally | null {
    return this.#tally;
  }

  #alreadySeen(row: number): boolean {
    const byte = row >>> 3;
    if (byte >= this.#seen.length) {
      const bigger = new Uint8Array(Math.max(byte + 1, this.#seen.length * 2));
      bigger.set(this.#seen);
      this.#seen = bigger;
    }
    const bit = 1 << (row & 7);
    const seen = ((this.#seen[byte] as number) & bit) !== 0;
    this.#seen[byte] = (this.#seen[byte] as number) | bit;
    return seen;
  }
}
