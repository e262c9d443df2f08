/**
 * The refusals of a run's model flags (--compare, --ab, --model, --route, --judge) that need neither
 * Redis nor the input file's rows, made before the run says its batch id: a usage error then reads
 * as one (exit 2), not as a batch that began and stopped. prepare-batch.ts makes them again, with
 * the batch's own config and earlier settings, for what only those tell.
 */
import { builtInConfig } from '../config/defaults.ts';
import { loadConfigFile } from '../config/load.ts';
import { answerableNames, type SwitchyardConfig } from '../config/schema.ts';
import { UsageError } from '../errors.ts';
import { withJudge } from '../judge/judge-override.ts';
import { AB_BESIDE_PINNED, parseAbSplit } from '../routing/ab-split.ts';
import { parseCompareModels, refuseCompareBesideOneModel } from '../routing/compare-models.ts';
import { AUTO_ROUTE, pinnedModel, refuseUnknownPinned } from '../routing/pinned-model.ts';
import type { BatchStore } from '../queue/batch-state.ts';
import type { RunOptions } from './run-batch.ts';

const BUILT_IN = (): { config: SwitchyardConfig; builtIn: boolean } => ({ config: builtInConfig('http://127.0.0.1:1/v1'), builtIn: true });

/**
 * The config whose names the flags are read against when it is known without Redis: --config's, or
 * the built-in models' for a new batch. A batch named by --resume or --batch-id without --config may
 * run on the config it keeps in Redis: null, refuseUnknownNamesOfBatch reads that.
 */
async function configKnownNow(options: RunOptions): Promise<{ config: SwitchyardConfig; builtIn: boolean } | null> {
  if (options.config) return { config: await loadConfigFile(options.config), builtIn: false };
  if (namesNeedStoredConfig(options)) return null;
  // Only its names are read: no simulator is started for them (its address is never called).
  return BUILT_IN();
}

/** Whether the flags' names can only be read once Redis is open: a batch named by --resume or --batch-id without --config. */
export function namesNeedStoredConfig(options: RunOptions): boolean {
  return !options.config && (options.resume !== undefined || options.batchId !== undefined);
}

/** Refuses flags that cannot go together, and a model or ensemble name the config lacks when that config is known without Redis. */
export async function refuseBadModelFlags(options: RunOptions): Promise<void> {
  refuseCompareBesideOneModel(options);
  if (options.ab && (options.model || (options.route && options.route !== AUTO_ROUTE))) throw new UsageError(AB_BESIDE_PINNED);
  const known = await configKnownNow(options);
  if (known) refuseUnknownNames(options, known);
}

/**
 * For a batch named by --resume or --batch-id without --config: its flags' names against the config
 * it runs on, read from Redis (its own, or the built-in models' for a batch on them or a new one).
 * A batch whose config is gone from Redis is left to prepare-batch.ts, which refuses it.
 */
export async function refuseUnknownNamesOfBatch(options: RunOptions, store: BatchStore, batchId: string): Promise<void> {
  if (!namesNeedStoredConfig(options)) return;
  const existing = await store.load(batchId);
  if (existing && !existing.builtin_config) {
    const stored = await store.loadConfig(batchId);
    if (stored) refuseUnknownNames(options, { config: stored.config, builtIn: false });
    return;
  }
  refuseUnknownNames(options, BUILT_IN());
}

function refuseUnknownNames(options: RunOptions, known: { config: SwitchyardConfig; builtIn: boolean }): void {
  const names = answerableNames(known.config);
  if (options.compare !== undefined) parseCompareModels(options.compare, names, known.builtIn);
  if (options.ab) parseAbSplit(options.ab, names, known.builtIn);
  refuseUnknownPinned(pinnedModel(options), names, known.builtIn);
  if (options.judge) withJudge(known.config, options.judge, known.builtIn);
}
