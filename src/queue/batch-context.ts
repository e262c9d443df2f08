import { configSchema, type SwitchyardConfig } from '../config/schema.ts';
import { createRedisRowGate } from '../execution/redis-row-gate.ts';
import { unlimitedCallSlot, type CallSlot } from '../execution/call-slots.ts';
import { createRowPlanner } from '../execution/row-planner.ts';
import type { RowRunnerDeps } from '../execution/row-runner.ts';
import { createProviderClients } from '../models/provider-clients.ts';
import type { BatchStore } from './batch-state.ts';

/** What a worker needs to run one batch's rows: its config (from Redis), SDK clients, gate and planner. */
export interface BatchContext {
  config: SwitchyardConfig;
  runner: RowRunnerDeps;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * Loads each batch's context once per worker process. `callSlot` is the process's model-call limit,
 * shared by every batch. A worker on another machine needs no local
 * config file: the batch's config travels in Redis (without keys, which each worker reads from its env).
 */
export function createBatchContexts(store: BatchStore, options: { callSlot?: CallSlot; maxCached?: number } = {}) {
  const { callSlot = unlimitedCallSlot, maxCached = 32 } = options;
  const cache = new Map<string, Promise<BatchContext | 'elsewhere'>>();

  function build(batchId: string, config: SwitchyardConfig, modelOverride: string | undefined): BatchContext {
    const providers = createProviderClients(config);
    const gate = createRedisRowGate({ redis: store.redis, space: store.space, store, batchId, config });
    return { config, runner: { config, providers, gate, plan: createRowPlanner(config, providers, modelOverride, gate, callSlot), sleep, callSlot } };
  }

  async function load(batchId: string): Promise<BatchContext | 'elsewhere'> {
    const [meta, configJson] = await Promise.all([store.load(batchId), store.loadConfigJson(batchId)]);
    if (!meta || !configJson) throw new Error(`batch ${batchId} has no state in Redis (was it deleted?)`);
    // Its models are a simulator inside the process that runs it (which primed its context): only that process can call them.
    if (meta.builtin_config) return 'elsewhere';
    return build(batchId, configSchema.parse(JSON.parse(configJson)), meta.model_override);
  }

  function remember(batchId: string, entry: Promise<BatchContext | 'elsewhere'>): Promise<BatchContext | 'elsewhere'> {
    entry.catch(() => cache.delete(batchId));
    if (cache.size >= maxCached) cache.delete(cache.keys().next().value as string);
    cache.set(batchId, entry);
    return entry;
  }

  return {
    /** The batch's context, or 'elsewhere' for a batch only its own process can serve. */
    get(batchId: string): Promise<BatchContext | 'elsewhere'> {
      return cache.get(batchId) ?? remember(batchId, load(batchId));
    },
    /** The process that saved the batch already holds its config: build the context from it now. */
    prime(batchId: string, config: SwitchyardConfig, modelOverride: string | undefined): void {
      remember(batchId, Promise.resolve(build(batchId, config, modelOverride)));
    },
  };
}

export type BatchContexts = ReturnType<typeof createBatchContexts>;
