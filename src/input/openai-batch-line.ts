import { z } from 'zod';
import { chatMessageSchema } from './row.ts';
import { tokenLimitFields, type RawFields } from './row-fields.ts';

/**
 * One request line of an OpenAI Batch API input file (chat completions only):
 * `{"custom_id": "...", "method": "POST", "url": "/v1/chat/completions", "body": {"model": ..., "messages": [...]}}`.
 * Keys of the line other than these four are ignored.
 */
export const openAiBatchLineSchema = z.object({
  custom_id: z.string().min(1),
  method: z.literal('POST', { error: 'must be "POST": chat completion requests are posted' }),
  url: z.literal('/v1/chat/completions', { error: 'only "/v1/chat/completions" requests are supported' }),
  body: z.looseObject({
    model: z.string().min(1),
    messages: z.array(chatMessageSchema).min(1),
    // Checked by the shared field rules (row-fields.ts) so the messages match the other inputs.
    temperature: z.unknown().optional(),
    max_tokens: z.unknown().optional(),
    max_completion_tokens: z.unknown().optional(),
  }),
});
export type OpenAiBatchLine = z.infer<typeof openAiBatchLineSchema>;

/**
 * A JSON object is read as a Batch API line when it has any of the keys that shape uses and no
 * prompt of its own: a line with `prompt` (or `promptKey`, --prompt-column) or `messages` is a
 * prompt line, whose `url`, `body`... are metadata like any other extra key.
 */
export function looksLikeOpenAiBatchLine(value: Record<string, unknown>, promptKey = 'prompt'): boolean {
  if ('prompt' in value || promptKey in value || 'messages' in value) return false;
  return 'custom_id' in value || 'body' in value || 'url' in value;
}

/**
 * Body fields sent with the call as the line gives them: they shape one text answer, as every
 * OpenAI-compatible API takes them. Others (n, tools, logprobs, stream, audio...) would change what
 * an answer is, so they are not sent.
 */
export const SENT_BODY_FIELDS: ReadonlySet<string> = new Set(['top_p', 'stop', 'seed', 'presence_penalty', 'frequency_penalty', 'response_format', 'logit_bias', 'user', 'reasoning_effort']);

/**
 * The line's fields for the shared row rules. `id` and `custom_id` are the line's custom_id;
 * `max_completion_tokens` wins over `max_tokens` when both are set. The body's SENT_BODY_FIELDS
 * go with the call (`params`); any other body field is kept as `metadata.body_extra`, not sent,
 * so nothing the user wrote is lost.
 */
export function openAiBatchLineFields(line: OpenAiBatchLine): RawFields {
  const { model, messages, temperature, max_tokens, max_completion_tokens, ...extra } = line.body;
  const params = Object.fromEntries(Object.entries(extra).filter(([key]) => SENT_BODY_FIELDS.has(key)));
  const unsent = Object.fromEntries(Object.entries(extra).filter(([key]) => !SENT_BODY_FIELDS.has(key)));
  return {
    id: line.custom_id,
    custom_id: line.custom_id,
    model,
    messages,
    temperature,
    ...tokenLimitFields(max_tokens, max_completion_tokens),
    metadata: Object.keys(unsent).length > 0 ? { body_extra: unsent } : {},
    ...(Object.keys(params).length > 0 && { params }),
  };
}
