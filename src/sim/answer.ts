import { SCORE_INSTRUCTION, SCORE_MAX, SCORE_MIN } from '../judge/judge-prompt.ts';
import { WORDS } from './lorem.ts';
import { fnv1a, mulberry32 } from './prng.ts';
import { valueForSchema } from './schema-value.ts';
import { countCjk, estimateTokens, truncateToTokens } from './tokens.ts';

/**
 * The simulator's deterministic answer: the same model, messages and seed always give the same text.
 * It names the model and echoes the start of the last user message, then lorem-like words up to a
 * length (in estimated tokens) picked from the configured range by a hash of the prompt. A judge's
 * request (src/judge/) gets a score line first, so evaluations can be tried without a provider.
 * A JSON response_format gets JSON instead: an object holding such an answer, or a value of the
 * schema (schema-value.ts). Then, as providers do, it ends before the first stop sequence, or at
 * max_tokens with finish_reason "length" (JSON cut there is no longer valid, as on a provider).
 */

/** What a response_format asks for; text answers need none. A json_schema without a schema is json_object. */
export type AnswerFormat = { type: 'json_object' } | { type: 'json_schema'; schema: unknown };

export interface AnswerInput {
  model: string;
  messages: readonly { role: string; text: string }[];
  /** The request's max_tokens: the answer stops there with finish_reason "length". */
  maxTokens?: number | undefined;
  outputTokens: { min: number; max: number };
  format?: AnswerFormat | undefined;
  /** Stop sequences: the answer ends before the first one it contains. */
  stop?: readonly string[] | undefined;
  /** The request's seed: another seed, another answer (the same for the same seed). */
  seed?: number | undefined;
}

export interface Answer {
  content: string;
  completionTokens: number;
  finishReason: 'stop' | 'length';
  /** JSON content, which a stream splits at its commas and colons too. */
  json: boolean;
}

const SNIPPET_CHARS = 40;

function promptHash(input: AnswerInput): number {
  let hash = fnv1a(input.model);
  for (const message of input.messages) {
    hash = fnv1a('\u0000', fnv1a(message.role, hash));
    hash = fnv1a(message.text, hash);
  }
  return input.seed === undefined ? hash : fnv1a(String(input.seed), fnv1a('\u0001', hash));
}

function snippet(messages: AnswerInput['messages']): string {
  const source = messages.findLast((message) => message.role === 'user') ?? messages.at(-1);
  const text = (source?.text ?? '').slice(0, SNIPPET_CHARS * 4).replace(/\s+/g, ' ').trim();
  return text.length > SNIPPET_CHARS ? `${text.slice(0, SNIPPET_CHARS)}...` : text;
}

/** Appends words (ending in ".") while the estimate stays within `target` tokens. */
function fillWords(header: string, target: number, random: () => number): string {
  const cjk = countCjk(header);
  const budget = 4 * (target - cjk); // characters the non-CJK part may reach
  const parts = [header];
  let length = header.length + 1; // + the final "."
  let sentenceLeft = 0;
  for (;;) {
    const startsSentence = sentenceLeft === 0;
    // Starting a new sentence closes the previous one with a "." (the first follows the header).
    const extra = startsSentence && parts.length > 1 ? 1 : 0;
    let word = WORDS[Math.floor(random() * WORDS.length)] ?? 'a';
    if (length + extra + 1 + word.length > budget) word = 'a';
    if (length + extra + 1 + word.length > budget) break;
    if (startsSentence) {
      if (extra > 0) parts[parts.length - 1] += '.';
      word = word.charAt(0).toUpperCase() + word.slice(1);
      sentenceLeft = 6 + Math.floor(random() * 8);
    }
    parts.push(word);
    length += extra + 1 + word.length;
    sentenceLeft--;
  }
  return `${parts.join(' ')}.`;
}

function isJudgeRequest(input: AnswerInput): boolean {
  return input.messages.findLast((message) => message.role === 'user')?.text.includes(SCORE_INSTRUCTION) ?? false;
}

/** `{"answer": ..., "model": ..., "question": ...}`, about `target` tokens long. */
function jsonObjectContent(input: AnswerInput, target: number, random: () => number): string {
  const question = snippet(input.messages);
  const frame = estimateTokens(JSON.stringify({ answer: '', model: input.model, question }));
  const answer = fillWords('', Math.max(1, target - frame), random).trimStart();
  return JSON.stringify({ answer, model: input.model, question });
}

/** The JSON a response_format asks for: a value of its schema, else a json_object answer. */
function jsonContent(input: AnswerInput, format: AnswerFormat, hash: number, target: number): string {
  if (format.type === 'json_schema' && format.schema !== undefined) return JSON.stringify(valueForSchema(format.schema, mulberry32(hash)));
  return jsonObjectContent(input, target, mulberry32(hash));
}

/** The content up to the first of the stop sequences it contains (empty ones never match). */
function beforeStop(content: string, stop: readonly string[]): string {
  let end = content.length;
  for (const sequence of stop) {
    if (sequence === '') continue;
    const at = content.indexOf(sequence);
    if (at !== -1 && at < end) end = at;
  }
  return content.slice(0, end);
}

/** Throws a SchemaError (schema-value.ts) for a json_schema outside the simulator's subset. */
export function composeAnswer(input: AnswerInput): Answer {
  const hash = promptHash(input);
  const { min, max } = input.outputTokens;
  const target = min + (hash % (max - min + 1));
  const { format } = input;
  let content: string;
  if (format === undefined) {
    // Kept inline: in a function of its own, this hot path of the throughput benchmarks measured 5% slower.
    const header = isJudgeRequest(input) ? `SCORE: ${SCORE_MIN + (hash % (SCORE_MAX - SCORE_MIN + 1))}\n[${input.model}] Reason:` : `[${input.model}] Answer to "${snippet(input.messages)}":`;
    content = fillWords(header, target, mulberry32(hash));
    if (estimateTokens(content) > target) content = truncateToTokens(content, target);
  } else content = jsonContent(input, format, hash, target);
  if (input.stop !== undefined) content = beforeStop(content, input.stop);
  let finishReason: Answer['finishReason'] = 'stop';
  if (input.maxTokens !== undefined && estimateTokens(content) > input.maxTokens) {
    content = truncateToTokens(content, input.maxTokens);
    finishReason = 'length';
  }
  return { content, completionTokens: estimateTokens(content), finishReason, json: format !== undefined };
}
