import type { EnsembleConfig, SwitchyardConfig } from '../config/schema.ts';
import { abArmFor, armTarget, type AbArm } from './ab-split.ts';

export interface NamedEnsemble {
  name: string;
  config: EnsembleConfig;
}

export interface RowTarget {
  name: string | undefined;
  abArm: string | undefined;
  ensemble: NamedEnsemble | null;
}

/**
 * What a row goes to before any routing: its own model, else its A/B arm (`--ab`), else the batch's
 * pinned model; and the ensemble that name stands for, when it is one. No name: the row is routed
 * by task type (the arm `auto` among them). Shared by the workers and `--dry-run`, so both send a
 * row to the same place.
 */
export function rowTarget(row: { id: string; model?: string | undefined }, config: SwitchyardConfig, abSplit: readonly AbArm[] | undefined, pinned: string | undefined): RowTarget {
  const abArm = row.model === undefined && abSplit ? abArmFor(row.id, abSplit) : undefined;
  const name = row.model ?? (abArm === undefined ? pinned : armTarget(abArm));
  const ensemble = name !== undefined && Object.hasOwn(config.ensembles, name) ? { name, config: config.ensembles[name]! } : null;
  return { name, abArm, ensemble };
}

/**
 * The model a row is sent to first, where the file and the run's settings say it (its own model, its
 * A/B arm's, the pinned one, or the default model when there is no routing); undefined for a routed row
 * or an ensemble's (each member has its own cap).
 */
export function firstModel({ name, ensemble }: RowTarget, config: SwitchyardConfig): string | undefined {
  if (ensemble) return undefined;
  return name ?? (config.routing === undefined ? config.default_model : undefined);
}
