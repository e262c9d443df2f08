import type { EnsembleConfig, SwitchyardConfig } from '../config/schema.ts';
import { abArmFor, armTarget, type AbArm } from './ab-split.ts';

export interface NamedEnsemble {
  name: string;
  config: EnsembleConfig;
}

/**
 * What a row goes to before any routing: its own model, else its A/B arm (`--ab`), else the batch's
 * pinned model; and the ensemble that name stands for, when it is one. No name: the row is routed
 * by task type (the arm `auto` among them). Shared by the workers and `--dry-run`, so both send a
 * row to the same place.
 */
export function rowTarget(row: { id: string; model?: string | undefined }, config: SwitchyardConfig, abSplit: readonly AbArm[] | undefined, pinned: string | undefined): { name: string | undefined; abArm: string | undefined; ensemble: NamedEnsemble | null } {
  const abArm = row.model === undefined && abSplit ? abArmFor(row.id, abSplit) : undefined;
  const name = row.model ?? (abArm === undefined ? pinned : armTarget(abArm));
  const ensemble = name !== undefined && Object.hasOwn(config.ensembles, name) ? { name, config: config.ensembles[name]! } : null;
  return { name, abArm, ensemble };
}
