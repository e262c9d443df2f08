import OpenAI from 'openai';
import type { ProviderConfig, SwitchyardConfig } from '../config/schema.ts';
import { createHttpFetch, createProxyFetch, nodeUsesEnvProxy } from './http-fetch.ts';
import { KeyRejection } from './key-rejection.ts';

/**
 * One `openai` SDK client per provider. SDK retries are off (`maxRetries: 0`): the row runner
 * (src/execution/row-runner.ts, with models/retry-policy.ts) owns every retry. Keys come from the
 * environment only. Requests go out through Node's http client (models/http-fetch.ts), which costs
 * less CPU per call than the global fetch; with Node's environment proxy on, through the global
 * fetch, which honours it (createProxyFetch: redirects handled as the adapter handles them).
 */
export interface ProviderClient {
  name: string;
  config: ProviderConfig;
  client: OpenAI;
  /** Set when the configured key variable is missing, so calls fail with that message. */
  missingKeyEnv: string | null;
  /** A 401 from this provider, remembered for a short while so other rows do not send the same key. */
  keyRejection: KeyRejection;
}

export function createProviderClients(config: SwitchyardConfig, env: NodeJS.ProcessEnv = process.env): Map<string, ProviderClient> {
  const clients = new Map<string, ProviderClient>();
  const fetch = nodeUsesEnvProxy(env) ? createProxyFetch() : createHttpFetch();
  for (const [name, provider] of Object.entries(config.providers)) {
    const apiKey = provider.api_key_env ? env[provider.api_key_env] : undefined;
    clients.set(name, {
      name,
      config: provider,
      missingKeyEnv: missingKeyEnv(provider, env),
      keyRejection: new KeyRejection(),
      // Local endpoints (the simulator, vLLM, Ollama) accept any key; the SDK insists on one.
      client: new OpenAI({ apiKey: apiKey ?? 'no-key', baseURL: provider.base_url, maxRetries: 0, timeout: provider.timeout_ms, fetch }),
    });
  }
  return clients;
}

/** The key variable a provider names but the environment lacks; null when it has its key or needs none. */
function missingKeyEnv(provider: ProviderConfig, env: NodeJS.ProcessEnv): string | null {
  const name = provider.api_key_env;
  // A key of spaces alone (a stray `export KEY=" "`) is as good as none: it would only earn 401s.
  return name && !env[name]?.trim() ? name : null;
}

/** The key variable a model's provider names but the environment lacks; null when it can be called. */
export function missingKeyFor(config: SwitchyardConfig, model: string, env: NodeJS.ProcessEnv = process.env): string | null {
  const provider = config.models[model] && config.providers[config.models[model].provider];
  return provider ? missingKeyEnv(provider, env) : null;
}
