import type { SwitchyardConfig } from '../src/config/schema.ts';
import { createRedisRowGate } from '../src/execution/redis-row-gate.ts';
import { createAnswerCache, withoutAnswerCache } from '../src/execution/answer-cache.ts';
import { unlimitedCallSlot, type CallSlots } from '../src/execution/call-slots.ts';
import { createRowPlanner } from '../src/execution/row-planner.ts';
import { classificationInput, classifyByRules, compileTaskRules } from '../src/routing/rule-classifier.ts';
import { advanceRow, type RowInput, type RowRunnerDeps, type RowStep } from '../src/execution/row-runner.ts';
import type { ProgressCheckpoint, RowProgress } from '../src/execution/row-progress.ts';
import { advanceEnsembleRow } from '../src/ensemble/ensemble-row.ts';
import { advanceJudgedRow } from '../src/judge/judge-row.ts';
import type { AbArm } from '../src/routing/ab-split.ts';
import { rowTarget } from '../src/routing/row-target.ts';
import type { MonthSpend } from '../src/limits/month-spend.ts';
import { createProviderClients } from '../src/models/provider-clients.ts';
import type { BatchStore } from '../src/queue/batch-state.ts';
import type { RefusalWait } from '../src/queue/redis-outage.ts';
import { keyHolders } from '../src/queue/worker-registry.ts';

/** What a worker needs to run one batch's rows: its config (from Redis), SDK clients, gate and planner. */
export interface BatchContext {
  config: SwitchyardConfig;
  runner: RowRunnerDeps;
  /** The batch's last run was --detach'ed: its rows are any worker's, with workers coming and going. */
  detached: boolean;
  /**
   * Moves a row forward: through an ensemble when the row, or the batch (--model), names one; else
   * routed; then, when the config has a judge, to its score. `checkpoint` saves the row's progress
   * mid-row where work worth keeping is done; `confirmClaim` throws before a call when the row's job
   * is no longer this worker's (RowRunnerDeps).
   */
  advance(row: RowInput, progress: RowProgress, checkpoint?: ProgressCheckpoint, confirmClaim?: () => Promise<void>): Promise<RowStep>;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** How long a worker uses a batch's context loaded from Redis before reading it again (a resume may change the config). */
const RELOAD_AFTER_MS = 30_000;

/**
 * Loads each batch's context per worker process, again every 30 s, and at once for a job queued by
 * a run that started after the context was loaded (a resume with another config reaches
 * long-running workers that way, before they run its rows). `callSlots` are the process's model-call slots, shared by
 * every batch. A worker on another machine needs no local config file: the batch's config travels
 * in Redis (without keys, which each worker reads from its env). `refusals`: how long the rows'
 * breaker, limiter and budget scripts wait out a full Redis (the session's bound).
 */
export function createBatchContexts(
  store: BatchStore,
  options: { callSlots?: CallSlots; monthSpend?: MonthSpend; refusals?: RefusalWait; maxCached?: number; reloadAfterMs?: number; now?: () => number } = {},
) {
  const { callSlots, monthSpend, refusals, maxCached = 32, reloadAfterMs = RELOAD_AFTER_MS, now = Date.now } = options;
  /** Told when a budget refuses a call for good (whenBudgetSpent): the batch's, or the month's (null: every batch's parked rows may be under that cap). */
  let budgetSpent: ((batchId: string | null) => void) | undefined;
  const callSlot = callSlots?.slot ?? unlimitedCallSlot;
  // Shared by every batch's rows and their jobs' hand-backs (jobs/prompt.ts): the registry is read at most every few seconds.
  const keyHeldElsewhere = keyHolders(store.redis, store.space);
  /** runAt: when the batch's run whose config this is started (epoch ms). */
  type Loaded = { context: BatchContext | 'elsewhere'; source: string; runAt: number };
  /** runAt: the loaded one's, once loaded (null while loading: what it reads is as new as any job). */
  type Entry = { loaded: Promise<Loaded>; context: Promise<BatchContext | 'elsewhere'>; reloadAt: number; runAt: number | null };
  const cache = new Map<string, Entry>();

  function build(batchId: string, config: SwitchyardConfig, modelOverride: string | undefined, abSplit: readonly AbArm[] | undefined, detached: boolean, served: boolean): BatchContext {
    const providers = createProviderClients(config);
    const gate = createRedisRowGate({ redis: store.redis, space: store.space, store, batchId, config, monthSpend, refusals, served, onBudgetSpent: (scope) => budgetSpent?.(scope === 'batch' ? batchId : null) });
    const answerCache = config.cache ? createAnswerCache(store.redis, store.space, config.cache.ttl_hours) : undefined;
    const runner: RowRunnerDeps = { config, providers, gate, plan: createRowPlanner(config, providers, modelOverride, gate, callSlot), sleep, callSlot, stopping: () => callSlots?.stopping() ?? false, answerCache, keyHeldElsewhere };
    const rules = compileTaskRules(config.routing);
    const rulesLabel = (row: RowInput): string => {
      const { text, chars } = classificationInput(row.messages);
      return classifyByRules(text, rules, chars).taskType;
    };
    return {
      config,
      runner,
      detached,
      advance(row, progress, checkpoint, confirmClaim) {
        const deps = confirmClaim ? { ...runner, confirmClaim } : runner;
        const { abArm, ensemble } = rowTarget(row, config, abSplit, modelOverride);
        // An arm's row carries it to every call it makes (their cost records name it) and to its answer's result,
        // which keeps it: a later run that only scores the answer leaves it the arm it was answered in.
        const armed = abArm === undefined ? row : { ...row, abArm };
        const saveRow = checkpoint && (() => checkpoint(progress));
        const answer = () => (ensemble ? advanceEnsembleRow(armed, progress, deps, ensemble, { checkpoint, taskType: rulesLabel(row) }) : advanceRow(armed, progress, deps, saveRow));
        return config.judge ? advanceJudgedRow(armed, progress, deps, config.judge, answer, checkpoint) : answer();
      },
    };
  }

  /** The context from Redis; the one in hand when the config it came from has not changed (its SDK clients keep their connections). */
  async function load(batchId: string, previous: Promise<Loaded> | undefined): Promise<Loaded> {
    const [meta, stored] = await Promise.all([store.load(batchId), store.loadConfig(batchId)]);
    if (!meta || !stored) throw new Error(`batch ${batchId} has no state in Redis (was it deleted?)`);
    const source = `${meta.builtin_config}\n${meta.model_override ?? ''}\n${JSON.stringify(meta.ab_split ?? null)}\n${meta.cache_off === true}\n${meta.detached === true}\n${meta.served === true}\n${stored.json}`;
    const runAt = Date.parse(meta.started_at ?? meta.created_at);
    const before = await previous?.catch(() => undefined);
    if (before?.source === source) return { ...before, runAt };
    // Its models are a simulator inside the process that runs it (which primed its context): only that process can call them.
    if (meta.builtin_config) return { context: 'elsewhere', source, runAt };
    const config = meta.cache_off ? withoutAnswerCache(stored.config) : stored.config;
    return { context: build(batchId, config, meta.model_override, meta.ab_split, meta.detached === true, meta.served === true), source, runAt };
  }

  function remember(batchId: string, loaded: Promise<Loaded>, reloadAt: number): Promise<BatchContext | 'elsewhere'> {
    cache.delete(batchId);
    if (cache.size >= maxCached) cache.delete(cache.keys().next().value as string);
    const entry: Entry = { loaded, context: loaded.then((done) => done.context), reloadAt, runAt: null };
    // A failed load is forgotten, but not a newer entry that replaced it meanwhile.
    loaded.catch(() => {
      if (cache.get(batchId) === entry) cache.delete(batchId);
    });
    void loaded.then((done) => (entry.runAt = done.runAt), () => undefined);
    cache.set(batchId, entry);
    return entry.context;
  }

  return {
    /**
     * The batch's context, or 'elsewhere' for a batch only its own process can serve. `queuedBy`:
     * when the run that queued the job started (PromptJob.queuedBy); a context from before it is stale.
     */
    get(batchId: string, queuedBy?: number): Promise<BatchContext | 'elsewhere'> {
      const cached = cache.get(batchId);
      const stale = cached !== undefined && queuedBy !== undefined && cached.runAt !== null && cached.runAt < queuedBy;
      if (cached && !stale && now() < cached.reloadAt) return cached.context;
      return remember(batchId, load(batchId, cached?.loaded), now() + reloadAfterMs);
    },
    /**
     * Who to tell when a budget refuses a call for good: the worker host, which wakes the batch's
     * parked rows, or with null (the month's cap) every batch's (wake-parked-rows.ts).
     */
    whenBudgetSpent(listener: (batchId: string | null) => void): void {
      budgetSpent = listener;
    },
    /** The process is stopping: rows not calling yet park instead (CallSlots.stop). */
    stopCalls(): void {
      callSlots?.stop();
    },
    /**
     * The process that saved the batch, for its run that started at `runAt`, already holds its
     * config: build the context from it now (reloaded only for a job of a later run). `served`:
     * the run is `switchyard serve`'s (BatchMeta.served).
     */
    prime(batchId: string, config: SwitchyardConfig, modelOverride: string | undefined, abSplit: readonly AbArm[] | undefined, runAt: number, served: boolean): void {
      remember(batchId, Promise.resolve({ context: build(batchId, config, modelOverride, abSplit, false, served), source: 'primed', runAt }), Number.POSITIVE_INFINITY);
    },
  };
}

export type BatchContexts = ReturnType<typeof createBatchContexts>;

