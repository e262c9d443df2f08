/**
 * A small JSON Schema validator for the subset the simulator answers (src/sim/schema-value.ts), written
 * apart from it so the tests check its values independently. Returns the problems, empty when valid.
 */

type Schema = boolean | Record<string, unknown>;

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function typeOk(value: unknown, type: string): boolean {
  switch (type) {
    case 'null':
      return value === null;
    case 'integer':
      return Number.isInteger(value);
    case 'number':
      return typeof value === 'number' && Number.isFinite(value);
    case 'array':
      return Array.isArray(value);
    case 'object':
      return isObject(value);
    default:
      return typeof value === type;
  }
}

const FORMATS: Record<string, RegExp> = {
  'date-time': /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/,
  date: /^\d{4}-\d{2}-\d{2}$/,
  time: /^\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/,
  email: /^[^@\s]+@[^@\s]+\.[^@\s]+$/,
  uuid: /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/,
  uri: /^[a-z][a-z0-9+.-]*:\S+$/,
};

function resolve(root: Schema, ref: string): Schema {
  let node: unknown = root;
  for (const key of ref === '#' ? [] : ref.slice(2).split('/')) node = (node as Record<string, unknown>)[key.replaceAll('~1', '/').replaceAll('~0', '~')];
  return node as Schema;
}

export function schemaProblems(schema: Schema, value: unknown, root: Schema = schema, at = '$'): string[] {
  if (schema === true) return [];
  if (schema === false) return [`${at}: false schema`];
  const problems: string[] = [];
  const fail = (what: string) => problems.push(`${at}: ${what}`);
  if (typeof schema.$ref === 'string') problems.push(...schemaProblems(resolve(root, schema.$ref), value, root, at));
  if ('const' in schema && JSON.stringify(schema.const) !== JSON.stringify(value)) fail(`not the const ${JSON.stringify(schema.const)}`);
  if (Array.isArray(schema.enum) && !schema.enum.some((each) => JSON.stringify(each) === JSON.stringify(value))) fail(`${JSON.stringify(value)} not in enum`);
  if (schema.type !== undefined) {
    const types = Array.isArray(schema.type) ? (schema.type as string[]) : [schema.type as string];
    if (!types.some((type) => typeOk(value, type))) fail(`${JSON.stringify(value)} is not ${types.join('|')}`);
  }
  if (Array.isArray(schema.anyOf) && !schema.anyOf.some((branch: Schema) => schemaProblems(branch, value, root, at).length === 0)) fail('matches no anyOf branch');
  if (Array.isArray(schema.oneOf) && schema.oneOf.filter((branch: Schema) => schemaProblems(branch, value, root, at).length === 0).length !== 1) fail('does not match exactly one oneOf branch');
  if (typeof value === 'string') {
    if (typeof schema.minLength === 'number' && [...value].length < schema.minLength) fail(`shorter than ${schema.minLength}`);
    if (typeof schema.maxLength === 'number' && [...value].length > schema.maxLength) fail(`longer than ${schema.maxLength}`);
    if (typeof schema.format === 'string' && !(FORMATS[schema.format]?.test(value) ?? false)) fail(`not a ${schema.format}: ${value}`);
    if (schema.format === 'date-time' && Number.isNaN(Date.parse(value))) fail(`not a real date-time: ${value}`);
  }
  if (typeof value === 'number') {
    if (typeof schema.minimum === 'number' && value < schema.minimum) fail(`below minimum ${schema.minimum}`);
    if (typeof schema.maximum === 'number' && value > schema.maximum) fail(`above maximum ${schema.maximum}`);
    if (typeof schema.exclusiveMinimum === 'number' && value <= schema.exclusiveMinimum) fail(`not above ${schema.exclusiveMinimum}`);
    if (typeof schema.exclusiveMaximum === 'number' && value >= schema.exclusiveMaximum) fail(`not below ${schema.exclusiveMaximum}`);
  }
  if (Array.isArray(value)) {
    if (typeof schema.minItems === 'number' && value.length < schema.minItems) fail(`fewer than ${schema.minItems} items`);
    if (typeof schema.maxItems === 'number' && value.length > schema.maxItems) fail(`more than ${schema.maxItems} items`);
    if (schema.items !== undefined) value.forEach((item, index) => problems.push(...schemaProblems(schema.items as Schema, item, root, `${at}[${index}]`)));
  }
  if (isObject(value)) {
    const properties = (schema.properties ?? {}) as Record<string, Schema>;
    for (const name of (schema.required ?? []) as string[]) if (!Object.hasOwn(value, name)) fail(`misses required ${name}`);
    for (const [name, item] of Object.entries(value)) {
      if (Object.hasOwn(properties, name)) problems.push(...schemaProblems(properties[name]!, item, root, `${at}.${name}`));
      else if (schema.additionalProperties !== undefined) problems.push(...schemaProblems(schema.additionalProperties as Schema, item, root, `${at}.${name}`));
    }
  }
  return problems;
}
