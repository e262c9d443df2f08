import type { CallRecord, RowResult } from './records.ts';

/**
 * A row event as the collector reads it back from Redis, checked: another worker wrote it, perhaps
 * one of another Switchyard version, and a key can be damaged. What the collector and the report
 * read is checked by hand rather than with a schema: this runs for every row and every call of a
 * batch (a few µs a row with JSON.parse, which the collector did already).
 */

type Fields = Record<string, unknown>;
type Check = (value: unknown) => boolean;

const isFields = (value: unknown): value is Fields => typeof value === 'object' && value !== null && !Array.isArray(value);
const isText: Check = (value) => typeof value === 'string';
const isNumber: Check = (value) => typeof value === 'number';
const isTextOrNull: Check = (value) => value === null || typeof value === 'string';
const isNumberOrNull: Check = (value) => value === null || typeof value === 'number';
const isStatus: Check = (value) => value === 'succeeded' || value === 'failed';
const isTextList: Check = (value) => Array.isArray(value) && value.every(isText);
const isFieldsList: Check = (value) => Array.isArray(value) && value.every(isFields);
const PURPOSES: ReadonlySet<unknown> = new Set<CallRecord['purpose']>(['answer', 'classify', 'ensemble_member', 'synthesis', 'judge']);

/** A value as a message shows it: short, and "missing" for none. */
function shown(value: unknown): string {
  if (value === undefined) return 'missing';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object' && value !== null) return 'an object';
  const text = JSON.stringify(value);
  return text.length > 40 ? `${text.slice(0, 37)}...` : text;
}

/** `fields[key]` passes `check`, or what is wrong with it ("`usage.input_tokens` is missing (expected a number)"). */
function field(fields: Fields, key: string, check: Check, expected: string, path = ''): string | null {
  const value = fields[key];
  return check(value) ? null : `\`${path}${key}\` is ${shown(value)} (expected ${expected})`;
}

function optional(fields: Fields, key: string, check: Check, expected: string, path = ''): string | null {
  return fields[key] === undefined ? null : field(fields, key, check, expected, path);
}

/** `fields[key]`, when there, is an object whose own fields `inner` finds nothing wrong with. */
function nested(fields: Fields, key: string, inner: (value: Fields, path: string) => string | null, required: boolean, path = ''): string | null {
  const value = fields[key];
  if (value === undefined && !required) return null;
  if (!isFields(value)) return `\`${path}${key}\` is ${shown(value)} (expected an object)`;
  return inner(value, `${path}${key}.`);
}

const failureProblem = (error: Fields, path: string): string | null => field(error, 'code', isText, 'text', path) ?? field(error, 'message', isText, 'text', path);

/** What is wrong with `value` as the result of row `row`, or null when it is one. */
function rowResultProblem(value: unknown, row: number): string | null {
  if (!isFields(value)) return `it is ${shown(value)}, not an object`;
  if (value.row !== row) return `its \`row\` is ${shown(value.row)}, not ${row}`;
  return (
    field(value, 'id', isText, 'text') ??
    field(value, 'status', isStatus, '"succeeded" or "failed"') ??
    field(value, 'model', isText, 'text') ??
    field(value, 'output', isTextOrNull, 'text or null') ??
    nested(value, 'usage', (usage, path) => field(usage, 'input_tokens', isNumber, 'a number', path) ?? field(usage, 'output_tokens', isNumber, 'a number', path), true) ??
    field(value, 'cost_usd', isNumberOrNull, 'a number or null') ??
    field(value, 'latency_ms', isNumber, 'a number') ??
    field(value, 'attempts', isNumber, 'a number') ??
    nested(value, 'metadata', () => null, true) ??
    field(value, 'task_type', isTextOrNull, 'text or null') ??
    field(value, 'route_reason', isText, 'text') ??
    field(value, 'models_tried', isTextList, 'a list of model names') ??
    field(value, 'final_model', isTextOrNull, 'text or null') ??
    field(value, 'fallback_reason', isTextOrNull, 'text or null') ??
    field(value, 'completed_at', isText, 'a time as text') ??
    nested(value, 'error', failureProblem, false) ??
    nested(value, 'ensemble', (ensemble, path) => field(ensemble, 'name', isText, 'text', path) ?? field(ensemble, 'synthesizer', isText, 'text', path) ?? field(ensemble, 'members', isFieldsList, 'a list of objects', path), false) ??
    nested(value, 'judge', (judge, path) => field(judge, 'model', isText, 'text', path) ?? field(judge, 'score', isNumberOrNull, 'a number or null', path) ?? field(judge, 'cost_usd', isNumberOrNull, 'a number or null', path), false) ??
    nested(value, 'cached', (cached, path) => field(cached, 'batch_id', isText, 'text', path) ?? field(cached, 'row', isNumber, 'a number', path) ?? field(cached, 'saved_usd', isNumberOrNull, 'a number or null', path), false) ??
    optional(value, 'ab_arm', isText, 'text') ??
    optional(value, 'finish_reason', isTextOrNull, 'text or null') ??
    optional(value, 'answer_output_tokens', isNumber, 'a number') ??
    optional(value, 'refusal', isText, 'text')
  );
}

/** What is wrong with `value` as a call record, or null when it is one. */
function callRecordProblem(value: unknown): string | null {
  if (!isFields(value)) return `it is ${shown(value)}, not an object`;
  return (
    field(value, 'model', isText, 'text') ??
    field(value, 'purpose', (purpose) => PURPOSES.has(purpose), `one of ${[...PURPOSES].join(', ')}`) ??
    field(value, 'task_type', isTextOrNull, 'text or null') ??
    field(value, 'chain_position', isNumberOrNull, 'a number or null') ??
    field(value, 'attempt', isNumber, 'a number') ??
    field(value, 'status', isStatus, '"succeeded" or "failed"') ??
    field(value, 'http_status', isNumberOrNull, 'a number or null') ??
    field(value, 'input_tokens', isNumber, 'a number') ??
    field(value, 'output_tokens', isNumber, 'a number') ??
    field(value, 'cost_usd', isNumberOrNull, 'a number or null') ??
    field(value, 'latency_ms', isNumber, 'a number') ??
    field(value, 'started_at', isText, 'a time as text') ??
    optional(value, 'ab_arm', isText, 'text') ??
    optional(value, 'error_code', isText, 'text') ??
    optional(value, 'error_message', isText, 'text') ??
    optional(value, 'ttft_ms', isNumber, 'a number')
  );
}

/** JSON text parsed, or what is wrong with it. */
function parsed(text: string): { value: unknown } | { problem: string } {
  try {
    return { value: JSON.parse(text) };
  } catch (error) {
    return { problem: `not JSON (${error instanceof Error ? error.message : String(error)})` };
  }
}

/** A published result read back: the result, or what is wrong with its JSON and what could be kept of it (its id, model and metadata). */
export type ReadResult = { result: RowResult } | { problem: string; salvaged: Fields };

export function readPublishedResult(json: string, row: number): ReadResult {
  const read = parsed(json);
  if ('problem' in read) return { problem: read.problem, salvaged: {} };
  const problem = rowResultProblem(read.value, row);
  if (problem === null) return { result: read.value as RowResult };
  return { problem, salvaged: isFields(read.value) ? read.value : {} };
}

/** A row number as a result or call record holds it. */
const isRowNumber = (value: unknown): value is number => typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;

/**
 * The row an event whose own `row` field is damaged is about: the one its result names, else the one
 * all its call records name; with what is left of the result, to write in its place. Null when
 * neither names one.
 */
export function rowNamedByEvent(resultJson: string, calls: readonly CallRecord[]): { row: number; salvaged: Fields } | null {
  const read = parsed(resultJson);
  const salvaged = 'value' in read && isFields(read.value) ? read.value : {};
  if (isRowNumber(salvaged.row)) return { row: salvaged.row, salvaged };
  const rows = new Set(calls.map((call) => call.row));
  const [row] = rows;
  if (rows.size !== 1 || !isRowNumber(row)) return null;
  // The row's id too, for the failed result written in its place.
  return { row, salvaged: typeof salvaged.id === 'string' ? salvaged : { ...salvaged, id: calls[0]!.id } };
}

/** A row's published calls (JSON lines): those that are call records, their lines as written, and what was wrong with the others. */
export function readPublishedCalls(jsonl: string): { calls: CallRecord[]; jsonl: string; problems: string[] } {
  const calls: CallRecord[] = [];
  const problems: string[] = [];
  // The lines kept, once one is left out; until then all of `jsonl`, written as it came.
  let kept: string | null = null;
  for (let start = 0, end = jsonl.indexOf('\n'); end !== -1; start = end + 1, end = jsonl.indexOf('\n', start)) {
    const line = jsonl.slice(start, end);
    const read = parsed(line);
    if ('value' in read) {
      const problem = callRecordProblem(read.value);
      if (problem === null) {
        calls.push(read.value as CallRecord);
        if (kept !== null) kept += `${line}\n`;
        continue;
      }
      problems.push(problem);
    } else problems.push(read.problem);
    kept ??= jsonl.slice(0, start);
  }
  return { calls, jsonl: kept ?? jsonl, problems };
}

/** Written in place of a result that is not one: failed, so that `run --resume` runs the row again. */
export const MALFORMED_RESULT = 'malformed_result';

export function malformedResult(row: number, salvaged: Fields, message: string): RowResult {
  return {
    id: typeof salvaged.id === 'string' ? salvaged.id : String(row),
    row,
    status: 'failed',
    model: typeof salvaged.model === 'string' ? salvaged.model : '',
    output: null,
    usage: { input_tokens: 0, output_tokens: 0 },
    // Its calls, when they are readable, are in costs.jsonl with their cost; the result adds none of its own.
    cost_usd: 0,
    latency_ms: 0,
    attempts: 0,
    error: { code: MALFORMED_RESULT, message },
    metadata: isFields(salvaged.metadata) ? salvaged.metadata : {},
    task_type: null,
    route_reason: '',
    models_tried: [],
    final_model: null,
    fallback_reason: null,
    completed_at: new Date().toISOString(),
  };
}
