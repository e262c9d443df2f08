import type { z } from 'zod';
import { closestName } from './closest-name.ts';

/** Zod's type names as a YAML or JSON file's author knows them. */
const TYPE_NAMES: Record<string, string> = {
  string: 'a string',
  number: 'a number',
  int: 'a whole number',
  boolean: 'true or false',
  object: 'an object (key: value fields)',
  record: 'an object (key: value fields)',
  array: 'a list',
  null: 'null',
};

const named = (type: string): string => TYPE_NAMES[type] ?? type;

/** What goes where an object was expected, for the keys whose shape is not plain from their name. */
const OBJECT_EXAMPLES: Record<string, string> = {
  price: '{ input_per_mtok: 0.14, output_per_mtok: 0.28 } (USD per million input and output tokens)',
};

/**
 * What a zod issue says, in the words a person fixing a file needs: "missing (expected a number)"
 * rather than zod's "Invalid input: expected number, received undefined", "must be 0 or more"
 * rather than "Too small: expected number to be >=0". A message the schema wrote itself is kept.
 */
export function issueText(issue: z.core.$ZodIssue): string {
  if (issue.code === 'unrecognized_keys') return `unknown key(s) ${issue.keys.map((k) => `"${k}"`).join(', ')}`;
  if (issue.code === 'invalid_type' && issue.message.startsWith('Invalid input:')) {
    const received = /received (\w+)$/.exec(issue.message)?.[1];
    if (received === 'undefined') return `missing (expected ${named(issue.expected)})`;
    const key = issue.path.at(-1);
    // `cache:` with nothing (or only a comment) under it reads as null: the defaults are `{}`.
    if (received === 'null' && issue.expected === 'object' && typeof key === 'string') return `expected an object (key: value fields), got nothing: \`${key}: {}\` takes the defaults, or remove the key`;
    // A number where a whole one belongs: the number itself says what is wrong.
    const got = (received === 'number' || received === 'string') && (typeof issue.input === 'number' || typeof issue.input === 'string') ? JSON.stringify(issue.input) : received ? named(received) : null;
    const expected = issue.expected === 'object' && typeof key === 'string' && OBJECT_EXAMPLES[key] ? OBJECT_EXAMPLES[key] : named(issue.expected);
    return `expected ${expected}${got ? `, got ${got}` : ''}`;
  }
  if (issue.code === 'invalid_value' && issue.message.startsWith('Invalid option:')) {
    const allowed = issue.values.map((value) => JSON.stringify(value));
    const given = typeof issue.input === 'string' ? issue.input : null;
    const meant = given === null ? null : closestName(given, issue.values.filter((value) => typeof value === 'string'));
    return `expected one of ${allowed.join(', ')}${issue.input === undefined ? '' : `, got ${JSON.stringify(issue.input)}`}${meant ? ` (did you mean "${meant}"?)` : ''}`;
  }
  if (issue.code === 'too_small' && issue.message.startsWith('Too small:')) {
    return boundText(issue.origin, issue.minimum, issue.inclusive, 'at least', 'more than', 'or more');
  }
  if (issue.code === 'too_big' && issue.message.startsWith('Too big:')) {
    return boundText(issue.origin, issue.maximum, issue.inclusive, 'at most', 'less than', 'or less');
  }
  return issue.message;
}

function boundText(origin: string, bound: number | bigint, inclusive: boolean | undefined, atBound: string, beyond: string, orBeyond: string): string {
  if (origin === 'string') return bound === 1 && atBound === 'at least' ? 'must not be empty' : `must be ${atBound} ${bound} characters long`;
  if (origin === 'array' || origin === 'set') return `must hold ${atBound} ${bound} item${bound === 1 ? '' : 's'}`;
  return inclusive ? `must be ${bound} ${orBeyond}` : `must be ${beyond} ${bound}`;
}
