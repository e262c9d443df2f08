import type { Stream } from 'openai/core/streaming';
import type { ChatCompletionChunk } from 'openai/resources/chat';
import { describe, expect, it } from 'vitest';
import { cameLate, watchLoop } from '../../src/models/late-arrival.ts';
import { ModelCallError } from '../../src/models/model-error.ts';
import { readStreamedAnswer } from '../../src/models/streamed-answer.ts';

const chunk = (content: string | null, finish: ChatCompletionChunk.Choice['finish_reason']): ChatCompletionChunk => ({
  id: 'c',
  object: 'chat.completion.chunk',
  created: 0,
  model: 'm',
  choices: [{ index: 0, delta: content === null ? {} : { content }, finish_reason: finish }],
});

/** The whole answer, once `deliver` says it has come; like the SDK's, the iteration ends quietly when aborted. */
function streamDelivered(deliver: (arrived: () => void) => void): Stream<ChatCompletionChunk> {
  const controller = new AbortController();
  async function* chunks(): AsyncGenerator<ChatCompletionChunk> {
    const aborted = new Promise<'aborted'>((resolve) => controller.signal.addEventListener('abort', () => resolve('aborted'), { once: true }));
    const arrived = new Promise<'arrived'>((resolve) => deliver(() => resolve('arrived')));
    if ((await Promise.race([arrived, aborted])) === 'aborted') return;
    yield chunk('Hello', null);
    yield chunk(null, 'stop');
  }
  return Object.assign(chunks(), { controller }) as unknown as Stream<ChatCompletionChunk>;
}

/** This process busy (its event loop blocked) until `until` (performance.now()). */
function busyUntil(until: number): void {
  while (performance.now() < until) Math.sqrt(until);
}

const TIMEOUT_MS = 1000;

function read(stream: Stream<ChatCompletionChunk>) {
  return readStreamedAnswer(stream, { model: 'm', provider: 'p', baseUrl: 'http://provider/v1', idleTimeoutMs: TIMEOUT_MS, startedAt: performance.now() }).then(
    (answer) => answer,
    (error: unknown) => error as ModelCallError,
  );
}

describe('a streamed chunk judged against its deadline (timeout_ms)', () => {
  it('is a timeout when it came late, though it was read before the deadline\'s timer ran (QA: a first chunk 100 ms late was taken after a stall of ours)', async () => {
    const start = performance.now();
    // Busy from just before the deadline (a timer's callback, as the tokenizer's first load was)
    // until well after it: the chunk that came meanwhile is read before the overdue timer runs.
    const result = await read(streamDelivered((arrived) => setTimeout(() => {
      busyUntil(start + 1700);
      arrived();
    }, 950)));
    expect(result).toBeInstanceOf(ModelCallError);
    expect(result).toMatchObject({ code: 'timeout', retryable: true, message: expect.stringContaining('nothing for 1000 ms after 0 chunks (providers.p.timeout_ms)') });
  });

  it('is in time when this process was busy from well before the deadline, though its timer runs before the chunk is read', async () => {
    const start = performance.now();
    // Busy (after the poll: setImmediate) from 50 ms until past the deadline: the timer, overdue,
    // runs before the chunk that waited meanwhile (here a setImmediate queued by the stall) is read.
    const result = await read(streamDelivered((arrived) => setTimeout(() => setImmediate(() => {
      busyUntil(start + 1200);
      setImmediate(arrived);
    }), 50)));
    expect(result).toMatchObject({ output: 'Hello', finishReason: 'stop' });
  });

  it('is in time when read by its deadline, and late past it when the loop was free', () => {
    const stop = watchLoop();
    try {
      const now = performance.now();
      expect(cameLate(now + 10, now)).toBe(false);
      expect(cameLate(now - 100, now)).toBe(true);
    } finally {
      stop();
    }
  });
});
