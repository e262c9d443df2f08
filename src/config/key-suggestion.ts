import { z } from 'zod';
import { configSchema } from './schema.ts';

type JsonSchemaNode = { properties?: Record<string, JsonSchemaNode>; additionalProperties?: JsonSchemaNode | boolean; anyOf?: JsonSchemaNode[]; allOf?: JsonSchemaNode[] };

let configJsonSchema: JsonSchemaNode | null = null;

/** The config schema as JSON Schema (zod's own conversion), built on first use: only a bad config needs it. */
function schemaRoot(): JsonSchemaNode {
  configJsonSchema ??= z.toJSONSchema(configSchema, { unrepresentable: 'any', io: 'input' }) as JsonSchemaNode;
  return configJsonSchema;
}

/** The nodes a value at `path` may match: a named property, a record's value, each branch of a union. */
function nodesAt(node: JsonSchemaNode, path: readonly PropertyKey[]): JsonSchemaNode[] {
  const branches = [node, ...(node.anyOf ?? []), ...(node.allOf ?? [])];
  if (path.length === 0) return branches;
  const [step, ...rest] = path;
  return branches.flatMap((branch) => {
    const named = typeof step === 'string' ? branch.properties?.[step] : undefined;
    const next = named ?? (typeof branch.additionalProperties === 'object' ? branch.additionalProperties : undefined);
    return next ? nodesAt(next, rest) : [];
  });
}

/** The keys the config allows in the object at `path` (e.g. ['models', 'flash']). */
export function configKeysAt(path: readonly PropertyKey[]): string[] {
  return [...new Set(nodesAt(schemaRoot(), path).flatMap((node) => Object.keys(node.properties ?? {})))];
}
