import type { RoutingConfig, TaskTypeRule } from '../config/schema.ts';
import type { ChatMessage } from '../input/row.ts';
import { DEFAULT_TASK_TYPES } from './default-task-types.ts';

/**
 * The rules classifier: keywords and length decide a prompt's task type.
 *
 * Scoring, per task type in config order: score = distinct keywords found x weight; a prompt of at
 * least `min_chars` characters scores at least `min_score`. Types scoring `min_score` or more are
 * candidates; the highest score wins and a tie goes to the earlier type; no candidate gives
 * `default_task_type`.
 *
 * Keywords match whole words, case-insensitively: "ad" does not match "read". A trailing `*`
 * matches a word prefix ("strateg*" matches "strategic"); spaces inside a keyword match any
 * whitespace ("stack trace"). Words are runs of letters, digits, marks and `_`. A keyword that
 * starts or ends in a script written without spaces (Chinese, Japanese, Thai) needs no word
 * boundary on that side, so "代码" is found inside "写一段代码".
 *
 * Every keyword of every type goes into one RegExp, so a prompt is scanned once whatever the
 * number of types; classification runs for every row and must stay cheap.
 */

const WORD_CHAR = '[\\p{L}\\p{N}\\p{M}_]';
const IS_WORD_CHAR = /[\p{L}\p{N}\p{M}_]/u;
const NO_SPACE_SCRIPT = /[\p{Script=Han}\p{Script=Hiragana}\p{Script=Katakana}\p{Script=Thai}\p{Script=Lao}\p{Script=Khmer}\p{Script=Myanmar}]/u;
/** How many matched words a reason lists before it says "+N more". */
const REASON_WORDS = 4;

interface CompiledType {
  name: string;
  weight: number;
  minScore: number;
  minChars: number | undefined;
}

interface Keyword {
  /** As written in config, lowercased, without the `*`. */
  text: string;
  prefix: boolean;
  /** Indexes into CompiledRules.types of the types that list this keyword. */
  types: number[];
}

export interface CompiledRules {
  /** Task types in priority order. */
  readonly types: readonly CompiledType[];
  readonly defaultTaskType: string;
  /** Every label a prompt can get: the types, then the default type when it is not one of them. */
  readonly labels: readonly string[];
  readonly keywords: readonly Keyword[];
  /** One alternation of every keyword; null when no type has keywords. */
  readonly matcher: RegExp | null;
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

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
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

/**
 * The regex source for one keyword. Most keywords are plain words bounded on both sides: they share
 * one `(?<!w)(?:a|b|...)(?!w)` group (three times faster than bounding each alternative). The rest
 * (a start or end in punctuation or in a script without spaces) carry their own boundaries.
 */
function keywordPattern(keyword: { text: string; prefix: boolean }): { source: string; shared: boolean } {
  const first = keyword.text.charAt(0);
  const last = keyword.text.at(-1) ?? '';
  const boundedStart = IS_WORD_CHAR.test(first) && !NO_SPACE_SCRIPT.test(first);
  const boundedEnd = IS_WORD_CHAR.test(last) && !NO_SPACE_SCRIPT.test(last);
  let source = escapeRegExp(keyword.text).replace(/ /g, '\\s+');
  if (keyword.prefix) source += `${WORD_CHAR}*`;
  if (boundedStart && (boundedEnd || keyword.prefix)) return { source, shared: true };
  if (boundedStart) source = `(?<!${WORD_CHAR})${source}`;
  if (boundedEnd && !keyword.prefix) source += `(?!${WORD_CHAR})`;
  return { source, shared: false };
}

function buildMatcher(keywords: readonly Keyword[]): RegExp | null {
  const patterns = keywords.map(keywordPattern);
  // Longest first, so "stack trace" is tried before "stack" at the same position.
  const byLength = (a: string, b: string) => b.length - a.length;
  const shared = [...new Set(patterns.filter((p) => p.shared).map((p) => p.source))].sort(byLength);
  const alternatives = [...new Set(patterns.filter((p) => !p.shared).map((p) => p.source))].sort(byLength);
  if (shared.length > 0) alternatives.unshift(`(?<!${WORD_CHAR})(?:${shared.join('|')})(?!${WORD_CHAR})`);
  return alternatives.length > 0 ? new RegExp(alternatives.join('|'), 'giu') : null;
}

/** Compiles the configured task types (or the built-in ones) into a matcher; do it once per config. */
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
  const matcher = buildMatcher(keywords);
  const labels = types.map((type) => type.name);
  if (!labels.includes(defaultTaskType)) labels.push(defaultTaskType);

  return { types, defaultTaskType, labels, keywords, matcher, exact, prefixes, multiWord: keywords.some((k) => k.text.includes(' ')) };
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
  const lastUser = messages.findLast((message) => message.role === 'user') ?? messages.at(-1);
  const parts: string[] = [];
  for (const message of messages) {
    if (message.role === 'system' || message.role === 'developer' || message === lastUser) parts.push(message.content);
  }
  return { text: parts.join('\n'), chars: lastUser?.content.length ?? 0 };
}

function formatScore(score: number): string {
  return String(Number(score.toFixed(2)));
}

/** Classifies one prompt. `chars` (default: the text's length) is what `min_chars` is compared with. */
export function classifyByRules(text: string, rules: CompiledRules, chars: number = text.length): RuleClassification {
  const { types, keywords, matcher } = rules;
  const scores = new Array<number>(types.length).fill(0);
  // Keyword index -> the first word in the prompt that matched it (for the reason).
  const found = new Map<number, string>();

  if (matcher) {
    matcher.lastIndex = 0;
    for (let match = matcher.exec(text); match !== null; match = matcher.exec(text)) {
      let word = match[0].toLowerCase();
      if (rules.multiWord) word = word.replace(/\s+/g, ' ');
      const exact = rules.exact.get(word);
      if (exact !== undefined && !found.has(exact)) found.set(exact, word);
      for (const index of rules.prefixes) {
        if (!found.has(index) && word.startsWith((keywords[index] as Keyword).text)) found.set(index, word);
      }
    }
  }
  for (const index of found.keys()) {
    for (const typeIndex of (keywords[index] as Keyword).types) scores[typeIndex] = (scores[typeIndex] ?? 0) + (types[typeIndex] as CompiledType).weight;
  }

  let winner = -1;
  let best = 0;
  let byLength = false;
  for (let i = 0; i < types.length; i++) {
    const type = types[i] as CompiledType;
    const keywordScore = scores[i] ?? 0;
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
  const words = [...found].filter(([index]) => (keywords[index] as Keyword).types.includes(winner)).map(([, word]) => word);
  const details: string[] = [];
  if (byLength) details.push(`${chars} chars`);
  if (words.length > 0) {
    const shown = words.slice(0, REASON_WORDS).join(', ');
    details.push(words.length > REASON_WORDS ? `${shown} +${words.length - REASON_WORDS} more` : shown);
    details.push(`score ${formatScore(best)}`);
  }
  return { taskType: type.name, reason: `rules: ${type.name} (${details.join('; ')})` };
}
