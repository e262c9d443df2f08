import { readFile } from 'node:fs/promises';
import { extname } from 'node:path';
import { LineCounter, parseDocument, parse as parseYaml, visit } from 'yaml';
import { z } from 'zod';
import { configSchema, type SwitchyardConfig } from './schema.ts';
import { issueText } from './issue-text.ts';
import { closestName } from './closest-name.ts';
import { configKeysAt } from './key-suggestion.ts';
import { FILE_TROUBLE, UsageError } from '../errors.ts';

/**
 * Formats zod issues as "key.path: what was expected" lines a person can act on. With `keysAt`
 * (the keys allowed at a path), an unknown key that is a typo of an allowed one says which.
 */
export function describeIssues(error: z.ZodError, root = '', keysAt?: (path: readonly PropertyKey[]) => string[]): string {
  return error.issues
    .map((issue) => {
      const path = [root, ...issue.path.map(String)].filter(Boolean).join('.') || '(top level)';
      if (issue.code === 'unrecognized_keys' && keysAt) {
        const known = keysAt(issue.path);
        return `  ${path}: ${issue.keys.map((key) => unknownKeyText(key, known)).join(', ')}`;
      }
      return `  ${path}: ${issueText(issue)}`;
    })
    .join('\n');
}

/** Top-level keys people write for what is a `run` flag. */
const COMMAND_LINE_ONLY: Record<string, string> = { ab: '--ab', model: '--model', route: '--route', budget_usd: '--budget', batch_id: '--batch-id', out: '--out', prompt_column: '--prompt-column' };

/** 'unknown key "concurency" (did you mean "concurrency"?)', or the keys allowed there when none is close. */
function unknownKeyText(key: string, known: readonly string[]): string {
  const flag = COMMAND_LINE_ONLY[key];
  if (flag && known.includes('default_model')) return `unknown key "${key}" (${flag} is a flag of switchyard run, not a config key${key === 'model' ? '; models are defined under "models", and "default_model" names the one rows go to' : ''})`;
  // Keys never go in the config: it is saved with each batch and travels through Redis.
  if (/^(api_?key|key|token|secret)$/i.test(key) && known.includes('api_key_env')) {
    return `unknown key "${key}" (the key itself never goes in the config: put it in an environment variable, e.g. export OPENAI_API_KEY=..., and name that variable with api_key_env: OPENAI_API_KEY)`;
  }
  const meant = closestName(key, known);
  if (meant) return `unknown key "${key}" (did you mean "${meant}"?)`;
  // Often a block of YAML anchors for the rest of the file.
  if (known.includes('default_model')) return `unknown key "${key}" (a top-level key of your own, for YAML anchors say, must start with x-: x-${key})`;
  // A map of names (models, providers) allows any key: an unknown one is then in a fixed-shape object.
  return known.length > 0 && known.length <= 12 ? `unknown key "${key}" (allowed here: ${known.join(', ')})` : `unknown key "${key}"`;
}

export function parseConfig(raw: unknown, source: string): SwitchyardConfig {
  // With the values given, so a message can show the wrong one ("got 2000.5", "got \"fallbak\"").
  const result = configSchema.safeParse(raw, { reportInput: true });
  if (!result.success) {
    throw new UsageError(`Config ${source} is not valid:\n${describeIssues(result.error, '', configKeysAt)}\nSee docs/config.md for every key.`);
  }
  return result.data;
}

export async function loadConfigFile(path: string): Promise<SwitchyardConfig> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new UsageError(`Config file not found: ${path} (give the path of a switchyard.yaml or .json; without --config the built-in models run on the simulator)`);
    if (code === 'EISDIR') throw new UsageError(`Config path is a directory, not a file: ${path}`);
    throw new UsageError(`Cannot read config file ${path}: ${(code && FILE_TROUBLE[code]) ?? (error as Error).message}`);
  }
  let raw: unknown;
  try {
    // `<<: *defaults` merges a mapping in, as YAML 1.1 tools (docker compose, GitHub Actions) do.
    raw = extname(path).toLowerCase() === '.json' ? JSON.parse(text) : parseYaml(text, { merge: true });
  } catch (error) {
    // A merge of a misspelt anchor (`<<: *defualts`) fails without a line: name the alias.
    const unresolved = /Merge sources/.test((error as Error).message) ? unresolvedAliases(text) : [];
    if (unresolved.length > 0) throw new UsageError(`Config file ${path} is not valid YAML: ${unresolved.join('; ')}`);
    // The yaml library's advice on several documents names its own API: say it in the config's terms.
    const message = (error as Error).message.replace(/Source contains multiple documents; please use YAML\.parseAllDocuments\(\)/, 'it holds several YAML documents (a --- line between them): keep one');
    throw new UsageError(`Config file ${path} is not valid ${extname(path) === '.json' ? 'JSON' : 'YAML'}: ${message}`);
  }
  if (raw === null || raw === undefined) throw new UsageError(`Config file ${path} is empty (or only comments): examples/switchyard.yaml is one to start from`);
  return parseConfig(withoutExtensionKeys(raw), path);
}

/** Aliases (`*name`) that no anchor (`&name`) before them defines, each with its line and the anchors there are. */
function unresolvedAliases(text: string): string[] {
  const lines = new LineCounter();
  const document = parseDocument(text, { lineCounter: lines });
  const anchors: string[] = [];
  visit(document, (_key, node) => {
    if (node && typeof node === 'object' && 'anchor' in node && typeof node.anchor === 'string') anchors.push(node.anchor);
  });
  const found: string[] = [];
  visit(document, {
    Alias(_key, alias) {
      if (alias.resolve(document) !== undefined) return;
      const where = alias.range ? `line ${lines.linePos(alias.range[0]).line}: ` : '';
      found.push(`${where}*${alias.source} names no anchor${anchors.length > 0 ? ` (the anchors are ${anchors.map((a) => `&${a}`).join(', ')})` : ''}: an anchor is set with &${alias.source} before its first use`);
    },
  });
  return found;
}

/** Top-level keys starting with `x-` are the config's own to ignore: a place for YAML anchors (`x-defaults: &defaults`), as in docker compose. */
function withoutExtensionKeys(raw: unknown): unknown {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) return raw;
  return Object.fromEntries(Object.entries(raw).filter(([key]) => !key.startsWith('x-')));
}
