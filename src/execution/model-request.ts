import type { SwitchyardConfig } from '../config/schema.ts';
import type { ModelRequest } from '../models/call-model.ts';
import type { RowInput } from './row-runner.ts';

/**
 * The request a row sends to one model of its chain: its messages and request fields, its
 * temperature (the row's, its task type's, the config's), and its max_tokens capped at the model's
 * max_output_tokens.
 */
export function requestFor(row: RowInput, model: string, taskType: string, config: SwitchyardConfig): ModelRequest {
  const modelConfig = config.models[model]!;
  return {
    model,
    upstream: modelConfig.upstream ?? model,
    messages: row.messages,
    // A reasoning model takes no temperature but its own (it refuses the request otherwise).
    temperature: modelConfig.reasoning ? null : (row.temperature ?? config.routing?.temperatures[taskType] ?? config.temperature),
    maxTokens: Math.min(row.max_tokens ?? config.max_tokens, modelConfig.max_output_tokens ?? Number.MAX_SAFE_INTEGER),
    ...(row.params !== undefined && { params: row.params }),
    ...(modelConfig.stream && { stream: true }),
    ...(modelConfig.reasoning && { reasoning: true }),
  };
}
