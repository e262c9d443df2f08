import { hostname } from 'node:os';
import { APIConnectionTimeoutError, APIError, APIUserAbortError } from 'openai';
import type { ChatCompletionCreateParamsNonStreaming, ChatCompletionCreateParamsStreaming } from 'openai/resources/chat';
import { MAX_TIMER_MS } from '../config/schema.ts';
import type { ChatMessage } from '../input/row.ts';
import type { Usage } from '../output/records.ts';
import { chatTokens } from '../routing/token-count.ts';
import { countTextsOffThread } from '../routing/token-count-thread.ts';
import { rateLimitResetMs } from '../limits/pacing.ts';
import { cameLate, watchLoop } from './late-arrival.ts';
import { classifyModelError, htmlPageText, ModelCallError } from './model-error.ts';
import { urlWithoutPassword } from './url-without-password.ts';
import type { ProviderClient } from './provider-clients.ts';
import { readStreamedAnswer } from './streamed-answer.ts';

export interface ModelRequest {
  /** The model's key in config (what results report). */
  model: string;
  /** The name sent to the endpoint. */
  upstream: string;
  messages: ChatMessage[];
  /** null: none is sent, the model keeps its own (a reasoning model's). */
  temperature: number | null;
  maxTokens: number;
  /** A reasoning model (models.<name>.reasoning): the token limit goes out as `max_completion_tokens`. */
  reasoning?: boolean;
  /** Other body fields, sent as given (the reader lets through only those that shape a text answer). */
  params?: Record<string, unknown>;
  /** Ask for the answer as a stream (models.<name>.stream). */
  stream?: boolean;
}

export interface ModelAnswer {
  output: string;
  usage: Usage;
  /** The provider sent no token usage: `usage` is counted here with a tokenizer (call-model.ts). */
  usageEstimated: boolean;
  /** Time spent counting those tokens after the answer came (the first count loads the tokenizer): not the call's latency. */
  countingMs: number;
  finishReason: string | null;
  /** The model declined to answer (the message's `refusal`, OpenAI's structured outputs): its text, `output` then empty. */
  refusal?: string | null;
  requestId: string | null;
  httpStatus: number;
  /** A streamed answer's time to its first content, from the request's start; null when not streamed. */
  ttftMs: number | null;
  /** Set when the answer's x-ratelimit-* headers say a limit is used up: how long until it resets. */
  limitExhaustedForMs?: number | null;
}

/**
 * A 200 whose x-ratelimit-remaining-requests (or -tokens) is 0 means the next call would get a
 * 429: returns the matching reset time, so every worker can hold off. The answer itself is kept.
 */
export function exhaustedLimitResetMs(headers: Headers): number | null {
  return rateLimitResetMs(headers, true);
}

/**
 * Why a request to this provider would be pointless, so it is not sent: no key in this process's
 * environment, or the key was rejected (401) moments ago (key-rejection.ts). Null when it may go.
 */
export function whyNotSendable(provider: ProviderClient, model: string): ModelCallError | null {
  if (provider.missingKeyEnv) {
    return new ModelCallError({
      code: 'missing_api_key',
      model,
      sent: false,
      // Workers on several machines share a queue: name the one without the key.
      message: `provider "${provider.name}" needs an API key in $${provider.missingKeyEnv}, which is not set (or is empty) for the worker on ${hostname()} (pid ${process.pid}), and no worker connected to this Redis had it: set $${provider.missingKeyEnv} for that worker, or start a worker with it set (a worker without it leaves such rows to one that has it for as long as one is connected, and a --detach batch's rows wait about 2 minutes for one to start)`,
    });
  }
  const refused = provider.keyRejection.current();
  if (!refused) return null;
  const what = refused.code === 'unauthorized' ? 'the key was just rejected' : "the provider just said the account is out of quota";
  return new ModelCallError({ code: refused.code, model, sent: false, message: `not sent, ${what}: ${refused.message}` });
}

function isCompletionShaped(data: unknown): data is { choices: unknown[] } {
  return typeof data === 'object' && data !== null && Array.isArray((data as { choices?: unknown }).choices);
}

/** A 2xx answer that is no chat completion, with the start of what it was. */
function notACompletion(data: unknown, response: Response, ctx: { model: string; provider: string; baseUrl: string }): ModelCallError {
  const reported = errorInBody(data);
  if (reported !== null) {
    // A gateway's way to pass on an upstream failure (OpenRouter and others): as a 5xx would be, retried, then the next model.
    return new ModelCallError({ code: 'server_error', model: ctx.model, status: response.status, retryable: true, message: `model "${ctx.model}" at ${ctx.baseUrl} answered ${response.status} with an error in its body: ${reported}` });
  }
  const raw = typeof data === 'string' ? data : (JSON.stringify(data) ?? String(data));
  // A login page's title says more than its first tags do.
  const text = /<html|<!doctype html/i.test(raw) ? htmlPageText(raw) : raw.replace(/\s+/g, ' ').slice(0, 120);
  const type = response.headers.get('content-type') ?? 'no content-type';
  return new ModelCallError({
    code: 'bad_response',
    model: ctx.model,
    status: response.status,
    message: `model "${ctx.model}" at ${ctx.baseUrl} answered ${response.status} with something that is not a chat completion (${type}: ${text}): check providers.${ctx.provider}.base_url, or what sits between (a proxy, a login page)`,
  });
}

/** `{"error": {"message", "code"?}}` (or a string error): what it says, else null. */
function errorInBody(data: unknown): string | null {
  if (typeof data !== 'object' || data === null || !('error' in data)) return null;
  const { error } = data as { error: unknown };
  if (typeof error === 'string' && error.trim() !== '') return error.slice(0, 300);
  if (typeof error !== 'object' || error === null) return null;
  const { message, code } = error as { message?: unknown; code?: unknown };
  if (typeof message !== 'string') return null;
  return `${message.slice(0, 300)}${typeof code === 'string' || typeof code === 'number' ? ` (code ${code})` : ''}`;
}

/** The answer's token usage, or null when the provider sent none (some gateways and local servers). */
function reportedUsage(usage: unknown): Usage | null {
  if (typeof usage !== 'object' || usage === null) return null;
  const { prompt_tokens: input, completion_tokens: output } = usage as { prompt_tokens?: unknown; completion_tokens?: unknown };
  // A prompt of no tokens was never read: a provider that says so counts nothing (some gateways send zeros), and the call is counted here.
  return typeof input === 'number' && typeof output === 'number' && input > 0 ? { input_tokens: input, output_tokens: output } : null;
}

/**
 * Without the provider's usage, the call would cost $0 and slip past budgets: count the tokens
 * here instead (o200k_base; another vocabulary than most providers', so a close estimate), off the
 * event loop, where the other calls in flight go on (token-count-thread.ts). `ms`, the wait for
 * the count (the first one's includes the tokenizer's load), is not the call's latency.
 */
async function estimatedUsage(request: ModelRequest, output: string): Promise<{ usage: Usage; ms: number }> {
  const from = performance.now();
  const [outputTokens = 0, ...contentTokens] = await countTextsOffThread([output, ...request.messages.map((message) => message.content)]);
  const usage = { input_tokens: chatTokens(contentTokens), output_tokens: outputTokens };
  return { usage, ms: Math.round(performance.now() - from) };
}

/**
 * A request that timed out went out, and the provider may well have processed it: providers bill
 * the prompt of a request they processed, whether or not its answer arrived. Such a call is
 * charged its prompt as counted here (output 0: nothing came back), so that costs.jsonl and the
 * budgets do not take it for free. Not a 408 (the provider answered that it gave up), nor a
 * refused connection or an error the provider answered with a status.
 */
function mayHaveBeenProcessed(failure: ModelCallError): boolean {
  return failure.code === 'timeout' && failure.status === null;
}

/**
 * What a call is charged: its answer's usage (reported, or counted when the provider sent none),
 * a timed-out request's estimated prompt, a streamed answer's that failed part-way (its usage
 * chunk, or its prompt and the text it sent, counted), or nothing; `countingMs` is the time the
 * counting took, which is not the call's latency.
 */
export function chargedUsage(answer: ModelAnswer | null, error: unknown): { usage: Usage; estimated: boolean; countingMs: number } {
  if (answer) return { usage: answer.usage, estimated: answer.usageEstimated, countingMs: answer.countingMs };
  const estimate = error instanceof ModelCallError ? error.estimatedUsage : null;
  if (estimate) return { usage: estimate.usage, estimated: estimate.reported !== true, countingMs: estimate.countingMs };
  return { usage: { input_tokens: 0, output_tokens: 0 }, estimated: false, countingMs: 0 };
}

/**
 * One chat completion through the `openai` SDK; throws ModelCallError on any failure. A call is not
 * cancelled once sent: a stopping process lets its calls in flight finish (their answers are paid for).
 */
export async function callModel(provider: ProviderClient, request: ModelRequest): Promise<ModelAnswer> {
  const ctx = { model: request.model, upstream: request.upstream, provider: provider.name, baseUrl: urlWithoutPassword(provider.config.base_url), apiKeyEnv: provider.config.api_key_env, timeoutMs: provider.config.timeout_ms, stream: request.stream };
  const unsendable = whyNotSendable(provider, request.model);
  if (unsendable) throw unsendable;
  try {
    const answer = request.stream ? await streamedCompletion(provider, request, ctx) : await wholeCompletion(provider, request, ctx);
    const { usage, ms } = answer.reported === null ? await estimatedUsage(request, answer.output) : { usage: answer.reported, ms: 0 };
    return {
      output: answer.output,
      usage,
      usageEstimated: answer.reported === null,
      countingMs: ms,
      finishReason: answer.finishReason,
      refusal: answer.refusal,
      requestId: answer.requestId,
      httpStatus: answer.response.status,
      ttftMs: answer.ttftMs,
      limitExhaustedForMs: exhaustedLimitResetMs(answer.response.headers),
    };
  } catch (error) {
    const failure = classifyModelError(error, ctx);
    if (error instanceof APIError) failure.requestId ??= error.requestID ?? null;
    if (failure.code === 'unauthorized' || failure.code === 'quota_exceeded') provider.keyRejection.record(failure.message, failure.code);
    const part = failure.streamedPart;
    const reported = part ? reportedUsage(part.usage) : null;
    if (reported) {
      failure.estimatedUsage = { usage: reported, countingMs: 0, reported: true };
    } else if (part || mayHaveBeenProcessed(failure)) {
      // The provider generated what it sent before the failure, and bills it.
      const { usage, ms } = await estimatedUsage(request, part?.output ?? '');
      failure.estimatedUsage = { usage, countingMs: ms };
    }
    throw failure;
  }
}

type CallContext = { model: string; provider: string; baseUrl: string; timeoutMs: number };

/** A failure whose body still reported usage: the provider bills it, so the call is charged it. */
function charged(failure: ModelCallError, data: unknown): ModelCallError {
  const usage = typeof data === 'object' && data !== null ? reportedUsage((data as { usage?: unknown }).usage) : null;
  if (usage) failure.estimatedUsage = { usage, countingMs: 0, reported: true };
  return failure;
}

interface Completion {
  output: string;
  reported: Usage | null;
  finishReason: string | null;
  refusal: string | null;
  requestId: string | null;
  response: Response;
  ttftMs: number | null;
}

function body(request: ModelRequest) {
  return {
    ...(request.params as Partial<ChatCompletionCreateParamsNonStreaming>),
    model: request.upstream,
    messages: request.messages,
    ...(request.temperature !== null && { temperature: request.temperature }),
    ...(request.reasoning ? { max_completion_tokens: request.maxTokens } : { max_tokens: request.maxTokens }),
  };
}

async function wholeCompletion(provider: ProviderClient, request: ModelRequest, ctx: CallContext): Promise<Completion> {
  const { data, response, request_id } = await provider.client.chat.completions.create(body(request)).withResponse();
  // The SDK hands back any 2xx body: a proxy's login page or a non-OpenAI API is not a completion.
  if (!isCompletionShaped(data)) throw charged(notACompletion(data, response, ctx), data);
  const choice = data.choices[0];
  const where = `model "${request.model}" at ${ctx.baseUrl}`;
  if (!choice) {
    throw charged(new ModelCallError({ code: 'empty_response', model: request.model, status: response.status, message: `${where} answered ${response.status} with no choices, so no answer: check models.${request.model}.upstream and providers.${ctx.provider}.base_url, or what sits between (a gateway)` }), data);
  }
  if (typeof choice.message !== 'object' || choice.message === null) {
    // An old text completions endpoint answers `choices[].text`.
    throw charged(new ModelCallError({ code: 'bad_response', model: request.model, status: response.status, message: `${where} answered ${response.status} with a choice that has no message${'text' in choice ? ' (a text completion\'s "text")' : ''}: providers.${ctx.provider}.base_url must be an OpenAI-compatible chat completions API` }), data);
  }
  const refusal = typeof choice.message.refusal === 'string' && choice.message.refusal !== '' ? choice.message.refusal : null;
  return { output: choice.message.content ?? '', reported: reportedUsage(data.usage), finishReason: choice.finish_reason ?? null, refusal, requestId: request_id ?? null, response, ttftMs: null };
}

async function streamedCompletion(provider: ProviderClient, request: ModelRequest, ctx: CallContext): Promise<Completion> {
  const startedAt = performance.now();
  // From the request on, so that the headers' lateness is judged as a chunk's is.
  const stopWatchingLoop = watchLoop();
  try {
    // include_usage: the last chunk then carries the call's usage (providers that ignore it get counted here).
    const params: ChatCompletionCreateParamsStreaming = { ...body(request), stream: true, stream_options: { include_usage: true } };
    const { data, response, request_id } = await withHeadersDeadline(ctx.timeoutMs, (sent) => provider.client.chat.completions.create(params, sent).withResponse());
    // Headers that came after the deadline but were read before its timer ran (streamed-answer.ts says when that happens).
    if (cameLate(startedAt + ctx.timeoutMs)) {
      data.controller.abort();
      throw new APIConnectionTimeoutError();
    }
    if (!response.headers.get('content-type')?.startsWith('text/event-stream')) {
      data.controller.abort();
      const type = response.headers.get('content-type') ?? 'no content-type';
      throw new ModelCallError({ code: 'bad_response', model: request.model, status: response.status, message: `model "${request.model}" at ${ctx.baseUrl} answered a streamed request with ${type}, not an event stream: set models.${request.model}.stream to false if the provider cannot stream` });
    }
    const streamed = await readStreamedAnswer(data, { model: request.model, provider: ctx.provider, baseUrl: ctx.baseUrl, idleTimeoutMs: ctx.timeoutMs, startedAt });
    return { output: streamed.output, reported: reportedUsage(streamed.usage), finishReason: streamed.finishReason, refusal: streamed.refusal, requestId: request_id ?? null, response, ttftMs: streamed.ttftMs };
  } finally {
    stopWatchingLoop();
  }
}

/**
 * A streamed request's wait for its headers, bounded here rather than by the SDK's timer, which
 * aborts the moment it runs: after a stall of this process's own, headers that came in time but
 * were not read yet were taken for a timeout. As a chunk's (streamed-answer.ts), the deadline calls
 * a timeout only after one more turn of the event loop, and headers read past it are judged by
 * cameLate. The SDK's timeout stays, twice as long, as a backstop.
 */
async function withHeadersDeadline<T>(timeoutMs: number, send: (options: { signal: AbortSignal; timeout: number }) => Promise<T>): Promise<T> {
  const due = new AbortController();
  let answered = false;
  const timer = setTimeout(() => setImmediate(() => answered || due.abort()), timeoutMs);
  try {
    // Capped at the longest timer: past it Node.js would fire the backstop at once (timeout_ms of 2^30 ms or more).
    return await send({ signal: due.signal, timeout: Math.min(2 * timeoutMs, MAX_TIMER_MS) });
  } catch (error) {
    if (error instanceof APIUserAbortError && due.signal.aborted) throw new APIConnectionTimeoutError();
    throw error;
  } finally {
    // The signal stays tied to the stream's body: it must not abort once the headers are in.
    answered = true;
    clearTimeout(timer);
  }
}
