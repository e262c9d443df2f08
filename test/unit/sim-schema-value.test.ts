import { describe, expect, it } from 'vitest';
import { mulberry32 } from '../../src/sim/prng.ts';
import { SchemaError, valueForSchema } from '../../src/sim/schema-value.ts';
import { schemaProblems } from '../helpers/json-schema-check.ts';

/** The simulator's values for a json_schema response_format: valid, deterministic, or a clear refusal. */

const node = {
  type: 'object',
  properties: { label: { type: 'string' }, children: { type: 'array', items: { $ref: '#/$defs/node' } } },
  required: ['label', 'children'],
  additionalProperties: false,
};

const schemas = {
  person: {
    type: 'object',
    properties: {
      name: { type: 'string', minLength: 40 },
      code: { type: 'string', maxLength: 3 },
      born: { type: 'integer', minimum: 1800, maximum: 1900 },
      ratio: { type: 'number', exclusiveMinimum: 0, exclusiveMaximum: 1 },
      score: { type: 'number', minimum: -5.5, maximum: -5.5 },
      count: { type: 'integer', exclusiveMinimum: 7 },
      below: { type: 'number', maximum: -1000 },
      active: { type: 'boolean' },
      nothing: { type: 'null' },
      nickname: { type: ['string', 'null'] },
      kind: { const: 'person' },
      status: { type: 'string', enum: ['active', 'retired', 'unknown'] },
      mixed: { enum: [1, 'two', null] },
      tags: { type: 'array', items: { type: 'string' }, minItems: 2, maxItems: 4 },
      empty: { type: 'array', items: { type: 'integer' }, maxItems: 0 },
    },
    required: ['name', 'born', 'tags'],
    additionalProperties: false,
  },
  formats: {
    type: 'object',
    properties: Object.fromEntries(['date-time', 'date', 'time', 'email', 'uuid', 'uri'].map((format) => [format, { type: 'string', format }])),
    required: ['date-time', 'date', 'time', 'email', 'uuid', 'uri'],
    additionalProperties: false,
  },
  unions: {
    type: 'object',
    properties: {
      either: { anyOf: [{ type: 'integer', minimum: 1 }, { type: 'string' }] },
      one: { oneOf: [{ type: 'object', properties: { a: { type: 'boolean' } }, required: ['a'] }, { type: 'string' }] },
      nullFirst: { type: ['null', 'integer'] },
    },
    required: ['either', 'one', 'nullFirst'],
  },
  tree: { $defs: { node }, $ref: '#/$defs/node' },
  treeWithDefinitions: { definitions: { node: { ...node, properties: { ...node.properties, children: { type: 'array', items: { $ref: '#/definitions/node' } } } } }, $ref: '#/definitions/node' },
  linkedList: {
    type: 'object',
    properties: { value: { type: 'integer' }, next: { anyOf: [{ $ref: '#' }, { type: 'null' }] } },
    required: ['value', 'next'],
    additionalProperties: false,
  },
  annotated: { $schema: 'https://json-schema.org/draft/2020-12/schema', title: 'T', description: 'd', type: 'object', properties: { a: { type: 'string', description: 'x', default: 'y', examples: ['z'] } }, required: ['a'] },
  untyped: { properties: { list: { items: { minimum: 3 } }, any: {}, text: { maxLength: 2 } }, required: ['list', 'any', 'text'] },
  topArray: { type: 'array', items: { type: 'object', properties: { id: { type: 'integer' } }, required: ['id'] }, minItems: 1 },
  proto: { type: 'object', properties: { ['__proto__']: { type: 'string' }, constructor: { type: 'integer' } }, required: ['__proto__', 'constructor'] },
  limitedValues: {
    type: 'object',
    properties: {
      short: { enum: ['abcdef', 'ab', '😀😀'], maxLength: 2 },
      long: { type: 'string', enum: ['a', 'abcd'], minLength: 3 },
      small: { type: 'integer', enum: [1, 50, 200], exclusiveMinimum: 1, maximum: 100 },
      pair: { enum: [[1, 2, 3], [1, 2]], maxItems: 2 },
      seven: { const: 7, minimum: 5 },
      either: { anyOf: [{ const: 'abcdef', maxLength: 3 }, { type: 'integer' }], description: 'annotations beside anyOf are fine' },
    },
    required: ['short', 'long', 'small', 'pair', 'seven', 'either'],
  },
} satisfies Record<string, Record<string, unknown>>;

function schemaError(schema: unknown): SchemaError {
  try {
    valueForSchema(schema, mulberry32(1));
  } catch (error) {
    expect(error).toBeInstanceOf(SchemaError);
    return error as SchemaError;
  }
  throw new Error('expected a SchemaError');
}

describe('simulator JSON schema values', () => {
  it.each(Object.entries(schemas))('gives %s values that validate, for many seeds', (_name, schema) => {
    for (let seed = 0; seed < 200; seed++) {
      const value = valueForSchema(schema, mulberry32(seed));
      const reparsed: unknown = JSON.parse(JSON.stringify(value));
      expect(schemaProblems(schema, reparsed), JSON.stringify(value)).toEqual([]);
    }
  });

  it('is deterministic for a seed, and varies with it', () => {
    const values = new Set<string>();
    for (let seed = 0; seed < 20; seed++) {
      const value = JSON.stringify(valueForSchema(schemas.person, mulberry32(seed)));
      expect(JSON.stringify(valueForSchema(schemas.person, mulberry32(seed)))).toBe(value);
      values.add(value);
    }
    expect(values.size).toBe(20);
  });

  it('fills every property, and takes the first branch of anyOf, oneOf and a type list (null last)', () => {
    const person = valueForSchema(schemas.person, mulberry32(3)) as Record<string, unknown>;
    expect(Object.keys(person)).toEqual(Object.keys(schemas.person.properties as object));
    expect(person.score).toBe(-5.5);
    expect(person.kind).toBe('person');
    expect(typeof person.nickname).toBe('string');
    const unions = valueForSchema(schemas.unions, mulberry32(3)) as Record<string, unknown>;
    expect(Number.isInteger(unions.either)).toBe(true);
    expect(unions.one).toEqual({ a: expect.any(Boolean) });
    expect(Number.isInteger(unions.nullFirst)).toBe(true);
  });

  it('answers a oneOf whose branches overlap with a value of exactly one branch, or refuses it when it finds none (QA: a value matched two, which oneOf forbids)', () => {
    const overlapping = {
      // Any object with "a" is also an object of the second branch, which requires nothing.
      loose: { oneOf: [{ type: 'object', properties: { a: { type: 'string' } }, required: ['a'] }, { type: 'object', properties: { b: { type: 'integer' } } }] },
      short: { oneOf: [{ type: 'string', maxLength: 8 }, { type: 'string', minLength: 4 }] },
      numbers: { oneOf: [{ type: 'integer' }, { type: 'number', minimum: 1, maximum: 3 }] },
      nested: { type: 'array', minItems: 2, items: { oneOf: [{ $ref: '#/$defs/named' }, { type: 'object', properties: { id: { type: 'integer' } } }] }, $defs: { named: { type: 'object', properties: { name: { type: 'string' } }, required: ['name'] } } },
    };
    for (const [name, schema] of Object.entries(overlapping)) {
      for (let seed = 0; seed < 100; seed++) {
        let value: unknown;
        try {
          value = valueForSchema(schema, mulberry32(seed));
        } catch (error) {
          // Refused, not answered wrong: only when each value tried matched both branches.
          expect((error as SchemaError).code, `${name}, seed ${seed}`).toBe('unsupported_schema');
          continue;
        }
        expect(schemaProblems(schema, JSON.parse(JSON.stringify(value))), `${name}, seed ${seed}: ${JSON.stringify(value)}`).toEqual([]);
      }
    }
    expect(valueForSchema(overlapping.loose, mulberry32(1))).toEqual({ b: expect.any(Number) });
    const same = schemaError({ oneOf: [{ type: 'string' }, { type: ['string', 'null'] }] });
    expect(same).toMatchObject({ code: 'unsupported_schema', message: expect.stringMatching(/^'oneOf' branches that overlap are not supported by the simulator: .* Make the branches exclusive/) });
    // Branches that exclude each other keep their first branch's value.
    expect(valueForSchema({ oneOf: [{ type: 'string' }, { type: 'integer' }] }, mulberry32(1))).toEqual(expect.any(String));
  });

  it('ends a recursive $ref: the inner copy gets its required properties and fewest items', () => {
    const tree = valueForSchema(schemas.tree, mulberry32(5)) as { children: { children: unknown[] }[] };
    expect(tree.children.length).toBeGreaterThan(0);
    for (const child of tree.children) expect(child.children).toEqual([]);
    const list = valueForSchema(schemas.linkedList, mulberry32(5)) as { next: { next: unknown } };
    expect(list.next.next).toBeNull();
  });

  it('keeps "__proto__" an ordinary property', () => {
    const value = valueForSchema(schemas.proto, mulberry32(1));
    expect(JSON.parse(JSON.stringify(value))).toEqual({ ['__proto__']: expect.any(String), constructor: expect.any(Number) });
  });

  it('names a keyword or format outside its subset, and where it is', () => {
    const pattern = schemaError({ type: 'object', properties: { code: { type: 'string', pattern: '^[A-Z]+$' } } });
    expect(pattern.code).toBe('unsupported_schema');
    expect(pattern.message).toMatch(/^keyword 'pattern' \(at #\/properties\/code\) is not supported by the simulator, which understands type, properties, .*Leave it out/);
    // Only reachable through an anyOf branch it would not take: still refused, so the answer does not depend on the branch.
    expect(schemaError({ anyOf: [{ type: 'string' }, { type: 'string', allOf: [] }] }).message).toMatch(/^keyword 'allOf' \(at #\/anyOf\/1\)/);
    expect(schemaError({ $defs: { unused: { not: {} } }, type: 'string' }).message).toMatch(/^keyword 'not' \(at #\/\$defs\/unused\)/);
    expect(schemaError({ type: 'string', format: 'hostname' }).message).toMatch(/^format "hostname" \(at #\)/);
    expect(schemaError({ type: 'array', items: [{ type: 'string' }] }).message).toMatch(/'items' as a list/);
    expect(schemaError({ $ref: 'https://example.com/schema.json' }).message).toMatch(/only local "#\/\.\.\." references/);
    expect(schemaError({ type: 'array', minItems: 5000 }).message).toMatch(/'minItems' above 1000/);
  });

  it('refuses a format whose values do not fit its minLength/maxLength, rather than answer JSON the schema rejects (review: an email of 24 characters for maxLength 5)', () => {
    for (const schema of [{ type: 'string', format: 'email', maxLength: 5 }, { type: 'string', format: 'date', maxLength: 4 }, { type: 'string', format: 'uuid', minLength: 40 }]) {
      expect(schemaError(schema).message).toMatch(new RegExp(`^format "${schema.format}" with minLength .* is not supported by the simulator: its ${schema.format} values \\(".*"\\) do not fit those lengths`));
    }
    // Lengths its values fit are answered, and validate.
    const roomy = { type: 'object', properties: { email: { type: 'string', format: 'email', maxLength: 254 }, day: { type: 'string', format: 'date', minLength: 10, maxLength: 10 } }, required: ['email', 'day'] };
    expect(schemaProblems(roomy, valueForSchema(roomy, mulberry32(2)))).toEqual([]);
  });

  it('refuses keywords beside anyOf, oneOf or $ref, which it would not read (review: a required "a" beside an anyOf was answered {"b":63})', () => {
    const review = { type: 'object', required: ['a'], properties: { a: { type: 'integer' } }, anyOf: [{ required: ['b'], properties: { b: { type: 'integer' } } }] };
    expect(schemaError(review)).toMatchObject({
      code: 'unsupported_schema',
      message: "'type', 'required', 'properties' beside 'anyOf' (at #) are not supported by the simulator, which answers 'anyOf' without reading them. Move them into each branch to rehearse this schema on the simulator; a real provider may accept it.",
    });
    expect(schemaError({ type: 'object', properties: { s: { oneOf: [{ type: 'string' }], maxLength: 2 } } }).message).toMatch(/^'maxLength' beside 'oneOf' \(at #\/properties\/s\) is not supported/);
    expect(schemaError({ anyOf: [{ type: 'string' }], oneOf: [{ type: 'integer' }] }).message).toMatch(/^'oneOf' beside 'anyOf' \(at #\)/);
    expect(schemaError({ $defs: { s: { type: 'string' } }, $ref: '#/$defs/s', maxLength: 2 }).message).toMatch(/^'maxLength' beside '\$ref' \(at #\) is not supported .* Move them into the schema it points at/);
  });

  it('answers enum and const within the type, lengths and bounds beside them, and refuses other keywords there (review: enum ["abcdef"] with maxLength 2 gave "abcdef")', () => {
    expect(schemaError({ enum: ['abcdef'], maxLength: 2 })).toMatchObject({ code: 'invalid_schema', message: "No value satisfies the schema: no 'enum' value meets the maxLength beside it." });
    expect(schemaError({ const: 'a', type: 'integer' }).message).toBe("No value satisfies the schema: its 'const' does not meet the type beside it.");
    expect(schemaError({ const: 3, exclusiveMinimum: 3 }).message).toBe("No value satisfies the schema: its 'const' does not meet the exclusiveMinimum beside it.");
    expect(schemaError({ type: 'string', enum: ['x'], format: 'email' }).message).toMatch(/^'format' beside 'enum' \(at #\) is not supported .* Leave them out/);
    expect(schemaError({ const: { a: 1 }, enum: [{ a: 1 }], required: ['a'] }).message).toMatch(/^'enum', 'required' beside 'const' \(at #\)/);
    const values = valueForSchema(schemas.limitedValues, mulberry32(1));
    expect(values).toMatchObject({ long: 'abcd', small: 50, pair: [1, 2], seven: 7, either: expect.any(Number) });
  });

  it('refuses a malformed or unsatisfiable schema with what is wrong', () => {
    expect(schemaError({ type: 'strnig' })).toMatchObject({ code: 'invalid_schema', message: "'type' \"strnig\" is not a JSON Schema type (at #)." });
    expect(schemaError({ $ref: '#/$defs/missing' }).message).toBe('$ref "#/$defs/missing" points at nothing (at #).');
    expect(schemaError({ type: 'string', minLength: 5, maxLength: 2 }).message).toBe("'minLength' 5 is above 'maxLength' 2 (at #).");
    expect(schemaError({ type: 'integer', enum: ['a'] }).message).toBe("no 'enum' value is of its 'type' integer (at #).");
    expect(schemaError({ type: 'integer', minimum: 1.2, maximum: 1.8 }).message).toBe('No value satisfies the schema: no integer lies between 1.2 and 1.8.');
    expect(schemaError({ type: 'object', properties: { a: false }, required: ['a'] }).message).toBe('No value satisfies the schema: a false schema allows none.');
    const endless = { $defs: { a: { type: 'object', properties: { a: { $ref: '#/$defs/a' } }, required: ['a'] } }, $ref: '#/$defs/a' };
    expect(schemaError(endless).message).toBe('No value satisfies the schema: #/$defs/a contains itself with no way to end.');
    expect(schemaError({ type: 'array', minItems: 1000, items: { type: 'array', minItems: 1000 } }).message).toMatch(/more than 10,000 values/);
    let deep: Record<string, unknown> = { type: 'string' };
    for (let i = 0; i < 100; i++) deep = { type: 'array', items: deep };
    expect(schemaError(deep).message).toMatch(/nesting deeper than 64 levels/);
  });

  it('refuses a chain of $refs through thousands of $defs, rather than run the stack out (review: one request ended the simulator, and a run built on it)', () => {
    const $defs: Record<string, unknown> = { d3000: { type: 'string' } };
    for (let i = 0; i < 3000; i++) $defs[`d${i}`] = { $ref: `#/$defs/d${i + 1}` };
    expect(schemaError({ $defs, $ref: '#/$defs/d0' })).toMatchObject({ code: 'unsupported_schema', message: expect.stringMatching(/^The schema's values nest deeper than 256 levels/) });
    // A chain well within it is answered.
    const short = Object.fromEntries(Array.from({ length: 50 }, (_, i) => [`d${i}`, { $ref: `#/$defs/d${i + 1}` }]));
    expect(valueForSchema({ $defs: { ...short, d50: { type: 'integer', const: 7 } }, $ref: '#/$defs/d0' }, mulberry32(1))).toBe(7);
  });
});
