import type { TaskTypeRule } from '../config/schema.ts';

/**
 * The built-in task types, used when `routing.task_types` is absent: the design source's
 * classifier (simple / moderate / complex / coding / creative) with its two bugs fixed.
 *
 * 1. Keywords match whole words, not substrings: the source's `"ad" in prompt` sent "read" to
 *    creative and `"api" in prompt` sent "What's the capital of France?" to coding. A trailing `*`
 *    matches a word prefix ("strateg*" matches "strategy" and "strategic").
 * 2. Signals are weighed instead of checked in a fixed order: the highest score wins, so a
 *    strategy question that mentions an "API" is complex (2 complex words against 1 coding word),
 *    not coding as the source's first-match order made it.
 *
 * Order is priority: a tie goes to the earlier type. `complex` and `moderate` share their words,
 * so two or more of them (or 2000+ characters) make a prompt complex and one (or 500+ characters)
 * makes it moderate. A prompt that no type claims is `routing.default_task_type` ("simple").
 */

const COMPLEX_WORDS = [
  'analy*', // analyze, analyse, analysis, analytical
  'compar*', // compare, comparison
  'evaluat*',
  'assess*',
  'strateg*',
  'complex*',
  'advanced',
  'research*',
  'synthes*', // synthesis, synthesize, synthesise
  'critique',
  'trade-off*',
  'tradeoff*',
  // Mathematics: a proof or a derivation asks for reasoning however short the prompt.
  'prove',
  'proof*',
  'derive',
  'derivation*',
  'rigor*', // rigorous, rigorously
  'rigour*',
  'theorem*',
];

const CODING_WORDS = [
  'code',
  'coding',
  'programm*', // programming, programmer, programmatic
  'python',
  'javascript',
  'typescript',
  'java',
  'golang',
  'rust',
  'c++',
  'c#',
  'sql',
  'regex',
  'function*',
  'debug*',
  'bug',
  'bugs',
  'algorithm*',
  'database*',
  'api',
  'apis',
  'endpoint*',
  'deploy*',
  'refactor*',
  'compile*', // compiler, compiled
  'stack trace',
  'unit test*',
  'json',
  'yaml',
  'html',
  'css',
  'git',
  'docker*',
  'kubernetes',
];

const CREATIVE_WORDS = [
  'write',
  'writing',
  'story',
  'stories',
  'creative',
  'poem*',
  'poetry',
  'script',
  'screenplay',
  'ad',
  'ads',
  'slogan*',
  'tagline*',
  'haiku*',
  'limerick*',
  'sonnet*',
  'lyrics',
  'song',
  'fiction',
  'jingle',
];

export const DEFAULT_TASK_TYPES: Readonly<Record<string, TaskTypeRule>> = {
  complex: { keywords: COMPLEX_WORDS, weight: 1, min_score: 2, min_chars: 2000 },
  coding: { keywords: CODING_WORDS, weight: 1, min_score: 1 },
  moderate: { keywords: COMPLEX_WORDS, weight: 1, min_score: 1, min_chars: 500 },
  creative: { keywords: CREATIVE_WORDS, weight: 1, min_score: 1 },
};

/** One line per built-in type, given to the LLM classifier so its labels mean what the rules mean. */
export const DEFAULT_TASK_TYPE_DESCRIPTIONS: Readonly<Record<string, string>> = {
  simple: 'a short factual question, lookup, translation or rewrite that needs no reasoning',
  moderate: 'needs some explanation, comparison or reasoning, or a longer input',
  complex: 'multi-step analysis, strategy, research or synthesis over several factors or a long input',
  coding: 'writing, reviewing, explaining or debugging code, queries, APIs or software systems',
  creative: 'fiction, poems, scripts, ads, slogans or other creative writing',
};
