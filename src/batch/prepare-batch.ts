/**
 * A batch made ready to run: everything `runBatch` does before its first row is queued. The
 * batch's lease, its config and settings (a resume keeps the ones it was given), the refusals of
 * what cannot run, the file's first record checked, the output folder claimed and the batch saved
 * in Redis. What it takes hold of goes into `Held`, which runBatch releases however the run ends.
 */
import { resolve } from 'node:path';
import { answerableNames, type SwitchyardConfig } from '../config/schema.ts';
import { readRows } from '../input/read-rows.ts';
import type { InputRow, QueueItem, ReadItem, ReadPosition, RowRules } from '../input/row.ts';
import { refuseUnknownPinned } from '../routing/pinned-model.ts';
import { firstModel, rowTarget } from '../routing/row-target.ts';
import type { AbArm } from '../routing/ab-split.ts';
import { fanOutItem, noneCompared, type CompareTally } from '../routing/compare-fan-out.ts';
import { comparedFromCacheText } from '../routing/compare-models.ts';
import type { BatchMeta } from '../queue/batch-state.ts';
import { acquireBatchLease, type BatchLease } from '../queue/batch-lease.ts';
import type { Session } from '../queue/session.ts';
import { claimOutputDir, createOutputDir } from '../output/output-dir.ts';
import { outputPaths } from '../output/paths.ts';
import { refuseLostCollectedFiles } from '../output/collected-files.ts';
import type { Simulator } from '../sim/server.ts';
import { atEarlyQuit, holdingEarlyStop, saysWhenStopped } from '../early-stop.ts';
import { lookalikeColumnsText, requestFieldColumnsText } from './run-messages.ts';
import { AnsweringModels } from './answering-models.ts';
import { CappedMaxTokens } from './capped-max-tokens.ts';
import { keysHeldElsewhere, modelsTheRowsGoTo, refuseJudgeWithoutKey, refuseSpentMonth, refuseWithoutKeys, warnAboutConfig } from './config-checks.ts';
import { abSplitsBefore, isBudgeted, loadEarlierBatch, rescoringJudge, resolveConfig, sayNoReferenceField, sayResuming, chooseRunSettings, cacheTurnedOff, withRunCache, withRunJudge, type RunSettings } from './run-settings.ts';
import type { RunHost, RunOptions } from './run-batch.ts';

/** What a run holds until it ends, whatever happens: released by runBatch. */
export interface Held {
  lease: BatchLease | null;
  /** The simulator this run started for the built-in models. */
  simulator: Simulator | null;
  /** The input file's reader (its file stays open until it is read to the end or returned). */
  reader: AsyncIterator<ReadItem> | null;
}

/** A batch checked and saved in Redis, with what its run needs. */
export interface PreparedBatch {
  batchId: string;
  resumed: boolean;
  config: SwitchyardConfig;
  builtIn: boolean;
  model: string | undefined;
  abSplit: AbArm[] | undefined;
  /** Model calls in flight in this process. */
  concurrency: number;
  /** No model the rows may use can be called here: workers elsewhere run them, and this run only collects. */
  callsElsewhere: boolean;
  /** --compare's models (the batch's, on a resume), and what its fan-out met in the file so far. */
  compare: { models: string[]; tally: CompareTally } | undefined;
  /** The file's rows (under --compare, one per record and model), its first record already read (a bad file stopped before this). */
  items: AsyncIterable<QueueItem>;
  /** What the rows read so far go to (their own model, arm, the pinned model, or auto): all of them once `items` is read to its end. */
  answering: ReadonlySet<string>;
  /** The rows read so far whose own max_tokens is above their model's max_output_tokens: its note, said once the file is read. */
  capped: CappedMaxTokens;
  position: ReadPosition;
  outDir: string;
  startedAt: Date;
  /** A resume's judge, when the rows answered before were scored by another one or none: they are scored again. */
  rescoreWith: { model: string; all: boolean } | undefined;
  /** Whether the rows' fingerprints include their ids (the batch's meta says). */
  fingerprintIds: boolean;
}

/**
 * Everything before the first row is queued: the batch's lease, its config and settings (a resume
 * keeps the ones it was given), the file's first record checked, the output folder claimed, and
 * the batch saved in Redis. Whatever it takes into `held` is released by the caller.
 */
export async function prepareBatch(batchId: string, options: RunOptions, session: Session, held: Held, say: (line: string) => void, host: RunHost | undefined): Promise<PreparedBatch> {
  const existing = await loadEarlierBatch(batchId, options, session);
  saysWhenStopped(existing ? `before anything was queued: batch ${batchId} is as it was, and \`${resumeCommand(batchId, options)}\` goes on with it.` : `before anything was queued: batch ${batchId} was not created, so there is nothing to resume.`);
  // Before anything is written: another process may be running this batch now. (A server holds
  // the lease of the batches it queues itself; a --detach from the command line holds it while it queues.)
  if (!host) held.lease = await acquireBatchLease(session.redis, session.store.keys(batchId).lease, batchId);
  // An early Ctrl-C gives it back as it quits: the same command run again would take it over as from a run that held rows.
  if (held.lease) atEarlyQuit(held.lease.releaseNow);
  // Results or call records its earlier runs collected and that are lost now: refused before the batch is touched.
  if (existing) await refuseLostCollectedFiles(session.store, existing, outputPaths(existing.out_dir), 'run the same command again');
  const storedConfig = existing ? ((await session.store.loadConfig(batchId))?.config ?? null) : null;
  const resolved = await resolveConfig(options, existing, storedConfig, say, host);
  // Posted again to a server with another config: the client chose it (a server starting up leaves such a batch, open-batches.ts); said all the same.
  if (existing?.server_config !== undefined && host?.serverConfig && existing.server_config !== host.serverConfig.fingerprint) {
    say(`Note: batch ${batchId} was posted before to a server with another config (${existing.server_config_from ?? 'not recorded'}): its rows not finished run now with this server's (${host.serverConfig.from}), its providers, limits and prices.`);
  }
  held.simulator = resolved.simulator;
  const judged = withRunJudge(resolved, options, existing, say);
  const cacheOff = cacheTurnedOff(options, existing);
  // Saved with its cache settings (the meta's cache_off leaves them out), so that --cache on a resume finds them.
  const { judgeModel, config: savedConfig } = judged;
  const config = withRunCache(savedConfig, cacheOff, options, say);
  // The worker registry read once, for the warnings and the refusal: keys missing here that other workers have.
  const keysElsewhere = await keysHeldElsewhere(session, config);
  const settings = chooseRunSettings(options, existing, config, resolved.builtIn, storedConfig, say);
  // The key checks look at these rather than every model of the config.
  const pinned = modelsTheRowsGoTo(settings.compare, settings.abSplit, settings.model);
  const callsElsewhere = refuseWhatCannotRun(config, resolved.builtIn, settings.model, pinned, options, keysElsewhere, host);
  await refuseSpentMonth(session, config, pinned, say);
  // After the refusals: a warning that a key is missing says nothing more when the run stops for it.
  warnAboutConfig(config, pinned, isBudgeted(options, existing, config), options.detach === true, keysElsewhere, say);
  if (config.cache && settings.compare) say(comparedFromCacheText(host ? 'cache=false' : '--no-cache', config.judge !== undefined));
  if (callsElsewhere) say('Note: no model its rows may use has its key set here: the workers on this Redis that have the keys answer them, and this run writes the outputs.');
  const position: ReadPosition = { bytesRead: 0, fileBytes: 0 };
  // A host's batch was posted to its HTTP API: the readers' advice is for the request then (a charset to name in its Content-Type).
  const rules = { promptColumn: settings.promptColumn, overHttp: host !== undefined };
  const answering = new AnsweringModels();
  const capped = new CappedMaxTokens(config);
  const each = (row: InputRow): void => {
    const target = rowTarget(row, config, settings.abSplit, settings.model);
    answering.see(target.name);
    capped.add(firstModel(target, config), row.max_tokens);
  };
  const compare = settings.compare && { models: settings.compare, tally: noneCompared() };
  const fanOut = compare && ((item: ReadItem) => fanOutItem(item, compare.models, compare.tally));
  const items = await checkedRows(settings.inputPath, rules, config, position, held, { first: (first) => sayNoReferenceField(config, first, say), each }, fanOut);
  for (const note of [lookalikeColumnsText(position.csvLookalikeColumns), requestFieldColumnsText(position.csvRequestFieldColumns)]) if (note) say(note);

  const { outDir, startedAt } = await saveBatch(batchId, options, existing, session, { config: savedConfig, builtIn: resolved.builtIn, judgeModel, cacheOff, settings, position, served: host !== undefined, serverConfig: host?.serverConfig });
  sayResuming(batchId, existing, settings.inputPath, say);
  return {
    batchId,
    resumed: existing !== null,
    rescoreWith: rescoringJudge(existing, config, storedConfig?.judge),
    fingerprintIds: fingerprintsHoldIds(existing),
    config,
    builtIn: resolved.builtIn,
    model: settings.model,
    abSplit: settings.abSplit,
    compare,
    concurrency: settings.concurrency ?? config.concurrency,
    callsElsewhere,
    items,
    answering: answering.names,
    capped,
    position,
    outDir,
    startedAt,
  };
}

/**
 * Pulls the first record now, so a bad file (no prompt column, empty, a record --compare cannot
 * put to its models) stops before anything is enqueued; its first row goes to `onRow.first`, and
 * every row, as it is read (and made into `fanOut`'s rows, under --compare), to `onRow.each`. The
 * reader goes into `held`: a run that ends before reading the file to its end (a refusal after
 * this, a stop, a cancel) closes it there.
 */
async function checkedRows(
  path: string,
  rules: Omit<RowRules, 'knownModels'>,
  config: SwitchyardConfig,
  position: ReadPosition,
  held: Held,
  onRow: { first: (row: InputRow) => void; each: (row: InputRow) => void },
  fanOut: ((item: ReadItem) => QueueItem[]) | undefined,
): Promise<AsyncIterable<QueueItem>> {
  const iterator = readRows(path, { ...rules, knownModels: new Set(answerableNames(config)) }, position)[Symbol.asyncIterator]();
  held.reader = iterator;
  const first = await iterator.next();
  const firstItems = first.done ? [] : fanOut ? fanOut(first.value) : [first.value];
  if (!first.done && first.value.kind === 'row') onRow.first(first.value.value);
  return {
    async *[Symbol.asyncIterator]() {
      if (first.done) return;
      for (let next: IteratorResult<ReadItem> = first; !next.done; next = await iterator.next()) {
        for (const item of next === first ? firstItems : fanOut ? fanOut(next.value) : [next.value]) {
          if (item.kind === 'row') onRow.each(item.value);
          yield item;
        }
      }
    },
  };
}

/**
 * Refuses, before anything is queued, a pinned model the config lacks, and a run whose models no one
 * has the keys to call. True when only other workers have keys for the rows' models: this run then
 * starts no worker of its own (it would only take rows to hand them back) and collects theirs.
 */
function refuseWhatCannotRun(config: SwitchyardConfig, builtIn: boolean, model: string | undefined, answering: readonly string[] | undefined, options: RunOptions, keysElsewhere: ReadonlySet<string>, host: RunHost | undefined): boolean {
  refuseUnknownPinned(model, answerableNames(config), builtIn);
  if (!options.detach) {
    const callable = refuseWithoutKeys(config, answering, keysElsewhere, 'run');
    refuseJudgeWithoutKey(config, keysElsewhere);
    return callable === 'elsewhere';
  }
  // A server with workers of its own (it primes them): refused when neither they nor any worker on record could call a model.
  if (host?.prime) {
    refuseWithoutKeys(config, answering, keysElsewhere, 'server');
    refuseJudgeWithoutKey(config, keysElsewhere, 'server');
  }
  return false;
}

/** What the batch's meta records of this run, beside its id and output folder. */
interface BatchRecord {
  config: SwitchyardConfig;
  builtIn: boolean;
  judgeModel: string | undefined;
  cacheOff: boolean;
  settings: RunSettings;
  /** The reader's, its first record read: the file's CSV delimiter and BOM. */
  position: ReadPosition;
  /** The run is `switchyard serve`'s (it has a host), whose clients post files rather than run commands. */
  served: boolean;
  /** That server's config, which alone goes on with the batch after a restart (RunHost.serverConfig). */
  serverConfig: RunHost['serverConfig'];
}

/** Creates and claims the output folder, then saves the batch's meta and config in Redis; the run starts now. */
async function saveBatch(batchId: string, options: RunOptions, existing: BatchMeta | null, session: Session, record: BatchRecord): Promise<{ outDir: string; startedAt: Date }> {
  const { settings, position } = record;
  const outDir = resolve(options.out ?? existing?.out_dir ?? `out/${batchId}`);
  await createOutputDir(outDir);
  const startedAt = new Date();
  const createdAt = existing?.created_at ?? startedAt.toISOString();
  const meta: Omit<BatchMeta, 'cost_nanos'> = {
    batch_id: batchId,
    status: 'enqueuing',
    input: settings.inputPath,
    input_kind: existing?.input_kind ?? 'rows',
    out_dir: outDir,
    created_at: createdAt,
    invalid_rows: 0,
    prompt_column: settings.promptColumn,
    // The first run's: the CSV journal already holds records with it.
    csv_delimiter: existing?.csv_delimiter ?? position.csvDelimiter ?? ',',
    ...((existing?.csv_bom ?? position.csvBom) ? { csv_bom: true } : {}),
    started_at: startedAt.toISOString(),
    builtin_config: record.builtIn,
    detached: options.detach === true,
    served: record.served,
    ...(record.serverConfig ? { server_config: record.serverConfig.fingerprint, server_config_from: record.serverConfig.from } : {}),
    ...(settings.model ? { model_override: settings.model } : {}),
    ...(settings.abSplit ? { ab_split: settings.abSplit } : {}),
    ...abSplitsBefore(existing, settings.abSplit),
    ...(settings.compare ? { compare: settings.compare } : {}),
    ...(record.judgeModel ? { judge_model: record.judgeModel } : {}),
    ...(record.cacheOff ? { cache_off: true } : {}),
    ...(settings.budgetUsd !== undefined ? { budget_usd: settings.budgetUsd } : {}),
    ...(settings.budgetFromConfig ? { budget_from_config: true } : {}),
    ...(settings.concurrency !== undefined ? { concurrency: settings.concurrency } : {}),
    ...(fingerprintsHoldIds(existing) ? { fingerprint_ids: true } : {}),
  };
  // The folder claimed and the batch saved, or neither: a Ctrl-C between would leave a folder marked
  // as a batch's that no Redis has, which a later run with the same --out would refuse to replace.
  const claimAndSave = async () => {
    await claimOutputDir(outDir, batchId, createdAt, async (owner) => {
      const ownerMeta = await session.store.load(owner);
      if (!ownerMeta || ownerMeta.status === 'completed' || ownerMeta.status === 'completed_with_failures') return null;
      if (ownerMeta.input_error) return `batch ${owner} stopped at a line of its file it could not read: to finish it there without repeating its finished rows, run this command with --batch-id ${owner} once the file is fixed`;
      return `batch ${owner} did not finish (${ownerMeta.status}): \`switchyard run --resume ${owner}\` finishes it there without repeating its finished rows`;
    });
    await session.store.save(meta, record.config);
  };
  await holdingEarlyStop(claimAndSave, {
    waitingFor: `while batch ${batchId} is being saved`,
    during: `while batch ${batchId} was being saved: nothing was queued; if \`switchyard status ${batchId}\` finds it, \`${resumeCommand(batchId, options)}\` runs it.`,
    after: `before any row was queued: batch ${batchId} is saved, and \`${resumeCommand(batchId, options)}\` runs it.`,
  });
  return { outDir, startedAt };
}

/** The command that goes on with the batch: a `--detach`ed one's leaves its rows to the workers, as it was started (not to this machine). */
export const resumeCommand = (batchId: string, options: RunOptions): string => `switchyard run --resume ${batchId}${options.detach ? ' --detach' : ''}`;

/** A new batch's row fingerprints include the rows' ids; one created before they did keeps comparing without them. */
const fingerprintsHoldIds = (existing: BatchMeta | null): boolean => existing === null || existing.fingerprint_ids === true;
