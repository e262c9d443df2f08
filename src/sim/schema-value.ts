import { randomWord } from './lorem.ts';

/**
 * A JSON value that validates against a JSON Schema, for the simulator's json_schema answers.
 * Only the common subset below is understood: `checkSchema` refuses anything else up front, naming
 * the keyword, rather than answering JSON that might not match what it did not read. Values come
 * from the caller's seeded PRNG, so the same schema and seed give the same value. anyOf, oneOf and
 * type lists take their first branch that can end (oneOf, the first with a value no other branch
 * takes: a value of overlapping branches would match two); a $ref met again inside itself gives the
 * smallest value it can (required properties only, minItems items, null or a branch that is no $ref
 * when allowed), and one that cannot end (a required property holding itself) is refused. Keywords
 * beside anyOf, oneOf and $ref, and beside enum/const all but type, lengths and bounds, are refused:
 * they would go unread.
 */

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

/** A schema the simulator cannot answer: outside its subset, or with no value that satisfies it. */
export class SchemaError extends Error {
  readonly code: 'unsupported_schema' | 'invalid_schema';
  constructor(message: string, code: SchemaError['code']) {
    super(message);
    this.name = 'SchemaError';
    this.code = code;
  }
}

const SUPPORTED = [
  'type', 'properties', 'required', 'additionalProperties', 'items', 'minItems', 'maxItems', 'enum', 'const', 'format',
  'minLength', 'maxLength', 'minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum', 'anyOf', 'oneOf', '$ref',
];
const SUPPORTED_KEYWORDS = new Set(SUPPORTED);
/** Read by no validator, so safe to skip; $defs and definitions are only reached through $ref. */
const ANNOTATIONS = new Set(['title', 'description', 'default', 'examples', '$schema', '$id', '$comment', 'deprecated', 'readOnly', 'writeOnly', '$defs', 'definitions']);
const TYPES = new Set(['object', 'array', 'string', 'number', 'integer', 'boolean', 'null']);
const FORMATS = new Set(['date-time', 'date', 'time', 'email', 'uuid', 'uri']);
const LENGTH_KEYWORDS = ['minItems', 'maxItems', 'minLength', 'maxLength'] as const;
const BOUND_KEYWORDS = ['minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum'] as const;

/** Limits that keep one answer small: a schema past them is refused, not answered slowly. */
const MAX_DEPTH = 64;
const MAX_COUNT = 1000; // minItems, minLength
const MAX_VALUES = 10_000;
/** How often one $ref may be open inside itself before that branch is given up. */
const MAX_REF_REPEATS = 3;
/**
 * How deep a value may nest, $refs and anyOf branches counted: checkSchema bounds each schema's
 * nesting, but a chain of $refs to other $defs is not, and thousands ran the stack out, which
 * ended the simulator, and a run or server it was built into, on one request (review).
 */
const MAX_VALUE_DEPTH = 256;

type Schema = Record<string, unknown>;

function isSchemaObject(value: unknown): value is Schema {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function own(schema: Schema, key: string): unknown {
  return Object.hasOwn(schema, key) ? schema[key] : undefined;
}

function unsupported(what: string, at: string): SchemaError {
  return new SchemaError(
    `${what} (at ${at}) is not supported by the simulator, which understands ${SUPPORTED.join(', ')} and formats ${[...FORMATS].join(', ')}. Leave it out to rehearse this schema on the simulator; a real provider may accept it.`,
    'unsupported_schema',
  );
}

/**
 * Keywords beside one the simulator answers on its own: a branch of anyOf/oneOf or the target of a
 * $ref is answered as it stands, and an enum/const value is checked for its type, lengths and bounds
 * only, so keywords beside them would go unread and the answer could fail the schema (review).
 */
function besideError(keyword: string, beside: string[], at: string): SchemaError {
  const names = beside.map((key) => `'${key}'`).join(', ');
  const advice = keyword === '$ref' ? 'Move them into the schema it points at' : keyword === 'enum' || keyword === 'const' ? 'Leave them out' : 'Move them into each branch';
  return new SchemaError(
    `${names} beside '${keyword}' (at ${at}) ${beside.length === 1 ? 'is' : 'are'} not supported by the simulator, which answers '${keyword}' without reading them. ${advice} to rehearse this schema on the simulator; a real provider may accept it.`,
    'unsupported_schema',
  );
}

/** Beside enum or const, the keywords a picked value is not checked against. */
const NOT_READ_BESIDE_VALUES = ['properties', 'required', 'additionalProperties', 'items', 'format'];

function invalid(what: string, at: string): SchemaError {
  return new SchemaError(`${what} (at ${at}).`, 'invalid_schema');
}

/** The schema a local `$ref` ("#", "#/$defs/Name", any JSON pointer into the root) points at. */
function resolveRef(root: unknown, ref: string, at: string): unknown {
  if (ref !== '#' && !ref.startsWith('#/')) throw unsupported(`$ref ${JSON.stringify(ref)} (only local "#/..." references are)`, at);
  let node: unknown = root;
  for (const raw of ref === '#' ? [] : ref.slice(2).split('/')) {
    const key = raw.replaceAll('~1', '/').replaceAll('~0', '~');
    if (!isSchemaObject(node) || !Object.hasOwn(node, key)) throw invalid(`$ref ${JSON.stringify(ref)} points at nothing`, at);
    node = node[key];
  }
  return node;
}

function typeMatches(value: unknown, type: string): boolean {
  if (type === 'null') return value === null;
  if (type === 'integer') return Number.isInteger(value);
  if (type === 'array') return Array.isArray(value);
  if (type === 'object') return isSchemaObject(value);
  return typeof value === type;
}

function declaredTypes(schema: Schema): string[] | undefined {
  const type = own(schema, 'type');
  return type === undefined ? undefined : Array.isArray(type) ? (type as string[]) : [type as string];
}

/** Throws a SchemaError for the first keyword or value outside the subset, anywhere in the schema. */
function checkSchema(root: unknown): void {
  const visit = (node: unknown, at: string, depth: number): void => {
    if (typeof node === 'boolean') return;
    if (!isSchemaObject(node)) throw invalid('a schema must be an object or true/false', at);
    if (depth > MAX_DEPTH) throw unsupported(`nesting deeper than ${MAX_DEPTH} levels`, at);
    for (const key of Object.keys(node)) {
      if (!SUPPORTED_KEYWORDS.has(key) && !ANNOTATIONS.has(key)) throw unsupported(`keyword '${key}'`, at);
    }
    for (const keyword of ['anyOf', 'oneOf', '$ref'] as const) {
      if (!Object.hasOwn(node, keyword)) continue;
      const beside = Object.keys(node).filter((key) => key !== keyword && SUPPORTED_KEYWORDS.has(key));
      if (beside.length > 0) throw besideError(keyword, beside, at);
    }
    if (Object.hasOwn(node, 'const')) {
      const beside = ['enum', ...NOT_READ_BESIDE_VALUES].filter((key) => Object.hasOwn(node, key));
      if (beside.length > 0) throw besideError('const', beside, at);
    } else if (Object.hasOwn(node, 'enum')) {
      const beside = NOT_READ_BESIDE_VALUES.filter((key) => Object.hasOwn(node, key));
      if (beside.length > 0) throw besideError('enum', beside, at);
    }
    const type = own(node, 'type');
    if (type !== undefined) {
      const types = Array.isArray(type) ? type : [type];
      if (types.length === 0) throw invalid("'type' is an empty list", at);
      for (const each of types) if (typeof each !== 'string' || !TYPES.has(each)) throw invalid(`'type' ${JSON.stringify(each)} is not a JSON Schema type`, at);
    }
    const properties = own(node, 'properties');
    if (properties !== undefined) {
      if (!isSchemaObject(properties)) throw invalid("'properties' must be an object", at);
      for (const [name, sub] of Object.entries(properties)) visit(sub, `${at}/properties/${name}`, depth + 1);
    }
    const required = own(node, 'required');
    if (required !== undefined && (!Array.isArray(required) || required.some((name) => typeof name !== 'string'))) throw invalid("'required' must be a list of names", at);
    const additional = own(node, 'additionalProperties');
    if (additional !== undefined) visit(additional, `${at}/additionalProperties`, depth + 1);
    const items = own(node, 'items');
    if (Array.isArray(items)) throw unsupported("'items' as a list (a tuple)", at);
    if (items !== undefined) visit(items, `${at}/items`, depth + 1);
    for (const keyword of LENGTH_KEYWORDS) {
      const value = own(node, keyword);
      if (value !== undefined && !(Number.isInteger(value) && (value as number) >= 0)) throw invalid(`'${keyword}' must be a whole number of 0 or more`, at);
      if (keyword.startsWith('min') && typeof value === 'number' && value > MAX_COUNT) throw unsupported(`'${keyword}' above ${MAX_COUNT}`, at);
    }
    for (const [min, max] of [['minItems', 'maxItems'], ['minLength', 'maxLength']] as const) {
      const low = own(node, min);
      const high = own(node, max);
      if (typeof low === 'number' && typeof high === 'number' && low > high) throw invalid(`'${min}' ${low} is above '${max}' ${high}`, at);
    }
    for (const keyword of BOUND_KEYWORDS) {
      const value = own(node, keyword);
      if (value !== undefined && !(typeof value === 'number' && Number.isFinite(value))) throw invalid(`'${keyword}' must be a number`, at);
    }
    const format = own(node, 'format');
    if (format !== undefined && (typeof format !== 'string' || !FORMATS.has(format))) throw unsupported(`format ${JSON.stringify(format)}`, at);
    const values = own(node, 'enum');
    if (values !== undefined) {
      if (!Array.isArray(values) || values.length === 0) throw invalid("'enum' must be a non-empty list", at);
      const types = declaredTypes(node);
      if (types && !values.some((value) => types.some((each) => typeMatches(value, each)))) throw invalid(`no 'enum' value is of its 'type' ${types.join(' or ')}`, at);
    }
    for (const keyword of ['anyOf', 'oneOf'] as const) {
      const branches = own(node, keyword);
      if (branches === undefined) continue;
      if (!Array.isArray(branches) || branches.length === 0) throw invalid(`'${keyword}' must be a non-empty list`, at);
      branches.forEach((branch, index) => visit(branch, `${at}/${keyword}/${index}`, depth + 1));
    }
    const ref = own(node, '$ref');
    if (ref !== undefined) {
      if (typeof ref !== 'string') throw invalid("'$ref' must be a string", at);
      resolveRef(root, ref, at);
    }
    for (const keyword of ['$defs', 'definitions'] as const) {
      const defs = own(node, keyword);
      if (defs === undefined) continue;
      if (!isSchemaObject(defs)) throw invalid(`'${keyword}' must be an object`, at);
      for (const [name, sub] of Object.entries(defs)) visit(sub, `${at}/${keyword}/${name}`, depth + 1);
    }
  };
  visit(root, '#', 0);
}

/** Internal: this branch has no value (a `false` schema, or a $ref that never ends); another may. */
class NoValue extends Error {}

interface Walk {
  root: unknown;
  random: () => number;
  /** The $refs being expanded, outermost first. */
  refs: string[];
  valuesLeft: number;
  depth: number;
}

/** A value for `schema`; throws a SchemaError when it is outside the subset or nothing satisfies it. */
export function valueForSchema(schema: unknown, random: () => number): JsonValue {
  checkSchema(schema);
  // The root counts as open: a "#" inside it is a recursion.
  const walk: Walk = { root: schema, random, refs: ['#'], valuesLeft: MAX_VALUES, depth: 0 };
  try {
    return valueOf(schema, walk, false);
  } catch (error) {
    if (error instanceof NoValue) throw new SchemaError(`No value satisfies the schema: ${error.message}.`, 'invalid_schema');
    throw error;
  }
}

function valueOf(node: unknown, walk: Walk, closing: boolean): JsonValue {
  if (--walk.valuesLeft < 0) throw new SchemaError(`The schema asks for more than 10,000 values; the simulator answers smaller ones.`, 'unsupported_schema');
  if (walk.depth >= MAX_VALUE_DEPTH) throw new SchemaError(`The schema's values nest deeper than ${MAX_VALUE_DEPTH} levels, its $refs and anyOf/oneOf branches counted; the simulator answers shallower ones.`, 'unsupported_schema');
  walk.depth += 1;
  try {
    return nodeValue(node, walk, closing);
  } finally {
    walk.depth -= 1;
  }
}

function nodeValue(node: unknown, walk: Walk, closing: boolean): JsonValue {
  if (node === false) throw new NoValue('a false schema allows none');
  if (!isSchemaObject(node)) return words(walk.random); // `true`: anything
  const ref = own(node, '$ref');
  if (typeof ref === 'string') return refValue(ref, walk, closing);
  if (Object.hasOwn(node, 'const')) {
    if (!fitsLimits(node.const, node)) throw new NoValue(`its 'const' does not meet the ${limitsOf(node)} beside it`);
    return node.const as JsonValue;
  }
  const values = own(node, 'enum');
  if (Array.isArray(values)) {
    const allowed = values.filter((value) => fitsLimits(value, node));
    if (allowed.length === 0) throw new NoValue(`no 'enum' value meets the ${limitsOf(node)} beside it`);
    return allowed[Math.floor(walk.random() * allowed.length)] as JsonValue;
  }
  const oneOf = own(node, 'oneOf');
  const branches = own(node, 'anyOf') ?? oneOf;
  if (Array.isArray(branches)) {
    // Closing a recursion, a branch that is no $ref ends it soonest.
    const ordered = closing ? [...branches.filter((branch) => !isRef(branch)), ...branches.filter(isRef)] : branches;
    if (branches === oneOf) return oneBranchValue(ordered, walk, closing);
    return firstValue(ordered, (branch) => valueOf(branch, walk, closing));
  }
  const types = declaredTypes(node);
  const candidates = types ?? [impliedType(node)];
  // A value is more telling than null; when closing a recursion, null ends it soonest.
  const ordered = candidates.includes('null') ? (closing ? ['null', ...candidates.filter((t) => t !== 'null')] : [...candidates.filter((t) => t !== 'null'), 'null']) : candidates;
  return firstValue(ordered, (type) => typedValue(type, node, walk, closing));
}

function within(schema: Schema, count: number, min: string, max: string): boolean {
  const low = own(schema, min);
  const high = own(schema, max);
  return !(typeof low === 'number' && count < low) && !(typeof high === 'number' && count > high);
}

/** Whether an enum or const value meets the type, lengths and bounds beside it (checkSchema refuses the rest). */
function fitsLimits(value: unknown, schema: Schema): boolean {
  const types = declaredTypes(schema);
  if (types && !types.some((each) => typeMatches(value, each))) return false;
  // Lengths count code points, as validators do.
  if (typeof value === 'string') return within(schema, [...value].length, 'minLength', 'maxLength');
  if (Array.isArray(value)) return within(schema, value.length, 'minItems', 'maxItems');
  if (typeof value !== 'number') return true;
  const exclusiveMinimum = own(schema, 'exclusiveMinimum');
  const exclusiveMaximum = own(schema, 'exclusiveMaximum');
  return within(schema, value, 'minimum', 'maximum') && !(typeof exclusiveMinimum === 'number' && value <= exclusiveMinimum) && !(typeof exclusiveMaximum === 'number' && value >= exclusiveMaximum);
}

function limitsOf(schema: Schema): string {
  return ['type', ...LENGTH_KEYWORDS, ...BOUND_KEYWORDS].filter((key) => Object.hasOwn(schema, key)).join(', ');
}

function isRef(schema: unknown): boolean {
  return isSchemaObject(schema) && Object.hasOwn(schema, '$ref');
}

function firstValue<T>(options: readonly T[], value: (option: T) => JsonValue): JsonValue {
  let last: NoValue | undefined;
  for (const option of options) {
    try {
      return value(option);
    } catch (error) {
      if (!(error instanceof NoValue)) throw error;
      last = error;
    }
  }
  throw last ?? new NoValue('no branch');
}

/** How many values of each oneOf branch are tried for one that no other branch also takes. */
const ONE_OF_TRIES = 4;

/**
 * A value of one of `branches` that no other branch takes: a oneOf's value must match exactly one
 * (branches may overlap: a string and a short string, an object and one with no required property).
 * Refused when none is found, rather than answered with a value the schema does not allow.
 */
function oneBranchValue(branches: readonly unknown[], walk: Walk, closing: boolean): JsonValue {
  let found = false;
  for (const [index, branch] of branches.entries()) {
    const others = branches.filter((_, other) => other !== index);
    for (let attempt = 0; attempt < ONE_OF_TRIES; attempt++) {
      let value: JsonValue;
      try {
        value = valueOf(branch, walk, closing);
      } catch (error) {
        if (!(error instanceof NoValue)) throw error;
        break;
      }
      found = true;
      if (!others.some((other) => mayMatch(value, other, walk.root, MAX_VALUE_DEPTH))) return value;
    }
  }
  if (!found) throw new NoValue("no 'oneOf' branch has a value");
  throw new SchemaError(
    "'oneOf' branches that overlap are not supported by the simulator: each value it made for one branch matched another too, and a oneOf value must match exactly one. Make the branches exclusive (a 'const' property that tells them apart, 'required' properties, additionalProperties: false) to rehearse this schema on the simulator; a real provider may accept it.",
    'unsupported_schema',
  );
}

/**
 * Whether `value` may validate against `schema`: never false for a value that does (a format is
 * taken as met, and so is whatever lies more than `stepsLeft` schemas deep, $refs counted: a value
 * nests at most MAX_VALUE_DEPTH levels), so a value it rules out is surely not the schema's. A
 * nested oneOf is taken as met by any of its branches, for the same reason.
 */
function mayMatch(value: JsonValue, schema: unknown, root: unknown, stepsLeft: number): boolean {
  if (typeof schema === 'boolean') return schema;
  if (!isSchemaObject(schema) || stepsLeft <= 0) return true;
  const deeper = (item: JsonValue, sub: unknown) => mayMatch(item, sub, root, stepsLeft - 1);
  const ref = own(schema, '$ref');
  if (typeof ref === 'string') return deeper(value, resolveRef(root, ref, ref));
  if (Object.hasOwn(schema, 'const') && !sameJson(value, schema.const)) return false;
  const values = own(schema, 'enum');
  if (Array.isArray(values) && !values.some((each) => sameJson(value, each))) return false;
  const branches = own(schema, 'anyOf') ?? own(schema, 'oneOf');
  if (Array.isArray(branches)) return branches.some((branch) => deeper(value, branch));
  const types = declaredTypes(schema);
  if (types && !types.some((each) => typeMatches(value, each))) return false;
  if (typeof value === 'string') return within(schema, [...value].length, 'minLength', 'maxLength');
  if (typeof value === 'number') return fitsLimits(value, schema);
  if (Array.isArray(value)) {
    const items = own(schema, 'items');
    return within(schema, value.length, 'minItems', 'maxItems') && (items === undefined || value.every((item) => deeper(item, items)));
  }
  if (value === null || typeof value !== 'object') return true;
  const properties = (own(schema, 'properties') ?? {}) as Schema;
  const required = (own(schema, 'required') ?? []) as string[];
  if (required.some((name) => !Object.hasOwn(value, name))) return false;
  const additional = own(schema, 'additionalProperties');
  return Object.entries(value).every(([name, item]) => (Object.hasOwn(properties, name) ? deeper(item, properties[name]) : additional === undefined || deeper(item, additional)));
}

/** Equal as JSON: what const and enum compare by. */
function sameJson(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a) || Array.isArray(b)) return Array.isArray(a) && Array.isArray(b) && a.length === b.length && a.every((item, i) => sameJson(item, b[i]));
  if (!isSchemaObject(a) || !isSchemaObject(b)) return false;
  const keys = Object.keys(a);
  return keys.length === Object.keys(b).length && keys.every((key) => Object.hasOwn(b, key) && sameJson(a[key], b[key]));
}

function refValue(ref: string, walk: Walk, closing: boolean): JsonValue {
  const open = walk.refs.filter((each) => each === ref).length;
  if (open >= MAX_REF_REPEATS) throw new NoValue(`${ref} contains itself with no way to end`);
  walk.refs.push(ref);
  try {
    return valueOf(resolveRef(walk.root, ref, ref), walk, closing || open > 0);
  } finally {
    walk.refs.pop();
  }
}

function impliedType(schema: Schema): string {
  if (['properties', 'required', 'additionalProperties'].some((key) => Object.hasOwn(schema, key))) return 'object';
  if (['items', 'minItems', 'maxItems'].some((key) => Object.hasOwn(schema, key))) return 'array';
  if (BOUND_KEYWORDS.some((key) => Object.hasOwn(schema, key))) return 'number';
  return 'string';
}

function typedValue(type: string, schema: Schema, walk: Walk, closing: boolean): JsonValue {
  switch (type) {
    case 'null':
      return null;
    case 'boolean':
      return walk.random() < 0.5;
    case 'integer':
    case 'number':
      return numberValue(schema, type === 'integer', walk.random);
    case 'object':
      return objectValue(schema, walk, closing);
    case 'array':
      return arrayValue(schema, walk, closing);
    default:
      return stringValue(schema, walk.random);
  }
}

function objectValue(schema: Schema, walk: Walk, closing: boolean): JsonValue {
  const properties = (own(schema, 'properties') ?? {}) as Schema;
  const required = new Set((own(schema, 'required') ?? []) as string[]);
  // Null prototype: a property named "__proto__" is then an ordinary key.
  const result = Object.create(null) as { [key: string]: JsonValue };
  for (const [name, sub] of Object.entries(properties)) {
    if (closing && !required.has(name)) continue;
    try {
      result[name] = valueOf(sub, walk, closing);
    } catch (error) {
      if (!(error instanceof NoValue) || required.has(name)) throw error;
    }
  }
  const additional = own(schema, 'additionalProperties');
  for (const name of required) {
    if (!Object.hasOwn(properties, name)) result[name] = valueOf(additional ?? true, walk, closing);
  }
  return result;
}

function arrayValue(schema: Schema, walk: Walk, closing: boolean): JsonValue {
  const min = (own(schema, 'minItems') as number | undefined) ?? 0;
  const max = (own(schema, 'maxItems') as number | undefined) ?? Number.POSITIVE_INFINITY;
  const count = closing ? min : Math.min(max, Math.max(min, 1 + Math.floor(walk.random() * 3)));
  const items = own(schema, 'items') ?? true;
  const result: JsonValue[] = [];
  try {
    for (let i = 0; i < count; i++) result.push(valueOf(items, walk, closing));
  } catch (error) {
    if (error instanceof NoValue && min === 0) return [];
    throw error;
  }
  return result;
}

function numberValue(schema: Schema, integer: boolean, random: () => number): number {
  const minimum = own(schema, 'minimum') as number | undefined;
  const maximum = own(schema, 'maximum') as number | undefined;
  const exclusiveMinimum = own(schema, 'exclusiveMinimum') as number | undefined;
  const exclusiveMaximum = own(schema, 'exclusiveMaximum') as number | undefined;
  let low = Math.max(minimum ?? Number.NEGATIVE_INFINITY, exclusiveMinimum ?? Number.NEGATIVE_INFINITY);
  let high = Math.min(maximum ?? Number.POSITIVE_INFINITY, exclusiveMaximum ?? Number.POSITIVE_INFINITY);
  const lowOpen = exclusiveMinimum !== undefined && exclusiveMinimum >= (minimum ?? Number.NEGATIVE_INFINITY);
  const highOpen = exclusiveMaximum !== undefined && exclusiveMaximum <= (maximum ?? Number.POSITIVE_INFINITY);
  // Unbounded sides get a plausible span of 100.
  if (low === Number.NEGATIVE_INFINITY && high === Number.POSITIVE_INFINITY) [low, high] = [1, 100];
  else if (low === Number.NEGATIVE_INFINITY) low = high - 100;
  else if (high === Number.POSITIVE_INFINITY) high = low + 100;
  if (integer) {
    const first = lowOpen ? Math.floor(low) + 1 : Math.ceil(low);
    const last = highOpen ? Math.ceil(high) - 1 : Math.floor(high);
    if (first > last) throw new NoValue(`no integer lies between ${low} and ${high}`);
    return first + Math.floor(random() * (last - first + 1));
  }
  if (low > high || (low === high && (lowOpen || highOpen))) throw new NoValue(`no number lies between ${low} and ${high}`);
  const value = Math.round((low + random() * (high - low)) * 100) / 100;
  const inside = (lowOpen ? value > low : value >= low) && (highOpen ? value < high : value <= high);
  return inside ? value : (low + high) / 2;
}

function words(random: () => number, count = 2 + Math.floor(random() * 4)): string {
  const list = Array.from({ length: count }, () => randomWord(random));
  const text = list.join(' ');
  return text.charAt(0).toUpperCase() + text.slice(1);
}

function formatted(format: string, random: () => number): string {
  // Within 2024-2025, to the second.
  const iso = new Date(Date.UTC(2024, 0, 1) + Math.floor(random() * 2 * 365 * 86_400) * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');
  switch (format) {
    case 'date':
      return iso.slice(0, 10);
    case 'time':
      return iso.slice(11);
    case 'email':
      return `${randomWord(random)}.${randomWord(random)}@example.com`;
    case 'uri':
      return `https://example.com/${randomWord(random)}/${randomWord(random)}`;
    case 'uuid': {
      const hex = Array.from({ length: 32 }, () => Math.floor(random() * 16).toString(16));
      hex[12] = '4';
      hex[16] = ((Math.floor(random() * 4) + 8).toString(16));
      const text = hex.join('');
      return `${text.slice(0, 8)}-${text.slice(8, 12)}-${text.slice(12, 16)}-${text.slice(16, 20)}-${text.slice(20)}`;
    }
    default:
      return iso;
  }
}

function stringValue(schema: Schema, random: () => number): string {
  const format = own(schema, 'format');
  const minLength = (own(schema, 'minLength') as number | undefined) ?? 0;
  const maxLength = own(schema, 'maxLength') as number | undefined;
  if (typeof format === 'string') {
    const value = formatted(format, random);
    // Its values are made whole, not fitted to a length: one that does not fit is refused, not answered invalid.
    if (value.length >= minLength && (maxLength === undefined || value.length <= maxLength)) return value;
    throw new SchemaError(
      `format ${JSON.stringify(format)} with minLength ${minLength}${maxLength === undefined ? '' : ` and maxLength ${maxLength}`} is not supported by the simulator: its ${format} values (${JSON.stringify(value)}) do not fit those lengths. Leave minLength/maxLength out to rehearse this schema on the simulator; a real provider may accept it.`,
      'unsupported_schema',
    );
  }
  let text = words(random);
  while (text.length < minLength) text += ` ${randomWord(random)}`;
  return maxLength === undefined ? text : text.slice(0, maxLength);
}
