import type { SwitchyardConfig } from '../config/schema.ts';
import type { InputRow } from '../input/row.ts';
import type { AbArm } from '../routing/ab-split.ts';
import { AUTO_ROUTE } from '../routing/pinned-model.ts';
import { rowTarget } from '../routing/row-target.ts';

/**
 * What the batch's rows go to before routing (a row's own model, its A/B arm, the pinned model,
 * or `auto` for the rows routed by task type), gathered as the file is read. A row's own `model`
 * is known only once the row is read: told before, the judge's note named routes no row took (QA:
 * examples/eval.csv, each row naming its model, heard that the judge "may answer rows here too").
 */
export interface AnsweringModels {
  see(row: InputRow): void;
  /** The targets seen so far: once the file is read, all of them (none for a file without a valid row). */
  readonly names: ReadonlySet<string>;
}

export function createAnsweringModels(config: SwitchyardConfig, abSplit: readonly AbArm[] | undefined, pinned: string | undefined): AnsweringModels {
  const names = new Set<string>();
  return {
    see: (row) => void names.add(rowTarget(row, config, abSplit, pinned).name ?? AUTO_ROUTE),
    names,
  };
}
