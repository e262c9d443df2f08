import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import type { ChatMessage } from '../input/row.ts';
import { chatTokens, countTextTokens, ENCODING_MODULE, textPieces, type PromptCount } from './token-count.ts';

/**
 * Token counts for processes with model calls in flight (run, worker, serve), made in a worker
 * thread: the same counts as token-count.ts's, off the event loop.
 *
 * Loading the encoding takes 0.3-2 s of CPU in one synchronous stretch. On the event loop, the
 * first count of a run (an answer without usage, a call that timed out, a prompt measured against
 * a context window) held up everything else for that long: every call in flight had it added to
 * its latency_ms (QA, 300 rows at 300 ms simulated latency on a busy 2-core machine: a 1.4-2.1 s
 * stall, and a p95 of 2.4-2.9 s against 1.3-1.5 s with the count here), streamed chunks and
 * BullMQ's lock renewals waited. In the thread only the rows waiting for a count wait; counting a
 * long prompt (milliseconds per 100 KB) leaves the event loop too.
 *
 * The thread starts on the first count, so runs that never count pay neither its start nor the
 * encoding's memory, which is then in the thread instead of the main one (one copy, about 75 MB,
 * and some 15 MB for the thread). It does not keep the process alive while no count is pending.
 * Texts are cut into pieces here (textPieces: a linear scan) and counted there. Should the thread
 * fail to start or die, counts are made in this thread as before: slower to load, never wrong.
 */

/** The thread's code: CommonJS, evaluated (no file of its own to find from src/ or the bundle in dist/). */
const THREAD_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
// The compile cache cli.ts enables does not reach worker threads: the table compiles ~20% faster from it.
require('node:module').enableCompileCache?.();
const started = performance.now();
const { countTokens } = require(workerData.encodingPath);
const plainText = { disallowedSpecial: new Set() };
parentPort.postMessage({ loadMs: performance.now() - started });
parentPort.on('message', ({ id, texts }) => {
  const counts = texts.map((pieces) => pieces.reduce((sum, piece) => sum + countTokens(piece, plainText), 0));
  parentPort.postMessage({ id, counts });
});
`;

type ThreadMessage = { loadMs: number } | { id: number; counts: number[] };

interface PendingCount {
  texts: readonly string[];
  resolve: (counts: number[]) => void;
  reject: (error: unknown) => void;
}

/** The counts made in this thread, a throw (no tokenizer to load) as the promise's rejection. */
function countedHere(texts: readonly string[]): Promise<number[]> {
  return new Promise((resolve) => resolve(texts.map(countTextTokens)));
}

const requireFromHere = createRequire(import.meta.url);
const pending = new Map<number, PendingCount>();
let thread: Worker | null = null;
let failed = false;
let nextId = 0;
let threadLoadMs: number | null = null;

function startThread(): Worker {
  const worker = new Worker(THREAD_SOURCE, { eval: true, workerData: { encodingPath: requireFromHere.resolve(ENCODING_MODULE) } });
  worker.on('message', (message: ThreadMessage) => {
    if ('loadMs' in message) {
      threadLoadMs = message.loadMs;
      return;
    }
    const request = pending.get(message.id);
    if (!request) return;
    pending.delete(message.id);
    if (pending.size === 0) worker.unref();
    request.resolve(message.counts);
  });
  const fail = (): void => {
    if (thread !== worker) return;
    failed = true;
    thread = null;
    const stranded = [...pending.values()];
    pending.clear();
    for (const request of stranded) countedHere(request.texts).then(request.resolve, request.reject);
  };
  worker.on('error', fail);
  worker.on('exit', fail);
  return worker;
}

/** Each text's tokens (countTextTokens's counts), counted in the thread. */
export function countTextsOffThread(texts: readonly string[]): Promise<number[]> {
  // Nothing to count needs no thread (a timed-out call's empty output beside a prompt still goes).
  if (texts.every((text) => text.length === 0)) return Promise.resolve(texts.map(() => 0));
  if (failed) return countedHere(texts);
  const worker = (thread ??= startThread());
  const id = nextId++;
  return new Promise((resolve, reject) => {
    pending.set(id, { texts, resolve, reject });
    worker.ref();
    worker.postMessage({ id, texts: texts.map(textPieces) });
  });
}

/** countPromptTokens's count (the messages', the request fields' apart), made in the thread in one go. */
export async function countPromptTokensOffThread(messages: readonly ChatMessage[], fieldsText: string): Promise<PromptCount> {
  const counts = await countTextsOffThread([...messages.map((message) => message.content), fieldsText]);
  return { messages: chatTokens(counts.slice(0, -1)), fields: counts.at(-1) ?? 0 };
}

/** Whether the thread was started, and how long its load of the encoding took (null until done): for the tests. */
export function tokenThreadStatus(): { started: boolean; loadMs: number | null } {
  return { started: thread !== null || failed, loadMs: threadLoadMs };
}
