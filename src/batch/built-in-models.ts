import { builtInConfig } from '../config/defaults.ts';
import type { SwitchyardConfig } from '../config/schema.ts';
import type { Simulator } from '../sim/server.ts';

/**
 * The built-in models on a simulator inside this process: what runs when no config is given. A few
 * injected 500s show retries in the report; the seed keeps them the same every run.
 */
export async function startBuiltInModels(): Promise<{ config: SwitchyardConfig; simulator: Simulator }> {
  const { startSimulator } = await import('../sim/server.ts');
  const simulator = await startSimulator({ port: 0, latency_ms: 40, latency_jitter_ms: 30, failure_rate: 0.05, seed: 7 });
  return { config: builtInConfig(simulator.url), simulator };
}
