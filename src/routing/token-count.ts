import { createRequire } from 'node:module';
import type { ChatMessage } from '../input/row.ts';

/**
 * Prompt token counts with a real BPE tokenizer: gpt-tokenizer's `o200k_base` (the GPT-4o / GPT-5
 * encoding), pure JavaScript, no install scripts, no network. Other providers' models (DeepSeek,
 * Qwen, GLM...) use their own vocabularies, so for them the count is a close estimate, not their
 * billing figure; it is used to keep prompts out of context windows they would overflow.
 *
 * The encoding's rank table is large: loading it takes 0.3-2 s of CPU in one synchronous stretch
 * (an `import()` would block as long while it evaluates the table) and about 75 MB. The counts here
 * load it in this thread, on the first count only: for `--dry-run` and tests, which have no model
 * calls in flight. Processes that do (run, worker, serve) count with token-count-thread.ts, which
 * loads it in a worker thread instead, so that the load does not hold up their calls.
 *
 * A chat's count = each message's content tokens + MESSAGE_OVERHEAD_TOKENS per message (the role
 * and the separators around it) + REPLY_PRIMING_TOKENS once (the assistant turn the model starts),
 * as in OpenAI's accounting for chat models. Special-token text such as "<|endoftext|>" in a prompt
 * is counted as plain text, never rejected.
 */

export const MESSAGE_OVERHEAD_TOKENS = 4;
export const REPLY_PRIMING_TOKENS = 3;
const TOKENIZER_ENCODING = 'o200k_base';
/** The module the counts load, here or in token-count-thread.ts's thread. */
export const ENCODING_MODULE = 'gpt-tokenizer/encoding/o200k_base';

type Encoding = typeof import('gpt-tokenizer/encoding/o200k_base');

const requireFromHere = createRequire(import.meta.url);
/** Treat special tokens in user text as text (the library throws on them by default; token-count-thread.ts passes the same). */
const PLAIN_TEXT = { disallowedSpecial: new Set<string>() };

let encoding: Encoding | null = null;
let loadMs: number | null = null;

function loadEncoding(): Encoding {
  if (encoding) return encoding;
  const started = performance.now();
  encoding = requireFromHere(ENCODING_MODULE) as Encoding;
  loadMs = performance.now() - started;
  return encoding;
}

/**
 * The longest stretch counted whole without a point where the encoding's pre-tokens always split.
 * gpt-tokenizer merges each pre-token's bytes in time quadratic in its length, and the split
 * pattern keeps a run of letters, of punctuation or of whitespace whole: counting 300,000 'x' or
 * a 200,000-letter DNA string took 40-70 s and blocked the event loop (every other row stalled,
 * BullMQ lost its job locks). 256 characters cost well under a millisecond.
 */
const MAX_RUN_CHARS = 256;

/**
 * Tokens in one piece of text (no chat overhead), in time linear in its length.
 *
 * The text is counted in pieces, cut where its pre-tokens are cut anyway (pieceEnd below), so the
 * sum is the exact count. A stretch of more than MAX_RUN_CHARS without such a point (a DNA
 * string, base64, a line of '=' or of spaces, a paragraph of Chinese) is also cut every
 * MAX_RUN_CHARS: each such cut can shift the count by about a token, nearly always up. The counts
 * feed context-window checks, budget holds and cost estimates, where a slight overcount is the
 * safe side.
 */
export function countTextTokens(text: string): number {
  if (text.length === 0) return 0;
  const { countTokens } = loadEncoding();
  let total = 0;
  for (const piece of textPieces(text)) total += countTokens(piece, PLAIN_TEXT);
  return total;
}

/** The pieces countTextTokens counts apart (see there), whose counts add up to the text's. */
export function textPieces(text: string): string[] {
  if (text.length <= MAX_RUN_CHARS) return [text];
  const pieces: string[] = [];
  for (let start = 0; start < text.length; ) {
    const end = pieceEnd(text, start);
    pieces.push(text.slice(start, end));
    start = end;
  }
  return pieces;
}

/**
 * Where the piece of `text` from `start` ends: the end of the text, or MAX_RUN_CHARS after the
 * last exact cut (see isExactCut), never inside a surrogate pair. Normal text is one piece.
 */
function pieceEnd(text: string, start: number): number {
  let runStart = start;
  for (let i = start + 1; i < text.length; i++) {
    if (isExactCut(text, i)) runStart = i;
    else if (i - runStart >= MAX_RUN_CHARS && !isLowSurrogate(text.charCodeAt(i))) return i;
  }
  return text.length;
}

/**
 * Whether no o200k pre-token spans position `i` (between text[i - 1] and text[i]), so counting
 * the text on each side apart gives the exact count. No pre-token goes on from a character that is
 * not whitespace into whitespace, except punctuation into line breaks (".\n" is one): so a
 * whitespace character after any other, or a line break after a letter or digit.
 */
function isExactCut(text: string, i: number): boolean {
  const code = text.charCodeAt(i);
  if (!isWhitespace(code)) return false;
  const before = text.charCodeAt(i - 1);
  if (isWhitespace(before)) return false;
  if (code !== 0x0a && code !== 0x0d) return true;
  return isAsciiAlphanumeric(before) || (before > 0x7f && LETTER_OR_DIGIT.test(text[i - 1]!));
}

const LETTER_OR_DIGIT = /^[\p{L}\p{N}]$/u;

/** JavaScript's `\s` (what the encoding's split pattern means by whitespace), by code unit. */
function isWhitespace(code: number): boolean {
  if (code <= 0x20) return code === 0x20 || (code >= 0x09 && code <= 0x0d);
  if (code < 0xa0) return false;
  return code === 0xa0 || code === 0x1680 || (code >= 0x2000 && code <= 0x200a) || code === 0x2028 || code === 0x2029 || code === 0x202f || code === 0x205f || code === 0x3000 || code === 0xfeff;
}

function isAsciiAlphanumeric(code: number): boolean {
  return (code >= 0x30 && code <= 0x39) || (code >= 0x41 && code <= 0x5a) || (code >= 0x61 && code <= 0x7a);
}

function isLowSurrogate(code: number): boolean {
  return code >= 0xdc00 && code <= 0xdfff;
}

/** Prompt tokens of a chat request: contents + per-message and reply overheads (see above). */
export function countMessageTokens(messages: readonly ChatMessage[]): number {
  return chatTokens(messages.map((message) => countTextTokens(message.content)));
}

/** A chat's prompt tokens from its messages' content tokens: with the overheads above. */
export function chatTokens(contentTokens: readonly number[]): number {
  let total = REPLY_PRIMING_TOKENS;
  for (const tokens of contentTokens) total += tokens + MESSAGE_OVERHEAD_TOKENS;
  return total;
}

/**
 * A request's prompt tokens, apart: its messages' (with the overheads above), and those of the
 * request fields sent beside them, as their JSON (`requestFieldsText`): providers read a structured
 * output's JSON schema as prompt, in the context window and the bill alike.
 */
export interface PromptCount {
  messages: number;
  fields: number;
}

/** The JSON of the request fields sent beside the messages, as counted; "" for none. */
export function requestFieldsText(params: Readonly<Record<string, unknown>> | undefined): string {
  return requestFields(params).text;
}

interface SerializedFields {
  text: string;
  bytes: number;
  /** estimateTextTokens of the text, made when first asked (a plan that counts them does not). */
  estimate: number | undefined;
}

/**
 * The request fields' JSON and its UTF-8 bytes, made once per fields object (a row's): its route
 * plan, its budget hold and each of its calls ask for them, and a 69 KB schema took 0.4 ms of
 * event loop to serialize each time. Fields are never changed once read. A row without any costs
 * nothing.
 */
function requestFields(params: Readonly<Record<string, unknown>> | undefined): SerializedFields {
  if (params === undefined) return NO_FIELDS;
  let fields = serializedFields.get(params);
  if (!fields) {
    const text = JSON.stringify(params);
    fields = { text, bytes: Buffer.byteLength(text, 'utf8'), estimate: undefined };
    serializedFields.set(params, fields);
  }
  return fields;
}
const NO_FIELDS: SerializedFields = { text: '', bytes: 0, estimate: 0 };
const serializedFields = new WeakMap<object, SerializedFields>();

/** countMessageTokens's count, and the fields' (requestFieldsText) with the same tokenizer. */
export function countPromptTokens(messages: readonly ChatMessage[], fieldsText: string): PromptCount {
  return { messages: countMessageTokens(messages), fields: countTextTokens(fieldsText) };
}

/**
 * The same apart count, estimated as estimateMessageTokens estimates (no tokenizer). The fields'
 * estimate is kept with their JSON: each plan of a row (an ensemble's members and synthesis) asks
 * for it, and its scan of a 114 KB schema's JSON took 0.25-0.7 ms, about as long as serializing it.
 */
export function estimatePromptTokens(messages: readonly ChatMessage[], params: Readonly<Record<string, unknown>> | undefined): PromptCount {
  const fields = requestFields(params);
  fields.estimate ??= estimateTextTokens(fields.text);
  return { messages: estimateMessageTokens(messages), fields: fields.estimate };
}

/**
 * A cheap estimate with no tokenizer, plus the same overheads: a quarter token per ASCII character
 * (English runs about four to a token), a token per other UTF-16 unit. A quarter per character
 * alone put Chinese or Japanese text at a quarter of its tokens, and the budget and tpm limits held
 * that little for calls that then cost four times as much.
 */
export function estimateMessageTokens(messages: readonly ChatMessage[]): number {
  let total = REPLY_PRIMING_TOKENS;
  for (const message of messages) total += estimateTextTokens(message.content) + MESSAGE_OVERHEAD_TOKENS;
  return total;
}

function estimateTextTokens(text: string): number {
  let other = 0;
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) > 0x7f) other++;
  return Math.ceil((text.length - other) / 4) + other;
}

/**
 * A bound the real count never exceeds, with no tokenizer: a byte-level BPE token covers at least
 * one UTF-8 byte. When even this fits a context window, there is no need to count.
 */
export function maxMessageTokens(messages: readonly ChatMessage[]): number {
  let total = REPLY_PRIMING_TOKENS;
  for (const message of messages) total += Buffer.byteLength(message.content, 'utf8') + MESSAGE_OVERHEAD_TOKENS;
  return total;
}

/**
 * The same bound for the request fields sent beside the messages (`response_format`, `stop`,
 * `logit_bias`...): providers read a structured output's JSON schema as prompt, and bill it so.
 */
export function maxParamsTokens(params: Readonly<Record<string, unknown>> | undefined): number {
  return requestFields(params).bytes;
}

/** Whether this thread has loaded the tokenizer, and how long the load took: the tests check that only a real count loads it, and a run's counts not here. */
export function tokenizerStatus(): { encoding: string; loaded: boolean; loadMs: number | null } {
  return { encoding: TOKENIZER_ENCODING, loaded: encoding !== null, loadMs };
}
