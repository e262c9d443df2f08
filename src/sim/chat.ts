import { composeAnswer, type Answer } from './answer.ts';
import { invalidRequest, retryHeaders, statusError, errorAnswer, type ErrorAnswer } from './openai-error.ts';
import { effectiveModel, tpmCounting, type SimOptions } from './options.ts';
import type { RateLimiter } from './rate-limit.ts';
import { describeRequestError, messageText, parseChatRequest, requestedFormat, requestedMaxTokens, stopSequences } from './request.ts';
import { SchemaError } from './schema-value.ts';
import type { StatsCollector } from './stats.ts';
import { promptTokens as countPromptTokens, estimateTokens } from './tokens.ts';

/**
 * Decides what one chat-completions request gets, in this order: bad body 400 (a json_schema the
 * simulator cannot answer, a json_object asked for by messages without the word "json"), unknown model 404
 * (strict_models only), forced fail_status, context window 400, rate limit 429, random 500, answer.
 * Rejections before the rate limit are immediate; a random 500 and an answer wait the latency.
 */

export interface ChatEnv {
  options: SimOptions;
  limiter: RateLimiter;
  stats: StatsCollector;
  random: () => number;
  now: number;
}

export type ChatPlan =
  | { kind: 'error'; model: string | undefined; answer: ErrorAnswer; delayMs: number }
  | {
      kind: 'answer';
      model: string;
      answer: Answer;
      promptTokens: number;
      stream: boolean;
      includeUsage: boolean;
      /** Leave `usage` out of the answer (the model's omit_usage). */
      omitUsage: boolean;
      headers: Record<string, string>;
      /** Until the answer (a whole one) or its first token (a stream). */
      delayMs: number;
      /** Between a stream's words (tokens_per_second); 0: all at once. */
      wordIntervalMs: number;
    };

function rejection(model: string | undefined, answer: ErrorAnswer, delayMs = 0): ChatPlan {
  return { kind: 'error', model, answer, delayMs };
}

export function planChat(env: ChatEnv, body: unknown): ChatPlan {
  const parsed = parseChatRequest(body);
  if (!parsed.success) {
    const { message, param } = describeRequestError(parsed.error);
    return rejection(undefined, invalidRequest(message, 'invalid_request_body', param));
  }
  const request = parsed.data;
  const { model } = request;
  const messages = request.messages.map((message) => ({ role: message.role, text: messageText(message) }));
  const format = request.response_format;
  // As OpenAI and DeepSeek refuse it: a row that would fail there on every call fails here too, before it is paid for.
  if (format?.type === 'json_object' && !messages.some((message) => /json/i.test(message.text))) {
    return rejection(undefined, invalidRequest("'messages' must contain the word 'json' in some form, to use 'response_format' of type 'json_object'.", null, 'messages'));
  }
  // Providers read a json_schema as prompt, and bill it so.
  const schemaTokens = format?.type === 'json_schema' ? estimateTokens(JSON.stringify(format.json_schema)) : 0;
  const prompt = countPromptTokens(messages.map((message) => message.text)) + schemaTokens;
  const maxTokens = requestedMaxTokens(request);
  let answer: Answer;
  try {
    const input = { model, messages, maxTokens, outputTokens: env.options.output_tokens, format: requestedFormat(request), stop: stopSequences(request), seed: request.seed ?? undefined };
    answer = composeAnswer(input);
  } catch (error) {
    if (!(error instanceof SchemaError) || format?.type !== 'json_schema') throw error;
    return rejection(undefined, invalidRequest(`Invalid schema for response_format '${format.json_schema.name}': ${error.message}`, error.code, 'response_format'));
  }
  // The answer is deterministic, so its actual length is known at admission ('usage' counting).
  const limitTokens = prompt + (tpmCounting(env.options, model) === 'usage' ? answer.completionTokens : (maxTokens ?? answer.completionTokens));
  env.stats.received(model, limitTokens, env.now);

  if (env.options.strict_models && !Object.hasOwn(env.options.models, model)) return rejection(model, statusError(404, model));
  const settings = effectiveModel(env.options, model);
  if (settings.fail_status !== undefined) return rejection(model, statusError(settings.fail_status, model));
  if (settings.context_window !== undefined && prompt + (maxTokens ?? 0) > settings.context_window) {
    const message = `This model's maximum context length is ${settings.context_window} tokens. However, you requested ${prompt + (maxTokens ?? 0)} tokens (${prompt} in the messages${schemaTokens > 0 ? ' and the response_format schema' : ''}, ${maxTokens ?? 0} in the completion). Please reduce the length of the messages or completion.`;
    return rejection(model, invalidRequest(message, 'context_length_exceeded', 'messages'));
  }

  const decision = env.limiter.take(model, settings, limitTokens, env.now);
  if (!decision.ok) {
    const headers = decision.retryAfterMs === undefined ? decision.headers : { ...decision.headers, ...retryHeaders(decision.retryAfterMs) };
    return rejection(model, errorAnswer(429, { message: decision.message, type: decision.kind, code: 'rate_limit_exceeded' }, headers));
  }

  const jitter = settings.latency_jitter_ms > 0 ? (env.random() * 2 - 1) * settings.latency_jitter_ms : 0;
  const delayMs = Math.max(0, settings.latency_ms + jitter);
  if (settings.failure_rate > 0 && env.random() < settings.failure_rate) {
    const failure = statusError(500, model);
    return rejection(model, { ...failure, headers: { ...failure.headers, ...decision.headers } }, delayMs);
  }
  const stream = request.stream === true;
  const writingMs = settings.tokens_per_second > 0 ? (answer.completionTokens * 1000) / settings.tokens_per_second : 0;
  return {
    kind: 'answer',
    model,
    answer,
    promptTokens: prompt,
    stream,
    includeUsage: request.stream_options?.include_usage === true && !settings.omit_usage,
    omitUsage: settings.omit_usage,
    headers: decision.headers,
    delayMs: stream ? delayMs : delayMs + writingMs,
    wordIntervalMs: stream && settings.tokens_per_second > 0 ? 1000 / settings.tokens_per_second : 0,
  };
}
