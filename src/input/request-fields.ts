/**
 * The JSON types of the request fields a JSONL line sends beside its prompt (SENT_BODY_FIELDS).
 * They go to the provider as written, so a wrong type (`"seed": "abc"`, `"response_format": "json"`)
 * would be sent with every call of the row and refused with a 400: such a row is a bad row in
 * errors.jsonl instead, before anything is paid or queued. Only the type (and the ranges every
 * OpenAI-compatible API shares) is checked: which values a provider supports (a response_format
 * type, a reasoning_effort) is the provider's to say. null is "not set", as OpenAI takes it.
 */

import { EXACT_INTEGER_RANGE, inexactIntegerText, isInexactInteger } from './inexact-integer.ts';

interface FieldRule {
  expected: string;
  fits: (value: unknown) => boolean;
  /** An integer field: what it takes, said when it is given one too large to be read exactly. */
  exactly?: string;
}

/** The text a line wrote a field's number as, when the reader has it (JSON.parse keeps only the number, rounded past 2^53-1). */
export type NumberWritten = (key: string) => string | undefined;

const isNumberIn = (low: number, high: number) => (value: unknown): boolean => typeof value === 'number' && value >= low && value <= high;
const isString = (value: unknown): boolean => typeof value === 'string';
const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

const RULES: Readonly<Record<string, FieldRule>> = {
  top_p: { expected: 'a number from 0 to 1', fits: isNumberIn(0, 1) },
  presence_penalty: { expected: 'a number from -2 to 2', fits: isNumberIn(-2, 2) },
  frequency_penalty: { expected: 'a number from -2 to 2', fits: isNumberIn(-2, 2) },
  seed: { expected: 'an integer', fits: (value) => Number.isSafeInteger(value), exactly: `an integer from ${EXACT_INTEGER_RANGE}` },
  stop: { expected: 'a string or a list of strings', fits: (value) => isString(value) || (Array.isArray(value) && value.every(isString)) },
  logit_bias: { expected: 'an object of token ids to numbers from -100 to 100 ({"50256": -100})', fits: (value) => isObject(value) && Object.values(value).every(isNumberIn(-100, 100)) },
  user: { expected: 'a string', fits: isString },
  reasoning_effort: { expected: 'a string ("low", "medium", "high")', fits: isString },
  response_format: {
    expected: 'an object with a "type": {"type": "json_object"}, or {"type": "json_schema", "json_schema": {"name", "schema"}}',
    fits: (value) => isObject(value) && typeof value['type'] === 'string' && (value['type'] !== 'json_schema' || isObject(value['json_schema'])),
  },
};

/**
 * The first sent field of a wrong type, as a bad_field message ("seed must be an integer, got \"abc\""); null when all fit.
 * `written`: how the line wrote a number, so that one past 2^53-1 is shown as written rather than rounded.
 */
export function requestFieldProblem(params: Readonly<Record<string, unknown>>, written?: NumberWritten): string | null {
  for (const [key, value] of Object.entries(params)) {
    const rule = RULES[key];
    if (!rule || value === null || rule.fits(value)) continue;
    if (rule.exactly !== undefined && isInexactInteger(value)) return `${key} must be ${rule.exactly}, got ${inexactIntegerText(value, written?.(key))}`;
    return `${key} must be ${rule.expected}, got ${shown(value)}`;
  }
  return null;
}

/** The value as the line wrote it, cut to a readable length (a schema can be kilobytes). */
function shown(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  if (text.length <= 80) return text;
  // Not inside a surrogate pair: half an emoji is a lone surrogate, which the readers refuse in input.
  const last = text.charCodeAt(78);
  const end = last >= 0xd800 && last <= 0xdbff ? 78 : 79;
  return `${text.slice(0, end)}…`;
}
