import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root and bench/.tmp (gitignored), where benchmarks keep their inputs and outputs. */
export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const TMP = path.join(ROOT, 'bench', '.tmp');
/**
 * The product under test: this working tree, or a snapshot named by $BENCH_PRODUCT_ROOT (see
 * `node bench/run-all.ts --snapshot`, which measures the committed HEAD while the tree is being edited).
 */
export const PRODUCT_ROOT = process.env.BENCH_PRODUCT_ROOT ? path.resolve(process.env.BENCH_PRODUCT_ROOT) : ROOT;
/**
 * The command a user runs: the built dist/cli.js (`npm install` / `npm run build` make it),
 * else the sources, with the node flags its shebang names, so the benchmark measures what ships.
 */
const BUILT_CLI = path.join(PRODUCT_ROOT, 'dist', 'cli.js');
export const CLI = existsSync(BUILT_CLI) ? BUILT_CLI : path.join(PRODUCT_ROOT, 'src', 'cli.ts');
const SHEBANG = parseShebang(CLI);
export const CLI_NODE_FLAGS = SHEBANG.nodeFlags;
/** Variables the shebang sets before `node` (`env -S NAME=value node ...`), e.g. MALLOC_ARENA_MAX. */
export const CLI_ENV: Record<string, string> = SHEBANG.env;

function parseShebang(file: string): { env: Record<string, string>; nodeFlags: string[] } {
  const first = readFileSync(file, 'utf8').split('\n', 1)[0] ?? '';
  if (!first.startsWith('#!')) return { env: {}, nodeFlags: [] };
  const words = first.slice(2).trim().split(/\s+/);
  const nodeAt = words.findIndex((word) => word === 'node' || word.endsWith('/node'));
  if (nodeAt < 0) return { env: {}, nodeFlags: [] };
  const env: Record<string, string> = {};
  for (const word of words.slice(0, nodeAt)) {
    const assignment = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(word);
    if (assignment?.[1]) env[assignment[1]] = assignment[2] ?? '';
  }
  return { env, nodeFlags: words.slice(nodeAt + 1) };
}

export const USAGE_PROBE = path.join(ROOT, 'bench', 'lib', 'usage-probe.mjs');

/** A fresh folder under bench/.tmp for one benchmark run. */
export function tmpDir(name: string): string {
  const dir = path.join(TMP, `${name}-${process.pid}-${Date.now().toString(36)}`);
  mkdirSync(dir, { recursive: true });
  return dir;
}
