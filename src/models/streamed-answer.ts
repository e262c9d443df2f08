import { APIError } from 'openai';
import type { Stream } from 'openai/core/streaming';
import type { ChatCompletionChunk } from 'openai/resources/chat';
import { cameLate, watchLoop } from './late-arrival.ts';
import { ModelCallError } from './model-error.ts';

/** What a streamed answer adds up to, once its last chunk is in. */
export interface StreamedAnswer {
  output: string;
  finishReason: string | null;
  /** The model's refusal, its `delta.refusal` pieces joined; null when it sent none. */
  refusal: string | null;
  /** The provider's usage chunk (asked for with stream_options.include_usage); null when it sent none. */
  usage: unknown;
  /** From the request's start to the first chunk with content; null when no content came. */
  ttftMs: number | null;
}

interface StreamContext {
  model: string;
  provider: string;
  baseUrl: string;
  /** The provider's timeout_ms: the longest wait for any next chunk. */
  idleTimeoutMs: number;
  /** performance.now() when the request was sent. */
  startedAt: number;
}

/**
 * Reads a chat completion stream to its end. The SDK's timeout stops at the response's headers, so
 * a stream that stalls would hang the row for ever: a chunk must arrive every `idleTimeoutMs`, or the
 * request is aborted and the call fails as a (retryable) timeout. Whether a chunk came in time is
 * judged by when it was read against its deadline (late-arrival.ts), not by whether it was read
 * before the deadline's timer ran: after a stall of this process's own, either can come first
 * (QA: a first chunk 100 ms late was taken, at times, after the tokenizer's load had blocked the
 * loop over the deadline). A stream cut off or ended with an
 * error event is retryable too: what came before is dropped, as a partial answer is no answer, but
 * the failure carries it (`streamedPart`), since the provider bills what it generated. A stream that
 * stalls or breaks after its finish_reason has its whole answer: it is kept.
 */
export async function readStreamedAnswer(stream: Stream<ChatCompletionChunk>, ctx: StreamContext): Promise<StreamedAnswer> {
  const parts: string[] = [];
  const refusalParts: string[] = [];
  let finishReason: string | null = null;
  let usage: unknown = null;
  let ttftMs: number | null = null;
  let chunks = 0;
  let stalled = false;
  let idle: NodeJS.Timeout | undefined;
  let deadline = 0;
  const stallAt = () => {
    stalled = true;
    stream.controller.abort();
  };
  const watch = () => {
    clearTimeout(idle);
    deadline = performance.now() + ctx.idleTimeoutMs;
    const due = deadline;
    // Called a stall after one more turn of the event loop: after a stall of this process's own, a
    // chunk that came meanwhile is read first, and judged by when it came (cameLate).
    idle = setTimeout(() => setImmediate(() => deadline === due && !stalled && stallAt()), ctx.idleTimeoutMs);
  };
  const stopWatchingLoop = watchLoop();
  const where = `model "${ctx.model}" at ${ctx.baseUrl}`;
  try {
    watch();
    for await (const chunk of stream) {
      if (cameLate(deadline)) {
        // Past its deadline: the stream is dropped, as the timer would have dropped it.
        stallAt();
        break;
      }
      chunks++;
      watch();
      const choice = chunk.choices[0];
      const content = choice?.delta?.content;
      if (content) parts.push(content);
      const refusal = choice?.delta?.refusal;
      if (refusal) refusalParts.push(refusal);
      // A refusal is the answer's first token as content is.
      if (content || refusal) ttftMs ??= Math.round(performance.now() - ctx.startedAt);
      if (choice?.finish_reason) finishReason = choice.finish_reason;
      if (chunk.usage) usage = chunk.usage;
    }
  } catch (error) {
    // Finished already: what broke (or stalled) was only the end of the stream, the usage chunk perhaps.
    if (finishReason !== null && (stalled || !(error instanceof APIError))) return answer();
    if (stalled) throw withPart(stallError());
    if (error instanceof APIError && typeof error.status !== 'number') {
      throw withPart(new ModelCallError({ code: 'server_error', model: ctx.model, retryable: true, message: `${where} sent an error in its streamed answer after ${chunkCount(chunks)}: ${error.message}` }));
    }
    if (error instanceof APIError || error instanceof ModelCallError) throw error;
    const reason = error instanceof Error ? error.message : String(error);
    throw withPart(new ModelCallError({ code: 'connection_error', model: ctx.model, retryable: true, message: `${where} broke off its streamed answer after ${chunkCount(chunks)}: ${reason}` }));
  } finally {
    clearTimeout(idle);
    deadline = Number.POSITIVE_INFINITY;
    stopWatchingLoop();
  }
  // The SDK ends the iteration quietly when its request is aborted: by the stall watch, or by the caller.
  if (stalled && finishReason !== null) return answer();
  if (stalled) throw withPart(stallError());
  if (stream.controller.signal.aborted) throw new ModelCallError({ code: 'unexpected_error', model: ctx.model, message: `${where}: the streamed call was cancelled after ${chunkCount(chunks)}` });
  if (chunks === 0) throw new ModelCallError({ code: 'empty_response', model: ctx.model, message: `${where} ended its stream without a single chunk` });
  if (finishReason === null) {
    throw withPart(new ModelCallError({ code: 'connection_error', model: ctx.model, retryable: true, message: `${where} ended its streamed answer after ${chunkCount(chunks)} without saying it was finished (no finish_reason): it was cut off on the way` }));
  }
  return answer();

  function answer(): StreamedAnswer {
    return { output: parts.join(''), finishReason, refusal: refusalParts.length > 0 ? refusalParts.join('') : null, usage, ttftMs };
  }

  /** The failure, with what came before it: the call is charged for it (call-model.ts). */
  function withPart(failure: ModelCallError): ModelCallError {
    if (chunks > 0) failure.streamedPart = { output: parts.join(''), usage };
    return failure;
  }

  function stallError(): ModelCallError {
    return new ModelCallError({ code: 'timeout', model: ctx.model, retryable: true, message: `${where} stopped sending its streamed answer: nothing for ${ctx.idleTimeoutMs} ms after ${chunkCount(chunks)} (providers.${ctx.provider}.timeout_ms)` });
  }
}

function chunkCount(chunks: number): string {
  return `${chunks} chunk${chunks === 1 ? '' : 's'}`;
}
