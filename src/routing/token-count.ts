import { createRequire } from 'node:module';
import type { ChatMessage } from '../input/row.ts';

/**
 * Prompt token counts with a real BPE tokenizer: gpt-tokenizer's `o200k_base` (the GPT-4o / GPT-5
 * encoding), pure JavaScript, no install scripts, no network. Other providers' models (DeepSeek,
 * Qwen, GLM...) use their own vocabularies, so for them the count is a close estimate, not their
 * billing figure; it is used to keep prompts out of context windows they would overflow.
 *
 * The encoding's rank table is large: loading it takes roughly 0.3-1 s of CPU. It is therefore
 * loaded on the first count only (then cached for the process), so commands and rows that never
 * count tokens never pay for it. The load is synchronous (`require` of the package's CommonJS
 * build) so that counting stays a plain function call; an `import()` would block the event loop
 * for the same time while it evaluates the table anyway.
 *
 * A chat's count = each message's content tokens + MESSAGE_OVERHEAD_TOKENS per message (the role
 * and the separators around it) + REPLY_PRIMING_TOKENS once (the assistant turn the model starts),
 * as in OpenAI's accounting for chat models. Special-token text such as "<|endoftext|>" in a prompt
 * is counted as plain text, never rejected.
 */

export const MESSAGE_OVERHEAD_TOKENS = 4;
export const REPLY_PRIMING_TOKENS = 3;
export const TOKENIZER_ENCODING = 'o200k_base';

type Encoding = typeof import('gpt-tokenizer/encoding/o200k_base');

const requireFromHere = createRequire(import.meta.url);
/** Treat special tokens in user text as text (the library throws on them by default). */
const PLAIN_TEXT = { disallowedSpecial: new Set<string>() };

let encoding: Encoding | null = null;
let loadMs: number | null = null;

function loadEncoding(): Encoding {
  if (encoding) return encoding;
  const started = performance.now();
  encoding = requireFromHere('gpt-tokenizer/encoding/o200k_base') as Encoding;
  loadMs = performance.now() - started;
  return encoding;
}

/** Tokens in one piece of text (no chat overhead). */
export function countTextTokens(text: string): number {
  if (text.length === 0) return 0;
  return loadEncoding().countTokens(text, PLAIN_TEXT);
}

/** Prompt tokens of a chat request: contents + per-message and reply overheads (see above). */
export function countMessageTokens(messages: readonly ChatMessage[]): number {
  let total = REPLY_PRIMING_TOKENS;
  for (const message of messages) total += countTextTokens(message.content) + MESSAGE_OVERHEAD_TOKENS;
  return total;
}

/** A cheap estimate with no tokenizer: a quarter token per character, plus the same overheads. */
export function estimateMessageTokens(messages: readonly ChatMessage[]): number {
  let total = REPLY_PRIMING_TOKENS;
  for (const message of messages) total += Math.ceil(message.content.length / 4) + MESSAGE_OVERHEAD_TOKENS;
  return total;
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

/** Whether this process has loaded the tokenizer, and how long the load took (for logs and benchmarks). */
export function tokenizerStatus(): { encoding: string; loaded: boolean; loadMs: number | null } {
  return { encoding: TOKENIZER_ENCODING, loaded: encoding !== null, loadMs };
}
