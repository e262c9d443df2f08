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

/**
 * The allowed key an unknown one was most likely meant to be: the same with its unit ("timeout" for
 * "timeout_ms"), or a typo of up to 2 edits; null when none is close.
 */
export function closestKey(unknown: string, known: readonly string[]): string | null {
  const withUnit = known.find((key) => key.toLowerCase() === `${unknown.toLowerCase()}_ms`);
  if (withUnit) return withUnit;
  // Short keys get fewer edits: "rpm" is not a typo of "tpm".
  const allowed = Math.min(2, Math.floor(unknown.length / 3));
  let best: string | null = null;
  let bestDistance = Number.POSITIVE_INFINITY;
  for (const key of known) {
    const distance = editDistance(unknown.toLowerCase(), key.toLowerCase());
    if (distance < bestDistance) [best, bestDistance] = [key, distance];
  }
  return bestDistance <= allowed ? best : null;
}

/** Levenshtein distance, with a swap of two neighbouring letters counted as one edit. */
function editDistance(a: string, b: string): number {
  const rows = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) rows[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let best = Math.min(rows[i - 1]![j]! + 1, rows[i]![j - 1]! + 1, rows[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) best = Math.min(best, rows[i - 2]![j - 2]! + 1);
      rows[i]![j] = best;
    }
  }
  return rows[a.length]![b.length]!;
}
