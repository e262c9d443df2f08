import { SCORE_INSTRUCTION, SCORE_MAX, SCORE_MIN } from '../judge/judge-prompt.ts';
import { fnv1a, mulberry32 } from './prng.ts';
import { countCjk, estimateTokens, truncateToTokens } from './tokens.ts';

/**
 * The simulator's deterministic answer: the same model and messages always give the same text.
 * It names the model and echoes the start of the last user message, then lorem-like words up to a
 * length (in estimated tokens) picked from the configured range by a hash of the prompt. A judge's
 * request (src/judge/) gets a score line first, so evaluations can be tried without a provider.
 */

export interface AnswerInput {
  model: string;
  messages: readonly { role: string; text: string }[];
  /** The request's max_tokens: the answer stops there with finish_reason "length". */
  maxTokens?: number | undefined;
  outputTokens: { min: number; max: number };
}

export interface Answer {
  content: string;
  completionTokens: number;
  finishReason: 'stop' | 'length';
}

const WORDS = (
  'lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore ' +
  'et dolore magna aliqua enim ad minim veniam quis nostrud exercitation ullamco laboris nisi aliquip ex ' +
  'ea commodo consequat duis aute irure in reprehenderit voluptate velit esse cillum fugiat nulla ' +
  'pariatur excepteur sint occaecat cupidatat non proident sunt culpa qui officia deserunt mollit anim id est'
).split(' ');
const SNIPPET_CHARS = 40;

function promptHash(input: AnswerInput): number {
  let hash = fnv1a(input.model);
  for (const message of input.messages) {
    hash = fnv1a('\u0000', fnv1a(message.role, hash));
    hash = fnv1a(message.text, hash);
  }
  return hash;
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

export function composeAnswer(input: AnswerInput): Answer {
  const hash = promptHash(input);
  const { min, max } = input.outputTokens;
  const target = min + (hash % (max - min + 1));
  const header = isJudgeRequest(input) ? `SCORE: ${SCORE_MIN + (hash % (SCORE_MAX - SCORE_MIN + 1))}\n[${input.model}] Reason:` : `[${input.model}] Answer to "${snippet(input.messages)}":`;
  let content = fillWords(header, target, mulberry32(hash));
  if (estimateTokens(content) > target) content = truncateToTokens(content, target);
  let finishReason: Answer['finishReason'] = 'stop';
  if (input.maxTokens !== undefined && estimateTokens(content) > input.maxTokens) {
    content = truncateToTokens(content, input.maxTokens);
    finishReason = 'length';
  }
  return { content, completionTokens: estimateTokens(content), finishReason };
}
