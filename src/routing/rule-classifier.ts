import type { RoutingConfig, TaskTypeRule } from '../config/schema.ts';
import { askingMessage, type ChatMessage } from '../input/row.ts';
import { DEFAULT_TASK_TYPES } from './default-task-types.ts';

/**
 * The rules classifier: keywords and length decide a prompt's task type.
 *
 * Scoring, per task type in config order: score = its keywords the prompt matches x weight, each
 * keyword once however many words it matches ("analyze" and "analysis" for "analy*": 1), and a word
 * matched by two of a type's keywords ("programming" by "programming" and "programm*") once; a prompt of at
 * least `min_chars` characters scores at least `min_score`. Types scoring `min_score` or more are
 * candidates; the highest score wins and a tie goes to the earlier type; no candidate gives
 * `default_task_type`.
 *
 * Keywords match whole words, case-insensitively: "ad" does not match "read". A trailing `*`
 * matches a word prefix ("strateg*" matches "strategic"); spaces inside a keyword match any
 * whitespace ("stack trace"). Words are runs of letters, digits, marks and `_`. A keyword that
 * starts or ends in a script written without spaces (Chinese, Japanese, Thai) needs no word
 * boundary on that side, so "代码" is found inside "写一段代码"; and such a script's characters end
 * the words of others, so "python" is found in "用Python写".
 *
 * A prompt is scanned once whatever the number of types (classification runs for every row): at
 * each position only the keywords that start with that character are tried, longest first. (One
 * RegExp of every keyword did the same, but V8 took 20-40 ms to compile its Unicode classes, on the
 * way to a batch's first model call.)
 */

/** A word character exactly at `lastIndex` (sticky, so no substring is made to test one). */
const WORD_CHAR_AT = /[\p{L}\p{N}\p{M}_]/uy;
const SPACE = /\s/;
/** A character of a script written without spaces exactly at `lastIndex`. */
const NO_SPACE_SCRIPT_AT = /[\p{Script=Han}\p{Script=Hiragana}\p{Script=Katakana}\p{Script=Thai}\p{Script=Lao}\p{Script=Khmer}\p{Script=Myanmar}]/uy;
/** How many matched words a reason lists before it says "+N more". */
const REASON_WORDS = 4;

interface CompiledType {
  name: string;
  weight: number;
  minScore: number;
  minChars: number | undefined;
}

interface Keyword {
  /** As written in config, lowercased, without the `*`, inner spaces single. */
  text: string;
  prefix: boolean;
  /** Indexes into CompiledRules.types of the types that list this keyword. */
  types: number[];
}

/**
 * First character code -> the keywords starting with it, in the order they are tried: `all`, and
 * `midWord` for a position right after a word character (only keywords that need no word start).
 */
interface KeywordMatchers {
  all: CandidateTable;
  midWord: CandidateTable;
}

/** Candidates by character code: an array for ASCII (the common case), a Map for the rest. */
interface CandidateTable {
  ascii: Array<KeywordMatcher[] | undefined>;
  other: Map<number, KeywordMatcher[]>;
}

function candidateTable(): CandidateTable {
  return { ascii: new Array<KeywordMatcher[] | undefined>(128).fill(undefined), other: new Map() };
}

function addCandidate(table: CandidateTable, code: number, matcher: KeywordMatcher): void {
  if (code < 128) (table.ascii[code] ??= []).push(matcher);
  else table.other.set(code, [...(table.other.get(code) ?? []), matcher]);
}

function candidates(table: CandidateTable, code: number): KeywordMatcher[] | undefined {
  return code < 128 ? table.ascii[code] : table.other.get(code);
}

/** How a keyword is found in a prompt. */
interface KeywordMatcher {
  text: string;
  /** Matches a word beginning with `text`, up to the word's end. */
  prefix: boolean;
  /** It may not start right after a word character (it begins with one, in a script with spaces). */
  wordStart: boolean;
  /** It may not end right before a word character (likewise; a prefix runs to the word's end anyway). */
  wordEnd: boolean;
}

export interface CompiledRules {
  /** Task types in priority order. */
  readonly types: readonly CompiledType[];
  readonly defaultTaskType: string;
  /** Every label a prompt can get: the types, then the default type when it is not one of them. */
  readonly labels: readonly string[];
  readonly keywords: readonly Keyword[];
  readonly matchers: KeywordMatchers;
  /** Lowercased exact keyword (spaces collapsed) -> keyword index. */
  readonly exact: ReadonlyMap<string, number>;
  /** Indexes of the prefix keywords. */
  readonly prefixes: readonly number[];
  readonly multiWord: boolean;
}

export interface RuleClassification {
  taskType: string;
  /** Short and human-readable, e.g. "rules: complex (analyze, strategy; score 2)". */
  reason: string;
}

function parseKeyword(raw: string, typeName: string): { text: string; prefix: boolean } {
  const trimmed = raw.trim().toLowerCase();
  const prefix = trimmed.endsWith('*');
  const text = (prefix ? trimmed.slice(0, -1) : trimmed).trim().replace(/\s+/g, ' ');
  if (text.length === 0 || text.includes('*')) {
    throw new Error(`routing.task_types.${typeName}.keywords: "${raw}" is not a keyword (a word or phrase, with an optional trailing * for a prefix)`);
  }
  return { text, prefix };
}

/** ASCII letters, digits and `_`: the common case of a word character, without a RegExp. */
const ASCII_WORD = new Uint8Array(128).map((_, code) => Number(/[A-Za-z0-9_]/.test(String.fromCharCode(code))));

/** Whether a word character (a whole code point) starts at `index`. */
function isWordCharAt(text: string, index: number): boolean {
  if (index < 0 || index >= text.length) return false;
  const code = text.charCodeAt(index);
  if (code < 128) return ASCII_WORD[code] === 1;
  WORD_CHAR_AT.lastIndex = index;
  return WORD_CHAR_AT.test(text);
}

/**
 * Whether a word character that a word of a script written with spaces runs on into starts at
 * `index`. A character of a script written without spaces is not one: "用Python写" holds the word
 * "Python", as Chinese and Japanese put Latin words straight beside their own characters.
 */
function isBoundingWordCharAt(text: string, index: number): boolean {
  if (!isWordCharAt(text, index)) return false;
  if (text.charCodeAt(index) < 128) return true;
  NO_SPACE_SCRIPT_AT.lastIndex = index;
  return !NO_SPACE_SCRIPT_AT.test(text);
}

/** Where the code point starting at `index` ends. */
function nextCodePoint(text: string, index: number): number {
  const code = text.charCodeAt(index);
  return code >= 0xd800 && code <= 0xdbff && index + 1 < text.length ? index + 2 : index + 1;
}

/** The index of the code point that ends right before `index` (a surrogate pair counts as one). */
function previousCodePoint(text: string, index: number): number {
  const low = text.charCodeAt(index - 1);
  return low >= 0xdc00 && low <= 0xdfff && index >= 2 ? index - 2 : index - 1;
}

/**
 * Plain words (bounded by word characters on both sides) are tried before keywords that start or
 * end in punctuation or in a script written without spaces; within each, the longest first, so
 * "stack trace" is tried before "stack" at the same position.
 */
function buildMatchers(keywords: readonly Keyword[]): KeywordMatchers {
  // Word characters and scripts are judged by whole code points (an emoji or a CJK Extension B
  // character is one, though it takes two UTF-16 units).
  const entries = keywords.map((keyword) => {
    const boundedStart = isBoundingWordCharAt(keyword.text, 0);
    const boundedEnd = isBoundingWordCharAt(keyword.text, previousCodePoint(keyword.text, keyword.text.length));
    const matcher: KeywordMatcher = { text: keyword.text, prefix: keyword.prefix, wordStart: boundedStart, wordEnd: boundedEnd && !keyword.prefix };
    return { matcher, plain: boundedStart && (boundedEnd || keyword.prefix) };
  });
  entries.sort((a, b) => Number(b.plain) - Number(a.plain) || b.matcher.text.length - a.matcher.text.length);
  const all = candidateTable();
  const midWord = candidateTable();
  for (const { matcher } of entries) {
    const first = matcher.text.charCodeAt(0);
    addCandidate(all, first, matcher);
    if (!matcher.wordStart) addCandidate(midWord, first, matcher);
  }
  return { all, midWord };
}

/** Where `matcher` ends when it matches `text` (lowercased) at `start`, else -1. */
function matchEnd(text: string, start: number, matcher: KeywordMatcher, atWordStart: boolean): number {
  if (matcher.wordStart && !atWordStart) return -1;
  const keyword = matcher.text;
  let at = start;
  for (let i = 0; i < keyword.length; i++) {
    const code = keyword.charCodeAt(i);
    if (code === 32) {
      // A space in a keyword matches any run of whitespace ("stack\n trace").
      if (!SPACE.test(text.charAt(at))) return -1;
      do at++;
      while (at < text.length && SPACE.test(text.charAt(at)));
    } else if (text.charCodeAt(at) === code) {
      at++;
    } else {
      return -1;
    }
  }
  if (matcher.prefix) {
    while (isBoundingWordCharAt(text, at)) at = nextCodePoint(text, at);
  } else if (matcher.wordEnd && isBoundingWordCharAt(text, at)) {
    return -1;
  }
  return at;
}

/** Each keyword match in the prompt, left to right, as the matched text (lowercased). */
function keywordMatches(text: string, matchers: KeywordMatchers): string[] {
  const matches: string[] = [];
  const lower = text.toLowerCase();
  // Inside an ASCII word only keywords that need no word start can begin; elsewhere, every
  // candidate is tried and matchEnd checks the boundary itself.
  let afterAsciiWordChar = false;
  for (let at = 0; at < lower.length; ) {
    const code = lower.charCodeAt(at);
    let end = -1;
    const tried = candidates(afterAsciiWordChar ? matchers.midWord : matchers.all, code);
    if (tried) {
      const atWordStart = at === 0 || !isBoundingWordCharAt(lower, previousCodePoint(lower, at));
      for (const matcher of tried) {
        end = matchEnd(lower, at, matcher, atWordStart);
        if (end > at) break;
      }
    }
    if (end > at) {
      matches.push(lower.slice(at, end));
      const last = lower.charCodeAt(end - 1);
      afterAsciiWordChar = last < 128 && ASCII_WORD[last] === 1;
      at = end;
    } else {
      afterAsciiWordChar = code < 128 && ASCII_WORD[code] === 1;
      at++;
    }
  }
  return matches;
}

export function compileTaskRules(routing: RoutingConfig | undefined): CompiledRules {
  const source: Readonly<Record<string, TaskTypeRule>> = routing?.task_types ?? DEFAULT_TASK_TYPES;
  const defaultTaskType = routing?.default_task_type ?? 'simple';
  const types: CompiledType[] = [];
  const keywords: Keyword[] = [];
  const byKey = new Map<string, number>();

  for (const [name, rule] of Object.entries(source)) {
    const typeIndex = types.push({ name, weight: rule.weight, minScore: rule.min_score, minChars: rule.min_chars }) - 1;
    for (const raw of rule.keywords) {
      const parsed = parseKeyword(raw, name);
      const key = `${parsed.prefix ? '*' : '='}${parsed.text}`;
      let index = byKey.get(key);
      if (index === undefined) {
        index = keywords.push({ ...parsed, types: [] }) - 1;
        byKey.set(key, index);
      }
      const keyword = keywords[index] as Keyword;
      if (!keyword.types.includes(typeIndex)) keyword.types.push(typeIndex);
    }
  }

  const exact = new Map<string, number>();
  const prefixes: number[] = [];
  keywords.forEach((keyword, index) => (keyword.prefix ? prefixes.push(index) : exact.set(keyword.text, index)));
  const matchers = buildMatchers(keywords);
  const labels = types.map((type) => type.name);
  if (!labels.includes(defaultTaskType)) labels.push(defaultTaskType);

  return { types, defaultTaskType, labels, keywords, matchers, exact, prefixes, multiWord: keywords.some((k) => k.text.includes(' ')) };
}

/**
 * What the rules read from a row's messages: the system and developer messages (a batch's shared
 * instructions often say what kind of work it is) and the last user message (the question itself),
 * joined by newlines. `chars`, the length that `min_chars` is compared with, counts only the last
 * user message: a long system prompt shared by every row says nothing about how hard this row is,
 * and counting it would send a whole batch to the expensive model. Earlier turns of a conversation
 * and assistant messages are left out.
 */
export function classificationInput(messages: readonly ChatMessage[]): { text: string; chars: number } {
  const { read, lastUser } = classifiedMessages(messages);
  return { text: read.map((message) => readByRules(message.content)).join('\n'), chars: lastUser?.content.length ?? 0 };
}

/**
 * The same messages whole, for the LLM classifier, which shows its model the text's start and its
 * end and says how much it left out (llm-classifier.ts): the rules' share would end mid-document,
 * where a long document's closing instruction ("Translate the above...") is not.
 */
export function llmClassifierInput(messages: readonly ChatMessage[]): string {
  return classifiedMessages(messages)
    .read.map((message) => message.content)
    .join('\n');
}

function classifiedMessages(messages: readonly ChatMessage[]): { read: ChatMessage[]; lastUser: ChatMessage | undefined } {
  const lastUser = askingMessage(messages);
  return { read: messages.filter((message) => message.role === 'system' || message.role === 'developer' || message === lastUser), lastUser };
}

/**
 * The most characters of each message the rules read. Matching is linear in the text, but on the
 * event loop: a 50 MB document held `serve` for 2.8 s, most of it here (QA: other batches' status
 * went unanswered meanwhile). What kind of work a prompt is shows in its first pages; `chars`
 * still counts the whole message, and the LLM classifier gets the messages whole (llmClassifierInput).
 */
export const RULES_READ_CHARS = 100_000;

/** The message's first RULES_READ_CHARS, cut at whitespace near there (a keyword is not matched from half a word), never within a surrogate pair. */
function readByRules(content: string): string {
  if (content.length <= RULES_READ_CHARS) return content;
  let cut = RULES_READ_CHARS;
  for (let at = RULES_READ_CHARS; at > RULES_READ_CHARS - 256; at--) {
    if (content.charCodeAt(at) <= 32) {
      cut = at;
      break;
    }
  }
  const last = content.charCodeAt(cut - 1);
  if (last >= 0xd800 && last <= 0xdbff) cut -= 1;
  return content.slice(0, cut);
}

function formatScore(score: number): string {
  return String(Number(score.toFixed(2)));
}

/** Classifies one prompt. `chars` (default: the text's length) is what `min_chars` is compared with. */
export function classifyByRules(text: string, rules: CompiledRules, chars: number = text.length): RuleClassification {
  const { types, keywords } = rules;
  // Keyword index -> the first word in the prompt that matched it (for the reason).
  const found = new Map<number, string>();

  for (let word of keywordMatches(text, rules.matchers)) {
    if (rules.multiWord) word = word.replace(/\s+/g, ' ');
    const exact = rules.exact.get(word);
    if (exact !== undefined && !found.has(exact)) found.set(exact, word);
    for (const index of rules.prefixes) {
      if (!found.has(index) && word.startsWith((keywords[index] as Keyword).text)) found.set(index, word);
    }
  }
  const wordsOfType = types.map(() => new Set<string>());
  for (const [index, word] of found) {
    for (const typeIndex of (keywords[index] as Keyword).types) wordsOfType[typeIndex]?.add(word);
  }

  let winner = -1;
  let best = 0;
  let byLength = false;
  for (let i = 0; i < types.length; i++) {
    const type = types[i] as CompiledType;
    const keywordScore = (wordsOfType[i]?.size ?? 0) * type.weight;
    const long = type.minChars !== undefined && chars >= type.minChars;
    const score = long ? Math.max(keywordScore, type.minScore) : keywordScore;
    if (score >= type.minScore && score > best) {
      winner = i;
      best = score;
      byLength = long && keywordScore < type.minScore;
    }
  }

  if (winner < 0) {
    const why = found.size === 0 ? 'no keyword matched' : 'no type reached its min_score';
    return { taskType: rules.defaultTaskType, reason: `rules: ${why} -> ${rules.defaultTaskType}` };
  }
  const type = types[winner] as CompiledType;
  const words = [...(wordsOfType[winner] ?? [])];
  const details: string[] = [];
  if (byLength) details.push(`${chars} chars`);
  if (words.length > 0) {
    const shown = words.slice(0, REASON_WORDS).join(', ');
    details.push(words.length > REASON_WORDS ? `${shown} +${words.length - REASON_WORDS} more` : shown);
    details.push(`score ${formatScore(best)}`);
  }
  return { taskType: type.name, reason: `rules: ${type.name} (${details.join('; ')})` };
}
