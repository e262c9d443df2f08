import type { SwitchyardConfig } from '../config/schema.ts';

/**
 * What a model's shared rate-limit and circuit-breaker state in Redis belongs to: the endpoint the
 * model name stands for in a batch's config (its provider's base URL and the upstream model name).
 * Batches calling the same endpoint share that state, as they share the provider's limits; batches
 * that mean different endpoints by one name (two simulators, two gateways) do not block each other.
 */
export function modelEndpoint(config: SwitchyardConfig, model: string): string {
  const modelConfig = config.models[model];
  const baseUrl = modelConfig ? config.providers[modelConfig.provider]?.base_url : undefined;
  if (!modelConfig || baseUrl === undefined) return model;
  return `${baseUrl.replace(/\/+$/, '')} ${modelConfig.upstream ?? model}`;
}
